"""The one interface every source of frames implements."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reception:
    """One frame as one receiver heard it, with the radio's metadata.

    `timestamp_us` is the receiver's own microsecond clock at the end of the frame
    (it wraps at 2^32); a downlink in the node's receive window is timed against it.
    """

    frame: bytes
    source: str  # e.g. "bridge:/dev/ttyUSB0", "udp:0016c001ff10a235"
    received_at: float  # gateway's Unix time, seconds
    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int
    rssi_dbm: float
    snr_db: float
    timestamp_us: int

    def metadata(self) -> dict:
        """The reception as published on MQTT (everything but the frame itself)."""
        return {
            "source": self.source,
            "received_at": self.received_at,
            "frequency_hz": self.frequency_hz,
            "spreading_factor": self.spreading_factor,
            "bandwidth_hz": self.bandwidth_hz,
            "rssi_dbm": self.rssi_dbm,
            "snr_db": self.snr_db,
        }


@dataclass(frozen=True)
class Rejected:
    """Input a source could not turn into a Reception: counted and reported, never raised."""

    source: str
    reason: str  # a codec reason (bad_crc, bad_cobs, …) or a source's own (bad_json, crc_failed, …)
    detail: str = ""
    raw: bytes = b""


@dataclass(frozen=True)
class Downlink:
    """A frame to send in a node's receive window, after the reception it answers."""

    frame: bytes
    answers: Reception
    delay_us: int  # start this long after the end of `answers`, on the receiver's clock
    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int = 125_000
    tx_power_dbm: int = 14
    extra: dict = field(default_factory=dict)


class TransmitError(Exception):
    """A downlink the source could not send; `reason` says why (too_late, duty_cycle, …)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


Deliver = Callable[[Reception], Awaitable[None]]
Reject = Callable[[Rejected], Awaitable[None]]


class Source(abc.ABC):
    """A path frames arrive by. `run` lasts until cancelled and survives its own faults:
    a serial port that vanishes is reopened, a bad datagram is rejected and forgotten."""

    name: str

    @abc.abstractmethod
    async def run(self, deliver: Deliver, reject: Reject) -> None:
        """Hand every frame heard to `deliver` and everything unusable to `reject`, forever."""

    def heard(self, reception: Reception) -> bool:
        """Whether this source heard `reception`: its name is the reception's source, or prefixes it
        (a UDP source named "udp" hears "udp:<gateway EUI>")."""
        return reception.source == self.name or reception.source.startswith(self.name + ":")

    @abc.abstractmethod
    async def transmit(self, downlink: Downlink) -> None:
        """Send a downlink on this path; raises TransmitError if it cannot go out."""
