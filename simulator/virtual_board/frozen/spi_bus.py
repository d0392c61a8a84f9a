# The chips wired to the board's SPI lines, as the host (peripherals.py) describes them. machine.SPI
# clocks its bytes through here: a chip on the transfer's SCK/MOSI/MISO pins takes part while the
# level on its chip-select pin is low. machine tells this module every level the board drives or
# releases.
#
# The host describes them all in each spi_chips control message (messages.py's SpiChips):
# {"chips": [{"kind", "sck", "mosi", "miso", "cs", "answering", "corrupt", "state"}]}, with
# "answering" and "corrupt" as on I2C (i2c_bus.py). A chip that is not answering is unpowered: it
# neither hears MOSI nor drives MISO; so is one whose state names a `supply` rail that is off
# (axp_chip.py: the T-Beam's radio behind its power chip).
import json

import _board
import i2c_bus

_devices = {}  # (sck, mosi, miso, cs) -> model
# The same as a tuple of (key, model): what a pin read or a chip select walks through, which must allocate
# nothing, as the ESP32's C does (ports/esp32/machine_pin.c); a dict's views and items would, and the
# firmware polls a BUSY line thousands of times a command.
_wired = ()
_levels = {}  # GPIO -> the level the board last set on it
_driven = {}  # GPIO -> the level a chip drives on it
_described = None
on_drive = None  # machine's: called with (pin, old, new) when a chip changes the level it drives


def configure(line, booting=False):
    """Apply the host's spi_chips message (its JSON line, or "": none yet); models of chips still
    wired keep their state."""
    global _described, _wired
    from mfrc522_chip import MFRC522  # here: the chips' modules build on Chip, below
    from sx126x_chip import SX1261, SX1262
    from sx127x_chip import SX1276

    if not line:
        return
    described = json.loads(line)["chips"]
    if described == _described:
        return
    _described = described
    kinds = {"mfrc522": MFRC522, "sx1276": SX1276, "sx1261": SX1261, "sx1262": SX1262}
    wired = i2c_bus.rewire(_devices, kinds, described, ("sck", "mosi", "miso", "cs"), booting)
    for key, model in _devices.items():
        if wired.get(key) is not model:
            model.unplug()
    _devices.clear()
    _devices.update(wired)
    _wired = tuple(_devices.items())


def models():
    """The chips wired now."""
    return list(_devices.values())


def drive(pin, new):
    """A chip drives `new` on GPIO `pin` (None: releases it)."""
    old = _driven.get(pin)
    if new is None:
        _driven.pop(pin, None)
    else:
        _driven[pin] = new
    if old != new and on_drive is not None:
        on_drive(pin, old, new)


def driven(pin):
    """The level a chip drives on GPIO `pin`, or None."""
    for _, model in _wired:
        model.settle()
    return _driven.get(pin)


def level(pin, floating=0):
    """The level on GPIO `pin` as the board left it (one it never set: `floating`)."""
    return _levels.get(pin, floating)


def line(pin, new):
    """The level on GPIO `pin` is now `new`: a falling chip select starts a transaction."""
    if _levels.get(pin) == new:
        return
    _levels[pin] = new
    for key, model in _wired:
        if key[3] == pin:
            if new:
                model.deselect()
            else:
                model.select()
        else:
            model.line(pin, new)


def transfer(sck, mosi, miso, baudrate, polarity, phase, bits, out, into, idle):
    """Clock the bytes `out` out on MOSI, most significant bit first, and what MISO carries meanwhile
    into `into` (None: dropped); `out` may be an int, that byte sent `len(into)` times.

    A chip clocked otherwise than it expects (baudrate, polarity, phase, bits) hears nothing it
    understands and stays silent. Bytes nobody drives read `idle`. Allocates nothing, as the ESP32's
    SPI driver does (ports/esp32/machine_hw_spi.c): the firmware's drivers clock every command through here."""
    count = len(into) if isinstance(out, int) else len(out)
    for key, chip in _wired:
        if key[0] != sck or key[1] != mosi or key[2] != miso or level(key[3]) or not i2c_bus.powered(chip):
            continue
        if not chip.understands(baudrate, polarity, phase, bits):
            continue
        _joined.append(chip)
    for n in range(count):
        got = None
        byte = out if isinstance(out, int) else out[n]
        for chip in _joined:
            driven = chip.exchange(byte)
            if driven is not None:
                got = driven if got is None else got & driven  # two chips fighting: low wins
        if into is not None:
            into[n] = idle if got is None else got
    _joined.clear()


_joined = []  # the chips that take part in a transfer: a list kept, not one built per transfer


class Chip(i2c_bus.Chip):
    """What every SPI chip shares: the SPI mode it expects, and a byte for each byte clocked in."""

    polarity = 0
    phase = 0
    max_baudrate = 10_000_000

    def understands(self, baudrate, polarity, phase, bits):
        # Compared one by one: two tuples would be allocated at every transfer.
        return polarity == self.polarity and phase == self.phase and bits == 8 and baudrate <= self.max_baudrate

    def select(self):
        """Chip select went low: the next byte starts a transaction."""

    def deselect(self):
        """Chip select went high: the transaction is over."""

    def settle(self):
        """Bring the levels the chip drives up to the board's clock (before a pin is read)."""

    def line(self, pin, level):
        """The board set `level` on GPIO `pin`, which may be a line of this chip (a reset, say)."""

    def unplug(self):
        """The chip was taken off the board: it releases the pins it drove."""

    def exchange(self, byte):
        """The byte this chip shifts out on MISO while `byte` comes in on MOSI, or None (MISO released)."""
        return None


_board.on_control("spi_chips", configure)
