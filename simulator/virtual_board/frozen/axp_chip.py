# X-Powers power chips on I2C (0x34), at the level of their registers, as the LilyGO T-Beam carries
# them: the AXP192 (v1.0/1.1) and the AXP2101 (v1.2). A write transfer's first byte sets the register
# pointer, then (register, value) pairs follow (AXP192 datasheet §9.2, "multi-byte write": address,
# data, address, data…); a read goes on from the pointer, one register after another.
#
# Each output rail is on while its enable bit is set; a rail that is on powers what the host wired to
# it (an SPI chip whose state says `supply="ldo2"`, say): `rails` below, which spi_bus reads. The chip
# ID in register 0x03 tells the two apart (0x03 for the AXP192, 0x4A for the AXP2101: X-Powers'
# XPowersLib constants XPOWERS_AXP192_CHIP_ID and XPOWERS_AXP2101_CHIP_ID).
#
# At power-on only the rails that feed the ESP32 are on (AXP192 DCDC3, AXP2101 DCDC1): the radio's
# rail waits for the firmware, the strictest reading of the datasheets, whose defaults depend on the
# part's factory settings. The rails are modelled, not their voltages' effect (a value is kept).
from i2c_bus import Chip

rails = {}  # rail name -> True while on: what spi_bus's chips with a `supply` find

_REG_CHIP_ID = 0x03


class _Axp(Chip):
    CHIP_ID = 0
    RAILS = ()  # (name, enable register, bit)
    POWER_ON = ()  # (register, value at power-on)

    def __init__(self, air):
        super().__init__(air)
        self.registers = bytearray(256)
        self.registers[_REG_CHIP_ID] = self.CHIP_ID
        for register, value in self.POWER_ON:
            self.registers[register] = value
        self.pointer = 0
        self.publish()

    def write(self, data):
        if data:
            self.pointer = data[0]
        rest = data[1:]
        if rest:
            self.put(self.pointer, rest[0])
            for i in range(1, len(rest) - 1, 2):
                self.put(rest[i], rest[i + 1])
        return True

    def put(self, register, value):
        if register != _REG_CHIP_ID:  # read only
            self.registers[register] = value
            self.publish()

    def read(self, n):
        out = bytes(self.registers[(self.pointer + i) & 0xFF] for i in range(n))
        self.pointer = (self.pointer + n) & 0xFF
        return out

    def publish(self):
        for name, register, bit in self.RAILS:
            rails[name] = self.answering and bool(self.registers[register] >> bit & 1)

    def configure(self, state):
        self.publish()  # silenced (unpowered), its rails are off


class AXP192(_Axp):
    # REG 12H, power output control: DC-DC1 bit 0, DC-DC3 bit 1, LDO2 bit 2, LDO3 bit 3, DC-DC2 bit 4,
    # EXTEN bit 6 (AXP192 datasheet §9.3). LDO2/LDO3 voltages in REG 28H, 1.8-3.3 V by 100 mV.
    CHIP_ID = 0x03
    RAILS = (("dcdc1", 0x12, 0), ("dcdc3", 0x12, 1), ("ldo2", 0x12, 2), ("ldo3", 0x12, 3), ("dcdc2", 0x12, 4))
    POWER_ON = ((0x12, 0x02),)


class AXP2101(_Axp):
    # REG 80H, DC-DC on/off: DCDC1 bit 0 …; REG 90H, LDO on/off control 0: ALDO1-4 bits 0-3, BLDO1-2
    # bits 4-5, CPUSLDO bit 6, DLDO1 bit 7. ALDO1-4 voltages in REG 92H-95H, 0.5-3.5 V by 100 mV
    # (AXP2101 datasheet, register list).
    CHIP_ID = 0x4A
    RAILS = (("dcdc1", 0x80, 0), ("aldo1", 0x90, 0), ("aldo2", 0x90, 1), ("aldo3", 0x90, 2), ("aldo4", 0x90, 3))
    POWER_ON = ((0x80, 0x01),)
