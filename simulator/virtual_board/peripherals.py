"""The world around the chip, as the tests set it: levels on input pins, voltages on ADC pins, the chips
on the I2C and SPI lines (modelled at bus level in `frozen/`), and the antenna on a radio medium.

Every change goes to the running VM as a control message (`messages.py`) and is kept here, so that
every VM booted later finds it too: `boot.py` sees a button held at power-on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from simulator.virtual_board.mcu import ControlLink
from simulator.virtual_board.messages import (
    AdcVoltage,
    Air,
    Control,
    Event,
    FlashFault,
    I2cChip,
    I2cChips,
    PinLevel,
    PinOutput,
    RadioFrame,
    RadioIdle,
    RadioReceiving,
    RadioTransmitting,
    SpiChip,
    SpiChips,
)

if TYPE_CHECKING:
    from simulator.virtual_board.board import VirtualBoard
    from simulator.virtual_board.medium import RadioMedium

_RADIO_EVENT_AGE_S = 1  # older radio events are taken as of when they are read


class Antenna:
    """The board's LoRa antenna on a `RadioMedium` shared with other boards (or on none): it tells the
    medium what the modem reports, and brings the modem the frames the medium delivers."""

    def __init__(self, board: VirtualBoard, medium: RadioMedium | None, link: ControlLink) -> None:
        self._board = board  # how the medium knows this board
        self.medium = medium
        self._link = link

    def handle(self, event: Event) -> bool:
        """Hand the medium what the modem reported; False for an event that is not the radio's."""
        if not isinstance(event, RadioReceiving | RadioIdle | RadioTransmitting):
            return False
        if self.medium is None:
            return True
        now = time.monotonic()
        at = event.at_ns / 1e9
        at = at if now - _RADIO_EVENT_AGE_S < at <= now else now  # as late as the pipe was read, at worst
        if isinstance(event, RadioReceiving):
            self.medium.board_listens(self._board, event.settings, at)
        elif isinstance(event, RadioIdle):
            self.medium.board_listens(self._board, None, at)
        else:
            self.medium.board_transmits(self._board, event.payload, event.settings, at)
        return True

    def receive(self, payload: bytes, rssi_dbm: float, snr_db: float, *, valid_crc: bool = True) -> None:
        """Bring a frame to the antenna: the modem takes it if it is receiving (not sending)."""
        snr_x4 = max(-128, min(round(snr_db * 4), 127))  # the chips report SNR in dB x 4, signed 8-bit
        self._link.tell(lambda: RadioFrame(payload, round(rssi_dbm), snr_x4, valid_crc))


class Peripherals:
    """What is wired to the board's pins, as the tests set it; `VirtualBoard` documents each method."""

    def __init__(self, link: ControlLink, antenna: Antenna) -> None:
        self.antenna = antenna
        self._link = link  # its lock also guards what follows but the outputs
        self._pins: dict[int, int] = {}
        self._adc: dict[int, int] = {}
        self._air = Air()  # what the board's sensors measure (frozen/i2c_bus.py has the defaults)
        self._i2c: dict[tuple[int, int, int], I2cChip] = {}  # by (sda, scl, address)
        self._spi: dict[int, SpiChip] = {}  # by chip select: one chip per chip-select line
        self._flash = FlashFault(refuse_writes=False)
        self._outputs: dict[int, int] = {}  # levels the board drives, as the running VM reported them
        self._outputs_lock = threading.Lock()
        self._outputs_changed = threading.Condition(self._outputs_lock)
        self._entered: Counter[tuple[int, int]] = Counter()  # (pin, level): times the pin went to level, ever

    def world(self) -> list[Control]:
        """What a VM finds at power-on, as control messages. Every pin is an input after a reset."""
        with self._outputs_lock:
            self._outputs.clear()
        pins = [PinLevel(pin, level) for pin, level in self._pins.items()]
        adc = [AdcVoltage(pin, microvolts) for pin, microvolts in self._adc.items()]
        return [*pins, *adc, self._i2c_chips(), self._spi_chips(), self._flash]

    def handle(self, event: Event) -> bool:
        """Note the levels the board drives, and pass the radio's events on; False for other events."""
        if isinstance(event, PinOutput):
            with self._outputs_lock:
                if event.level is None:
                    self._outputs.pop(event.pin, None)
                elif self._outputs.get(event.pin) != event.level:
                    self._outputs[event.pin] = event.level
                    self._entered[(event.pin, event.level)] += 1
                    self._outputs_changed.notify_all()
            return True
        return self.antenna.handle(event)

    def set_pin(self, pin: int, level: int | None) -> None:
        def change() -> PinLevel:
            if level is None:
                self._pins.pop(pin, None)
                return PinLevel(pin, None)
            self._pins[pin] = 1 if level else 0
            return PinLevel(pin, self._pins[pin])

        self._link.tell(change)

    def set_adc(self, pin: int, microvolts: int) -> None:
        def change() -> AdcVoltage:
            self._adc[pin] = int(microvolts)
            return AdcVoltage(pin, int(microvolts))

        self._link.tell(change)

    def refuse_flash_writes(self, refuse: bool) -> None:
        def change() -> FlashFault:
            self._flash = FlashFault(refuse_writes=refuse)
            return self._flash

        self._link.tell(change)

    def pin_output(self, pin: int) -> int | None:
        with self._outputs_lock:
            return self._outputs.get(pin)

    def times_driven(self, pin: int, level: int) -> int:
        with self._outputs_lock:
            return self._entered[(pin, level)]

    def wait_driven(self, pin: int, level: int, times: int, timeout: float) -> bool:
        with self._outputs_changed:
            return self._outputs_changed.wait_for(lambda: self._entered[(pin, level)] >= times, timeout)

    def wire_i2c(self, kind: str, address: int, *, sda: int, scl: int, **state: object) -> None:
        def change() -> I2cChips:
            self._i2c[(sda, scl, address)] = I2cChip(kind, sda, scl, address, state=state)
            return self._i2c_chips()

        self._link.tell(change)

    def unwire_i2c(self, address: int) -> None:
        def change() -> I2cChips:
            del self._i2c[self._i2c_key(address)]
            return self._i2c_chips()

        self._link.tell(change)

    def set_air(self, **given: Any) -> None:
        """The quantities VirtualBoard.set_air names; None leaves one as it is."""

        def change() -> I2cChips:
            self._air = replace(self._air, **{name: value for name, value in given.items() if value is not None})
            return self._i2c_chips()

        self._link.tell(change)

    def wire_spi(self, kind: str, *, cs: int, sck: int, mosi: int, miso: int, **state: object) -> None:
        def change() -> SpiChips:
            self._spi.pop(cs, None)
            self._spi[cs] = SpiChip(kind, sck, mosi, miso, cs, state=state)
            return self._spi_chips()

        self._link.tell(change)

    def unwire_spi(self, cs: int) -> None:
        def change() -> SpiChips:
            del self._spi[self._spi_key(cs)]
            return self._spi_chips()

        self._link.tell(change)

    def change_chip(
        self, address: int | None, cs: int | None, edit: Callable[[I2cChip | SpiChip], dict[str, Any]]
    ) -> None:
        """Change the I2C chip at `address`, or, given `cs`, the SPI chip that GPIO `cs` selects: `edit`
        returns the fields to change, given the chip as it is."""

        def change() -> I2cChips | SpiChips:
            if cs is not None:
                key = self._spi_key(cs)
                self._spi[key] = replace(self._spi[key], **edit(self._spi[key]))
                return self._spi_chips()
            if address is None:
                raise ValueError("say which chip: an I2C address or an SPI chip select")
            at = self._i2c_key(address)
            self._i2c[at] = replace(self._i2c[at], **edit(self._i2c[at]))
            return self._i2c_chips()

        self._link.tell(change)

    def _i2c_key(self, address: int) -> tuple[int, int, int]:
        keys = [key for key in self._i2c if key[2] == address]
        if len(keys) != 1:
            raise ValueError(f"{len(keys)} chips are wired at I2C address {address:#04x}: expected one")
        return keys[0]

    def _spi_key(self, cs: int) -> int:
        if cs not in self._spi:
            raise ValueError(f"no SPI chip is wired with its chip select on GPIO {cs}")
        return cs

    def _i2c_chips(self) -> I2cChips:
        return I2cChips(tuple(self._i2c.values()), self._air)

    def _spi_chips(self) -> SpiChips:
        return SpiChips(tuple(self._spi.values()))
