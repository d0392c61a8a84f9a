"""Role bridge: the Raspberry Pi's LoRa radio, over the USB serial port (the console).

Every frame heard goes to the gateway as a `received` record with its radio metadata and the
time it ended, on a microsecond clock (ticks_us). The gateway answers with `transmit` requests
(ACKs in a node's receive window, at that clock's time plus the window's delay), which the bridge
sends at that time and answers with a `transmit_result`. A heartbeat says the bridge is alive.

The link carries bytes that the REPL would take as Ctrl-C, so the bridge turns that off while it
runs; a Ctrl-C that is not part of a good record (mpremote's, never the gateway's) still stops it.
"""

import asyncio
import select
import struct
import sys
import time

import micropython
from micropython import const

from borne import app, link
from borne.radio import Radio

HEARTBEAT_MS = const(10000)
LEAD_MS = const(30)  # the listener stops this long before a transmission, to free the radio
EARLIEST_MS = const(5000)  # a request further ahead than this is refused: too_early
MAX_WAIT_MS = const(-5)  # and one this far behind its time: too_late
SERIAL_POLL_MS = const(5)  # stdin has no asyncio stream on every port: polled
INTERRUPT_IDLE_MS = const(200)  # a Ctrl-C in an unfinished record this long idle is a person's
_CTRL_C = const(0x03)
_TICKS_MASK = const(0x3FFFFFFF)  # ticks_us wraps at 2**30: the gateway adds delays modulo 2**32


def _bandwidth(hz):
    return "%g" % (hz / 1000)  # lora_cfg's bandwidth: "125", "62.5"


class Bridge:
    def __init__(self, config):
        self.config = config
        self.radio = Radio(config["board"]["radio"], config["radio"])
        self._writer = link.Writer()
        self._reader = link.Reader()
        self._requests = []  # transmit requests accepted, waiting for their time: (at_ms, tx_id, record copy)
        self._due = asyncio.Event()
        self._uptime = app.Uptime()
        self.received = 0
        self.transmitted = 0
        self.dropped = 0  # records that could not be written to the host

    async def run(self):
        micropython.kbd_intr(-1)
        try:
            await asyncio.gather(self._listen(), self._serial(), self._transmit(), self._heartbeat())
        finally:
            micropython.kbd_intr(_CTRL_C)

    def _write(self, n):
        try:
            sys.stdout.buffer.write(self._writer.frame(n))
        except OSError:
            self.dropped += 1

    # Radio to host.

    async def _listen(self):
        radio = self.radio
        freq_khz = self.config["radio"]["freq_khz"]
        while True:
            async with radio.lock:
                packet = None
                if not self._requests:  # else a transmission is about to take the radio
                    try:
                        packet = await radio.receive(freq_khz, None)
                    except (OSError, RuntimeError):
                        radio.errors += 1
            if packet is None:
                await asyncio.sleep_ms(LEAD_MS)  # a transmission stopped us: it takes the radio first
                continue
            self.received += 1
            self._forward(packet)

    def _forward(self, packet):
        ended_us = time.ticks_add(time.ticks_us(), -time.ticks_diff(time.ticks_ms(), packet.ticks_ms) * 1000)
        radio = self.radio
        record = self._writer.record
        struct.pack_into(
            link.RECEIVED_LAYOUT,
            record,
            0,
            link.RECEIVED,
            self.config["radio"]["freq_khz"] * 1000,
            radio.sf,
            radio.bw_hz,
            self.config["radio"]["coding_rate"],
            packet.rssi,
            packet.snr,
            ended_us,
        )
        at = link.RECEIVED_SIZE
        for byte in packet:  # RxPacket subclasses bytearray, which slice assignment refuses
            record[at] = byte
            at += 1
        self._write(at)

    # Host to radio.

    async def _serial(self):
        poll = select.poll()
        poll.register(sys.stdin, select.POLLIN)
        stdin = sys.stdin.buffer
        reader = self._reader
        interrupt = False  # a Ctrl-C in the record being gathered
        last_byte = time.ticks_ms()
        while True:
            while poll.poll(0):
                byte = stdin.read(1)[0]
                last_byte = time.ticks_ms()
                if byte == _CTRL_C:
                    interrupt = True
                n = reader.feed(byte)
                if byte == 0:
                    interrupt = False
                if n:
                    self._request(n)
            if interrupt and time.ticks_diff(time.ticks_ms(), last_byte) >= INTERRUPT_IDLE_MS:
                raise KeyboardInterrupt
            await asyncio.sleep_ms(SERIAL_POLL_MS)

    def _request(self, n):
        record = self._reader.record
        if record[0] != link.TRANSMIT:
            return  # the gateway sends only transmit requests: anything else is not for us
        if n < link.TRANSMIT_SIZE + 1:
            return self._result(record[1] | record[2] << 8 if n >= 3 else 0, link.BAD_REQUEST)
        _, tx_id, freq_hz, sf, bw_hz, cr, power, timing, at_us = struct.unpack_from(link.TRANSMIT_LAYOUT, record)
        if self._requests:
            return self._result(tx_id, link.BUSY)  # one ACK at a time: a second one would be late anyway
        delay_ms = 0
        if timing == link.AT_TIMESTAMP:
            delay_ms = time.ticks_diff(at_us & _TICKS_MASK, time.ticks_us()) // 1000
        if delay_ms < MAX_WAIT_MS:
            return self._result(tx_id, link.TOO_LATE)
        if delay_ms > EARLIEST_MS:
            return self._result(tx_id, link.TOO_EARLY)
        airtime = self.radio.airtime_us(n - link.TRANSMIT_SIZE)
        try:
            if self.radio.duty.wait_ms(freq_hz, airtime):
                return self._result(tx_id, link.DUTY_CYCLE)
        except ValueError:
            return self._result(tx_id, link.BAD_REQUEST)  # outside EU868, or too long for any budget
        at_ms = time.ticks_add(time.ticks_ms(), max(delay_ms, 0))
        cfg = {"freq_khz": freq_hz // 1000, "sf": sf, "bw": _bandwidth(bw_hz), "coding_rate": cr}
        cfg["output_power"] = power
        self._requests.append((at_ms, tx_id, cfg, bytes(record[link.TRANSMIT_SIZE : n]), airtime))
        self._due.set()

    async def _transmit(self):
        radio = self.radio
        while True:
            await self._due.wait()
            self._due.clear()
            while self._requests:
                at_ms, tx_id, cfg, frame, airtime = self._requests[0]
                wait = time.ticks_diff(at_ms, time.ticks_ms()) - LEAD_MS
                if wait > 0:
                    await asyncio.sleep_ms(wait)
                radio.modem.standby()  # the listener's receive returns None: it gives the radio up
                async with radio.lock:
                    result = link.SENT
                    try:
                        radio.modem.configure(cfg)
                        radio.set_sf(radio.sf)  # the listener tunes the uplink channel again
                        radio.duty.spend(cfg["freq_khz"] * 1000, airtime)
                        await radio.modem.send(frame, at_ms)
                        self.transmitted += 1
                    except (OSError, RuntimeError):
                        radio.errors += 1
                        result = link.RADIO_ERROR
                self._requests.pop(0)
                self._result(tx_id, result, airtime if result == link.SENT else 0)

    def _result(self, tx_id, result, airtime_us=0):
        struct.pack_into(link.RESULT_LAYOUT, self._writer.record, 0, link.TRANSMIT_RESULT, tx_id, result, airtime_us)
        self._write(struct.calcsize(link.RESULT_LAYOUT))

    async def _heartbeat(self):
        while True:
            major, minor, patch = app.FIRMWARE_VERSION
            struct.pack_into(
                link.HEARTBEAT_LAYOUT,
                self._writer.record,
                0,
                link.HEARTBEAT,
                link.LINK_VERSION,
                major,
                minor,
                patch,
                self._uptime.seconds(),
                self.received,
                self.transmitted,
                min(self.radio.errors, 0xFFFF),
                min(self.dropped + self._reader.damaged, 0xFFFF),
            )
            self._write(struct.calcsize(link.HEARTBEAT_LAYOUT))
            await asyncio.sleep_ms(HEARTBEAT_MS)
