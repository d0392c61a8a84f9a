"""The bridge board on USB serial: records of `payload_codec.bridge_link` both ways.

The port is opened without resetting the board (see `open_without_reset`), read through
pyserial-asyncio-fast, and reopened whenever it vanishes, for as long as the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial
import serial_asyncio_fast

from payload_codec.bridge_link import DELIMITER, LINK_VERSION, Record, RecordStream, encode_record
from payload_codec.errors import CodecError

from .base import Deliver, Downlink, Reception, Reject, Rejected, Source, SourceStats, TransmitError, counter

log = logging.getLogger(__name__)

CODING_RATE = 5  # 4/5, what every Borne node listens with
CLOSE_WAIT_S = 1.0  # how long a closing port may take before we stop waiting for it


def open_without_reset(port: str, baudrate: int) -> serial.Serial:
    """Open `port` leaving DTR and RTS deasserted, so that an ESP32's auto-reset circuit stays quiet.

    Linux raises DTR and RTS together whenever a serial tty is opened (tty_port_block_til_ready;
    no open flag prevents it). That state is harmless: the ESP32's two-transistor circuit resets
    or selects the bootloader only when exactly one line is asserted. pyserial's open() then
    applies its DTR setting before its RTS setting, so asking for both False would pass through
    "RTS alone": EN low, a reset pulse. Clearing RTS first (DTR alone only holds IO0 low, which
    matters at reset time only), then DTR, never gets there.
    HUPCL is cleared too, so that closing the port never changes the lines either.
    Raises serial.SerialException (an OSError) when the port cannot be opened.
    """
    link = serial.Serial()  # unopened: every setting below applies at open()
    link.port = port
    link.baudrate = baudrate
    link.exclusive = True  # a second daemon or a forgotten `screen` fails here, with a clear error
    link.timeout = 0
    link.write_timeout = 0
    link.dtr = True  # already raised by the kernel: no change
    link.rts = False
    link.open()
    try:
        _deassert_dtr(link)
        attributes = termios.tcgetattr(link.fd)
        attributes[2] &= ~termios.HUPCL
        termios.tcsetattr(link.fd, termios.TCSANOW, attributes)
    except (OSError, termios.error) as error:
        link.close()
        raise serial.SerialException(f"could not configure {port}: {error}") from error
    return link


def _deassert_dtr(link: serial.Serial) -> None:
    try:
        link.dtr = False
    except OSError as error:
        # A pty, or a port without modem lines, refuses the ioctl; pyserial's own open() ignores it so too.
        if error.errno not in (errno.EINVAL, errno.ENOTTY):
            raise


class _PortLost(ConnectionError):
    """The open port stopped working: unplugged, or the board reset its USB."""


class _Link(asyncio.Protocol):
    """An open port: what pyserial-asyncio-fast reads, queued for the bridge's reading task; `None` marks the end."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.error: Exception | None = None
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.put_nowait(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.chunks.put_nowait(None)
        self.closed.set()


@dataclass
class BridgeStats(SourceStats):
    """A bridge's counters: those of every source, and the serial link's own. `heartbeat` holds
    the board's last heartbeat record: its firmware, uptime and its own counters."""

    records: int = counter("borne_bridge_records_total", "Records read from the bridge board, of every kind")
    late_results: int = counter(
        "borne_bridge_late_results_total", "Transmit results that came after their downlink gave up"
    )


class SerialBridge(Source[_Link]):
    """The bridge board on a serial port, e.g. `/dev/serial/by-id/usb-…` or `/dev/ttyUSB0`.

    `run` reads records forever and reopens the port `reopen_delay_s` after it vanishes;
    `transmit` sends a downlink timed on the bridge's clock and waits `transmit_timeout_s`
    for the bridge's answer. `stats` holds the counters and the board's last heartbeat.
    """

    stats: BridgeStats
    listens_on_one_sf = True

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        reopen_delay_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        transmit_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(f"bridge:{port}", BridgeStats(), reconnect_delay_s=reopen_delay_s, clock=clock)
        self.port = port
        self.baudrate = baudrate
        self.transmit_timeout_s = transmit_timeout_s
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._next_tx_id = 0

    # --- one session of an open port ------------------------------------------------------

    async def _connect(self) -> _Link:
        link = await asyncio.get_running_loop().run_in_executor(None, open_without_reset, self.port, self.baudrate)
        # connection_for_serial wraps the Serial we opened; create_serial_connection cannot be told
        # about DTR/RTS (Serial() takes no such arguments) and would open with both asserted.
        try:
            transport, protocol = await serial_asyncio_fast.connection_for_serial(
                asyncio.get_running_loop(), _Link, link
            )
        except BaseException:
            link.close()
            raise
        assert isinstance(protocol, _Link)
        self._transport = transport
        transport.write(DELIMITER)  # ends whatever half record the board's reader holds
        log.info("%s: bridge board connected", self.name)
        return protocol

    async def _serve(self, link: _Link, deliver: Deliver, reject: Reject) -> None:
        records = RecordStream()
        while True:
            chunk = await link.chunks.get()
            if chunk is None:
                raise _PortLost(link.error or "the port closed")
            for item in records.feed(chunk):
                await self._handle(item, chunk, deliver, reject)

    async def _disconnect(self, link: _Link) -> None:
        self._transport = None
        for answer in self._pending.values():
            if not answer.done():
                # The record went out: the bridge may have sent it, or may still. Not `disconnected`,
                # which says nothing was written, and after which another receiver may send the downlink.
                answer.set_exception(TransmitError("port_lost", f"{self.port} closed while the bridge had the request"))
        if link.transport is not None and not link.transport.is_closing():
            link.transport.abort()
        with contextlib.suppress(TimeoutError):  # so that a stopped bridge has let go of the port
            async with asyncio.timeout(CLOSE_WAIT_S):
                await link.closed.wait()

    def _cannot_connect(self, error: Exception) -> str:
        return (
            f"cannot open the port ({error}). Check that the bridge board is plugged in, that the path "
            "exists (prefer /dev/serial/by-id/…), that the daemon's user is in the dialout group and that "
            "no other program (a serial console, ModemManager) holds the port"
        )

    def _lost(self, error: Exception) -> str:
        return (
            f"lost the port ({error}). Check the bridge board's USB cable and power supply; "
            "`dmesg` shows whether the USB device disconnected"
        )

    async def _handle(self, item: Record | CodecError, chunk: bytes, deliver: Deliver, reject: Reject) -> None:
        if isinstance(item, CodecError):
            # The stream does not say which bytes made the bad record: give what was read with it.
            await reject(Rejected(source=self.name, reason=item.reason, detail=item.detail, raw=chunk))
            return
        self.stats.records += 1
        fields = item.fields
        match item.kind:
            case "received":
                await deliver(
                    Reception(
                        frame=bytes.fromhex(fields["frame"]),
                        source=self.name,
                        received_at=self.clock(),
                        frequency_hz=fields["frequency_hz"],
                        spreading_factor=fields["spreading_factor"],
                        bandwidth_hz=fields["bandwidth_hz"],
                        rssi_dbm=float(fields["rssi_dbm"]),
                        snr_db=fields["snr_db"],
                        timestamp_us=fields["timestamp_us"],
                    )
                )
            case "transmit_result":
                answer = self._pending.get(fields["tx_id"])
                if answer is None or answer.done():
                    self.stats.late_results += 1
                    log.info(
                        "%s: result %s for transmit %d came too late", self.name, fields["result"], fields["tx_id"]
                    )
                else:
                    answer.set_result(fields["result"])
            case "heartbeat":
                last_version = self.stats.heartbeat["link_version"] if self.stats.heartbeat else None
                if fields["link_version"] not in (LINK_VERSION, last_version):  # said once, not every heartbeat
                    log.warning(
                        "%s: the bridge firmware speaks link version %d, this gateway %d: update the one behind",
                        self.name,
                        fields["link_version"],
                        LINK_VERSION,
                    )
                self.stats.heartbeat, self.stats.heartbeat_at = fields, self.clock()
            case "log":
                log.log(logging.getLevelName(fields["level"].upper()), "%s: %s", self.name, fields["text"])
            case _:  # a `transmit` record: only the gateway sends those
                await reject(Rejected(self.name, "unexpected_record", f"the bridge sent a {item.kind} record", chunk))

    async def _send(self, downlink: Downlink) -> None:
        """Send `downlink` through the bridge at its reception's timestamp plus `delay_us`.

        Raises TransmitError with the bridge's result (too_late, duty_cycle, …), `no_answer`
        when the bridge says nothing in time, `disconnected` when the port is down (nothing was written),
        or `port_lost` when it closed while the bridge had the request (it may have gone out)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TransmitError("disconnected", f"{self.port} is not open")
        tx_id, self._next_tx_id = self._next_tx_id, (self._next_tx_id + 1) % 65536
        try:
            record = encode_record(
                "transmit",
                {
                    "tx_id": tx_id,
                    "frequency_hz": downlink.frequency_hz,
                    "spreading_factor": downlink.spreading_factor,
                    "bandwidth_hz": downlink.bandwidth_hz,
                    "coding_rate": CODING_RATE,
                    "tx_power_dbm": downlink.tx_power_dbm,
                    "timing": "at_timestamp",
                    "timestamp_us": (downlink.answers.timestamp_us + downlink.delay_us) % 2**32,
                    "frame": downlink.frame.hex(),
                },
            )
        except CodecError as error:
            raise TransmitError("bad_request", error.detail) from None
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[tx_id] = answer
        try:
            transport.write(record)
            async with asyncio.timeout(self.transmit_timeout_s):
                result = await answer
        except TimeoutError:
            raise TransmitError(
                "no_answer", f"the bridge did not answer within {self.transmit_timeout_s:g} s"
            ) from None
        finally:
            del self._pending[tx_id]
        if result != "sent":
            raise TransmitError(result)
