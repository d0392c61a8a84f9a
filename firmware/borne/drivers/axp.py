# X-Powers AXP192 and AXP2101 power chips on I2C (0x34), as on the LilyGO T-Beam (AXP192 on v1.0/1.1,
# AXP2101 on v1.2): which one answers, and its output rails switched on. The chip ID register (0x03)
# tells them apart. A rail gets its voltage first, then its enable bit, so that it never comes up at
# a voltage left from before.
# AXP192 datasheet §9.3: REG 12H enables DC-DC1 (bit 0), DC-DC3 (1), LDO2 (2), LDO3 (3), DC-DC2 (4);
# REG 28H holds LDO2 (bits 7:4) and LDO3 (bits 3:0), 1.8-3.3 V in 100 mV steps.
# AXP2101 datasheet: REG 90H enables ALDO1-4 (bits 0-3); REG 92H-95H hold their voltages (bits 4:0),
# 0.5-3.5 V in 100 mV steps.
from micropython import const

ADDRESS = const(0x34)
_REG_CHIP_ID = const(0x03)
_CHIP_IDS = {0x03: "axp192", 0x4A: "axp2101", 0x47: "axp2101"}  # XPowersLib's; 0x47: an earlier AXP2101

# Rail -> (enable register, bit, voltage register, shift, width mask, lowest mV, highest mV).
_RAILS = {
    "axp192": {
        "ldo2": (0x12, 2, 0x28, 4, 0x0F, 1800, 3300),
        "ldo3": (0x12, 3, 0x28, 0, 0x0F, 1800, 3300),
    },
    "axp2101": {
        "aldo1": (0x90, 0, 0x92, 0, 0x1F, 500, 3500),
        "aldo2": (0x90, 1, 0x93, 0, 0x1F, 500, 3500),
        "aldo3": (0x90, 2, 0x94, 0, 0x1F, 500, 3500),
        "aldo4": (0x90, 3, 0x95, 0, 0x1F, 500, 3500),
    },
}


def detect(i2c):
    """ "axp192" or "axp2101": the chip that answers at 0x34. OSError(ENODEV) if none, or another chip."""
    chip = _CHIP_IDS.get(i2c.readfrom_mem(ADDRESS, _REG_CHIP_ID, 1)[0])
    if chip is None:
        raise OSError(19, "no AXP192 or AXP2101 at 0x34")
    return chip


def power_rails(i2c, rails_by_chip):
    """Switch on the rails the board profile's "pmu" gives for the chip found, e.g.
    {"axp192": {"ldo2": 3300}, "axp2101": {"aldo2": 3300}}; the chip's name. OSError if the chip does
    not answer or keep a rail on; ValueError for a rail or voltage the chip does not have."""
    chip = detect(i2c)
    rails = rails_by_chip.get(chip)
    if rails is None:
        raise ValueError(f"the board has an {chip}, for which its profile's pmu names no rails")
    for rail, millivolts in rails.items():
        _switch_on(i2c, chip, rail, millivolts)
    return chip


def power_rails_off(i2c, rails_by_chip):
    """Switch off the rails that power_rails switched on (for deep sleep: the chip keeps them as
    they are, the ESP32's own rail on); the chip's name. OSError if it does not answer or keep one off."""
    chip = detect(i2c)
    for rail in rails_by_chip.get(chip) or ():
        enable, bit = _RAILS[chip][rail][:2]
        _update(i2c, enable, 1 << bit, 0)
        if i2c.readfrom_mem(ADDRESS, enable, 1)[0] & 1 << bit:
            raise OSError(5, f"{chip} {rail} did not switch off")  # EIO
    return chip


def _switch_on(i2c, chip, rail, millivolts):
    spec = _RAILS[chip].get(rail)
    if spec is None:
        raise ValueError(f"an {chip} has no rail {rail!r}")
    enable, bit, voltage, shift, mask, lowest, highest = spec
    if not lowest <= millivolts <= highest:
        raise ValueError(f"{chip} {rail}: {millivolts} mV is outside {lowest}-{highest} mV")
    code = (millivolts - lowest) // 100
    _update(i2c, voltage, mask << shift, code << shift)
    _update(i2c, enable, 1 << bit, 1 << bit)
    if not i2c.readfrom_mem(ADDRESS, enable, 1)[0] & 1 << bit:
        raise OSError(5, f"{chip} {rail} did not switch on")  # EIO


def _update(i2c, register, mask, value):
    old = i2c.readfrom_mem(ADDRESS, register, 1)[0]
    i2c.writeto_mem(ADDRESS, register, bytes((old & ~mask | value,)))
