# The chips wired to the board's I2C lines, as the host (peripherals.py) describes them. machine.I2C
# and SoftI2C find here the devices on their SDA/SCL pins and run each transfer against their models.
#
# The host describes them all in each i2c_chips control message (messages.py's I2cChips):
# {"chips": [{"kind", "sda", "scl", "address", "answering", "corrupt", "state"}], "air": {...}}.
# "corrupt" counts the answers the host asked to damage since it wired the chip; a VM that boots
# takes it as already served, so a reset does not replay a fault.
import json

import _board

air = {"temperature_c": 21.0, "humidity_pct": 45.0, "pressure_hpa": 1013.25, "co2_ppm": 420}
_devices = {}  # (sda, scl, address) -> model
_wired = ()  # the same as a tuple of (key, model), which a transfer walks without allocating
_described = None


def configure(line, booting=False):
    """Apply the host's i2c_chips message (its JSON line, or "": none yet); models of chips still
    wired keep their state."""
    global _described, _wired
    # Imported here: the chips' modules build on Chip, below.
    from axp_chip import AXP192, AXP2101, rails
    from bme280_chip import BME280
    from pn532_chip import PN532
    from scd4x_chip import SCD4x
    from sht4x_chip import SHT4x

    kinds = {"bme280": BME280, "scd4x": SCD4x, "pn532": PN532, "sht4x": SHT4x, "axp192": AXP192, "axp2101": AXP2101}
    if not line:
        return
    message = json.loads(line)
    described = (message["chips"], message["air"])
    if described == _described:
        return
    _described = described
    air.update(message["air"])
    rails.clear()  # the power chips still wired publish theirs again as they are configured
    wired = rewire(_devices, kinds, message["chips"], ("sda", "scl", "address"), booting)
    _devices.clear()
    _devices.update(wired)
    _wired = tuple(_devices.items())


def rewire(models, kinds, chips, wiring, booting):
    """The models of the chips the host describes, keyed by the tuple of their `wiring` fields (the
    pins and address that say where a chip sits), each kept from `models` if still wired there.
    Shared with spi_bus."""
    wired = {}
    for chip in chips:
        key = tuple(chip[field] for field in wiring)
        model = models.get(key)
        if model is None or type(model) is not kinds[chip["kind"]]:
            model = kinds[chip["kind"]](air)
            model.served = chip["corrupt"] if booting else 0
        model.answering = chip["answering"]
        model.supply = chip["state"].get("supply")  # a power chip's rail that powers it (axp_chip.py), or None
        corrupt = chip["corrupt"]  # the host's count, which starts again when it rewires the chip
        model.corrupt_next += max(corrupt - model.served, 0)
        model.served = corrupt
        model.configure(chip["state"])
        wired[key] = model
    return wired


def powered(model):
    """True if the chip answers: not silenced by the host, and its supply rail (if any) is on."""
    if not model.answering:
        return False
    if model.supply is None:
        return True
    from axp_chip import rails

    return rails.get(model.supply, False)


def device(sda, scl, address):
    """The model that ACKs `address` on these lines, or None (no chip there, or one that is silent).

    A walk of the few chips wired, comparing their keys field by field: a tuple built to look one up
    would be garbage at every transfer, which the ESP32's C (ports/esp32/machine_i2c.c) makes none of."""
    for key, model in _wired:
        if key[2] == address and key[0] == sda and key[1] == scl:
            return model if powered(model) else None
    return None


def addresses(sda, scl):
    return sorted(a for (d, c, a), model in _devices.items() if (d, c) == (sda, scl) and powered(model))


class Chip:
    """What every model shares: ACKs its address unless silenced; damages answers the host asked to."""

    answering = True
    supply = None  # the rail that powers it, when a power chip on the board switches it
    corrupt_next = 0  # answers to damage, as the host asked
    served = 0

    def __init__(self, air):
        self.air = air  # shared with every chip: what the host set

    def configure(self, state):
        pass

    def stretch_us(self):
        """How long the chip holds SCL low in the transfer starting now (clock stretching)."""
        return 0

    def take_corruption(self):
        """True if this answer is to be damaged (once per fault the host asked for)."""
        if self.corrupt_next:
            self.corrupt_next -= 1
            return True
        return False

    def write(self, data):
        """A write transfer: the bytes after the address. False if the chip NACKs them."""
        return True

    def read(self, n):
        """A read transfer of `n` bytes, or None if the chip NACKs it."""
        return bytes(n)


_board.on_control("i2c_chips", configure)
