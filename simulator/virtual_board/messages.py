"""The messages between the host and the VM beside its console: one dataclass per kind, each with its JSON form.

Control messages go from the host to the VM on the control pipe and set the world outside the chip:
`PinLevel`, `AdcVoltage`, `I2cChips`, `SpiChips`, `RadioFrame`. On the pipe each also carries
`"seq"`, which the VM answers with an `Ack` once it has applied it. The same messages, without
`"seq"`, describe the world a VM boots into (`mcu.mjs --world`).

Events go from the VM to the host on the events pipe and say what the host must act on: `Ack`,
`WatchdogStarted`, `WatchdogFed`, `DeepSleep`, `PinOutput`, and the radio's `RadioReceiving`,
`RadioIdle` and `RadioTransmitting`, stamped in ns of the monotonic clock that `time.monotonic()`
reads too, since the pipe may be read late.

Every message is one line of JSON, an object whose `"type"` names its kind. `mcu.mjs` holds the VM's
side: its `controls` table applies each control message and hands it to the frozen module that
registered for its type with `_board.on_control(type, handler)`; its `emit` writes the events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Part:
    """A typed part of a message: its JSON object is made of its fields, and parses back into it."""

    def body(self) -> dict[str, Any]:
        """The JSON object of this part."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(**body)


@dataclass(frozen=True)
class Message(Part):
    """A whole message: its JSON object also says its `type`."""

    type: ClassVar[str]


# Control messages: host -> VM.


@dataclass(frozen=True)
class PinLevel(Message):
    """The host drives GPIO `pin` high (1), low (0), or no longer (None)."""

    type: ClassVar[str] = "pin_level"
    pin: int
    level: int | None


@dataclass(frozen=True)
class AdcVoltage(Message):
    """The voltage the host applies to ADC pin `pin`."""

    type: ClassVar[str] = "adc_voltage"
    pin: int
    microvolts: int


@dataclass(frozen=True)
class Air(Part):
    """What the environmental sensors measure; None leaves the chip models' default (frozen/i2c_bus.py)."""

    temperature_c: float | None = None
    humidity_pct: float | None = None
    pressure_hpa: float | None = None
    co2_ppm: int | None = None

    def body(self) -> dict[str, Any]:
        return {name: value for name, value in super().body().items() if value is not None}


@dataclass(frozen=True)
class I2cChip(Part):
    """A chip model on the I2C lines of GPIOs `sda` and `scl`, acknowledging `address`.

    `answering` False: it acknowledges nothing, as when unpowered. `corrupt` counts the answers the
    host asked it to damage since the chip was wired; a VM that boots takes them as already served,
    so a reset does not replay a fault. `state` is the model's own (`badge`, `interval_ms`, ...)."""

    kind: str
    sda: int
    scl: int
    address: int
    answering: bool = True
    corrupt: int = 0
    state: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "state": dict(self.state)}


@dataclass(frozen=True)
class I2cChips(Message):
    """Every chip on the board's I2C lines, and the air its sensors measure."""

    type: ClassVar[str] = "i2c_chips"
    chips: tuple[I2cChip, ...] = ()
    air: Air = Air()

    def body(self) -> dict[str, Any]:
        return {"chips": [chip.body() for chip in self.chips], "air": self.air.body()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(tuple(I2cChip.from_body(chip) for chip in body["chips"]), Air.from_body(body["air"]))


@dataclass(frozen=True)
class SpiChip(Part):
    """A chip model on the SPI lines of GPIOs `sck`, `mosi` and `miso`, selected while GPIO `cs` is low.

    `answering` False: unpowered, it hears nothing and leaves MISO alone; `corrupt` and `state` as
    for an `I2cChip`."""

    kind: str
    sck: int
    mosi: int
    miso: int
    cs: int
    answering: bool = True
    corrupt: int = 0
    state: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "state": dict(self.state)}


@dataclass(frozen=True)
class SpiChips(Message):
    """Every chip on the board's SPI lines."""

    type: ClassVar[str] = "spi_chips"
    chips: tuple[SpiChip, ...] = ()

    def body(self) -> dict[str, Any]:
        return {"chips": [chip.body() for chip in self.chips]}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(tuple(SpiChip.from_body(chip) for chip in body["chips"]))


@dataclass(frozen=True)
class RadioFrame(Message):
    """A LoRa frame at the board's antenna, as its modem would report it: RSSI in dBm, SNR in dB x 4
    (the chips' signed 8-bit register), and whether its CRC checked."""

    type: ClassVar[str] = "radio_frame"
    payload: bytes
    rssi_dbm: int
    snr_x4: int
    crc_ok: bool = True

    def body(self) -> dict[str, Any]:
        return {**super().body(), "payload": self.payload.hex()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(**{**body, "payload": bytes.fromhex(body["payload"])})


@dataclass(frozen=True)
class FlashFault(Message):
    """The flash refuses every write (`refuse_writes`), as a worn or failing one does: littlefs's
    LFS_ERR_IO, which MicroPython raises as OSError(EIO); reads still work. False mends it."""

    type: ClassVar[str] = "flash_fault"
    refuse_writes: bool


# Events: VM -> host.


@dataclass(frozen=True)
class Ack(Message):
    """The VM has applied the control message numbered `seq`."""

    type: ClassVar[str] = "ack"
    seq: int


@dataclass(frozen=True)
class WatchdogStarted(Message):
    """`machine.WDT(timeout=timeout_ms)`: the host runs the watchdog's clock."""

    type: ClassVar[str] = "wdt_start"
    timeout_ms: int


@dataclass(frozen=True)
class WatchdogFed(Message):
    type: ClassVar[str] = "wdt_feed"


@dataclass(frozen=True)
class DeepSleep(Message):
    """`machine.deepsleep(ms)`: the VM ends next; the host wakes the board after `ms` (never, for 0)."""

    type: ClassVar[str] = "deep_sleep"
    ms: int


@dataclass(frozen=True)
class PinOutput(Message):
    """The board drives GPIO `pin` at `level`, or no longer drives it (None)."""

    type: ClassVar[str] = "pin_output"
    pin: int
    level: int | None


@dataclass(frozen=True)
class RadioSettings(Part):
    """How the board's LoRa modem sends and receives, as its chip's model is set up. `syncword` is
    SX127x's 8-bit form (SX126x's 0x1424 is 0x12)."""

    freq_hz: int
    sf: int
    bw_hz: int
    coding_rate: int
    preamble_len: int
    crc_en: bool
    implicit_header: bool
    syncword: int
    invert_iq_rx: bool
    invert_iq_tx: bool
    output_power: int


@dataclass(frozen=True)
class RadioReceiving(Message):
    """From `at_ns` on, the modem listens with `settings`."""

    type: ClassVar[str] = "radio_receiving"
    at_ns: int
    settings: RadioSettings

    def body(self) -> dict[str, Any]:
        return {"at_ns": self.at_ns, "settings": self.settings.body()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(body["at_ns"], RadioSettings.from_body(body["settings"]))


@dataclass(frozen=True)
class RadioIdle(Message):
    """From `at_ns` on, the modem neither listens nor sends."""

    type: ClassVar[str] = "radio_idle"
    at_ns: int


@dataclass(frozen=True)
class RadioTransmitting(Message):
    """From `at_ns` on, the modem sends `payload` with `settings` (and does not listen meanwhile)."""

    type: ClassVar[str] = "radio_transmitting"
    at_ns: int
    payload: bytes
    settings: RadioSettings

    def body(self) -> dict[str, Any]:
        return {"at_ns": self.at_ns, "payload": self.payload.hex(), "settings": self.settings.body()}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(body["at_ns"], bytes.fromhex(body["payload"]), RadioSettings.from_body(body["settings"]))


Control = PinLevel | AdcVoltage | I2cChips | SpiChips | RadioFrame | FlashFault
"""A message from the host to the VM."""

Event = Ack | WatchdogStarted | WatchdogFed | DeepSleep | PinOutput | RadioReceiving | RadioIdle | RadioTransmitting
"""A message from the VM to the host."""

CONTROLS: tuple[type[Message], ...] = (PinLevel, AdcVoltage, I2cChips, SpiChips, RadioFrame, FlashFault)
EVENTS: tuple[type[Message], ...] = (
    Ack,
    WatchdogStarted,
    WatchdogFed,
    DeepSleep,
    PinOutput,
    RadioReceiving,
    RadioIdle,
    RadioTransmitting,
)
_KINDS: dict[str, type[Message]] = {kind.type: kind for kind in (*CONTROLS, *EVENTS)}


def encode(message: Message, seq: int | None = None) -> str:
    """The line (without its newline) that carries `message`, numbered `seq` on the control pipe."""
    numbered = {} if seq is None else {"seq": seq}
    return json.dumps({"type": message.type, **message.body(), **numbered}, separators=(",", ":"))


def decode(line: str | bytes) -> Message:
    """The message a line carries (its `seq`, if any, dropped); ValueError if it is none of ours."""
    try:
        body = json.loads(line)
        kind = _KINDS[body.pop("type")]
        if kind in CONTROLS:
            body.pop("seq", None)  # the pipe's numbering, not the message's
        return kind.from_body(body)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a virtual board message: {line!r}") from error
