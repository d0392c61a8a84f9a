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

from borne import app, contract, link, link_contract
from borne.radio import Radio

HEARTBEAT_MS = const(10000)
# The listener stops this long before a transmission, which then takes the radio: time to call the
# receive off and load the frame (a few SPI writes). Half duplex, the bridge hears nothing from then
# until the frame is out: every ms here is a ms an uplink can be lost in, at each ACK.
LEAD_MS = const(10)
# Transmissions scheduled at once. Doors answered one second after their uplinks overlap in that
# second: with room for one, every second door's ACK was refused while the first waited.
MAX_REQUESTS = const(4)
EARLIEST_MS = const(5000)  # a request further ahead than this is refused: too_early
MAX_WAIT_MS = const(-5)  # and one this far behind its time: too_late
SERIAL_POLL_MS = const(5)  # stdin has no asyncio stream on every port: polled
_CTRL_C = const(0x03)
_CTRL_E = const(0x05)
_CR = const(0x0D)
_BANDWIDTHS_HZ = (125000, 250000, 500000)
_TICKS_MASK = const(0x3FFFFFFF)  # ticks_us wraps at 2**30: the gateway adds delays modulo 2**32


def _bandwidth(hz):
    return "%g" % (hz / 1000)  # lora_cfg's bandwidth: "125", "62.5"


class Bridge:
    def __init__(self, config):
        self.config = config
        self.radio = Radio(config["board"]["radio"], config["radio"])
        self._writer = link.Writer()
        self._reader = link.Reader()
        self._requests = []  # transmit requests accepted, by time: (at_ms, tx_id, cfg, frame, airtime_us)
        self._due = asyncio.Event()
        self._stop = asyncio.Event()  # mpremote's Ctrl-C, read on the console
        self._uptime = app.Uptime()
        self.received = 0
        self.transmitted = 0
        self.dropped = 0  # records that could not be written to the host

    async def run(self):
        """Relay until a Ctrl-C arrives on the console; then return, leaving the REPL to mpremote."""
        micropython.kbd_intr(-1)
        tasks = [app.supervised(job) for job in (self._listen(), self._transmit(), self._heartbeat())]
        tasks.append(app.supervised(self._serial(), may_end=True))  # it ends at mpremote's Ctrl-C
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            micropython.kbd_intr(_CTRL_C)
            self.radio.modem.standby()

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
                heard = None
                listen_ms = self._listen_ms()
                if listen_ms != 0:  # else a transmission is about to take the radio
                    heard = await radio.receive(freq_khz, listen_ms)
            if not heard:
                await asyncio.sleep_ms(LEAD_MS)  # a transmission stopped us: it takes the radio first
                continue
            self.received += 1
            self._forward(radio.packet)

    def _listen_ms(self):
        """How long the listener may hold the radio: None (no transmission waits), or until the next
        one's lead time, 0 once it has come. Half duplex: the bridge is deaf only while it sends."""
        if not self._requests:
            return None
        return max(time.ticks_diff(self._requests[0][0], time.ticks_ms()) - LEAD_MS, 0)

    def _forward(self, packet):
        if len(packet) > contract.MAX_FRAME_SIZE:
            self.dropped += 1  # a stranger's long packet: no frame of ours, and no room in a record
            return
        radio = self.radio
        ended_us = time.ticks_add(time.ticks_us(), -time.ticks_diff(time.ticks_ms(), radio.rx_ticks_ms) * 1000)
        record = self._writer.record
        struct.pack_into(
            link_contract.RECEIVED_LAYOUT,
            record,
            0,
            link_contract.RECORD_RECEIVED,
            self.config["radio"]["freq_khz"] * 1000,
            radio.sf,
            radio.bw_hz,
            self.config["radio"]["coding_rate"],
            radio.rssi,
            radio.snr,
            ended_us,
        )
        at = link_contract.RECEIVED_SIZE
        for byte in packet:  # a view of the driver's buffer: copied byte by byte, as a slice would allocate
            record[at] = byte
            at += 1
        self._write(at)

    # Host to radio.

    async def _serial(self):
        poll = select.poll()
        poll.register(sys.stdin, select.POLLIN)
        stdin = sys.stdin.buffer
        reader = self._reader
        # mpremote (and pyboard.py) come in with "\r\x03": the gateway never sends it, since its
        # records to us all begin with a COBS code and the transmit type, 0x02. Reading stops there:
        # what follows ("\x01", raw REPL) is left for the REPL.
        previous = 0
        only_control = True  # every byte since the last delimiter is a REPL control character
        while True:
            while poll.poll(0):
                byte = stdin.read(1)[0]
                if byte == _CTRL_C and previous == _CR and only_control:
                    self._stop.set()
                    return
                only_control = only_control and (byte == _CR or 0 < byte <= _CTRL_E)
                previous = byte
                n = reader.feed(byte)
                if byte == 0:
                    only_control = True
                if n:
                    self._request(n)
            await asyncio.sleep_ms(SERIAL_POLL_MS)

    def _request(self, n):
        record = self._reader.record
        if record[0] != link_contract.RECORD_TRANSMIT:
            return  # the gateway sends only transmit requests: anything else is not for us
        if n < link_contract.TRANSMIT_SIZE + 1:
            return self._result(record[1] | record[2] << 8 if n >= 3 else 0, link_contract.TX_BAD_REQUEST)
        _, tx_id, freq_hz, sf, bw_hz, cr, power, timing, at_us = struct.unpack_from(
            link_contract.TRANSMIT_LAYOUT, record
        )
        if not (7 <= sf <= 12 and bw_hz in _BANDWIDTHS_HZ and 5 <= cr <= 8):
            return self._result(tx_id, link_contract.TX_BAD_REQUEST)  # settings the modem would refuse
        if len(self._requests) >= MAX_REQUESTS:
            return self._result(tx_id, link_contract.TX_BUSY)
        delay_ms = 0
        if timing == link_contract.TIMING_AT_TIMESTAMP:
            delay_ms = time.ticks_diff(at_us & _TICKS_MASK, time.ticks_us()) // 1000
        if delay_ms < MAX_WAIT_MS:
            return self._result(tx_id, link_contract.TX_TOO_LATE)
        if delay_ms > EARLIEST_MS:
            return self._result(tx_id, link_contract.TX_TOO_EARLY)
        airtime = self.radio.airtime_us(n - link_contract.TRANSMIT_SIZE)
        at_ms = time.ticks_add(time.ticks_ms(), max(delay_ms, 0))
        queued_us = 0
        place = len(self._requests)  # the requests stay in time order
        for i, (other_ms, _, _, _, other_us) in enumerate(self._requests):
            queued_us += other_us
            if time.ticks_diff(other_ms, at_ms) > 0 and place > i:
                place = i
            # Both on the air at once, or too close for the radio to be set up between them.
            if _overlap(at_ms, airtime, other_ms, other_us):
                return self._result(tx_id, link_contract.TX_BUSY)
        duty = self.radio.duty
        try:
            wait_ms = duty.wait_ms(freq_hz, airtime)
        except ValueError:
            return self._result(tx_id, link_contract.TX_BAD_REQUEST)  # outside EU868, or too long for any budget
        if queued_us:
            # The queued transmissions spend the budget first: one they would leave short goes late.
            try:
                wait_ms = duty.wait_ms(freq_hz, airtime + queued_us)
            except ValueError:  # together longer than the sub-band's bucket
                wait_ms = 1
        if wait_ms:
            return self._result(tx_id, link_contract.TX_DUTY_CYCLE)
        cfg = {"freq_khz": freq_hz // 1000, "sf": sf, "bw": _bandwidth(bw_hz), "coding_rate": cr}
        cfg["output_power"] = min(power, self.radio.max_power_dbm)
        self._requests.insert(place, (at_ms, tx_id, cfg, bytes(record[link_contract.TRANSMIT_SIZE : n]), airtime))
        self._due.set()

    async def _transmit(self):
        radio = self.radio
        while True:
            await self._due.wait()
            self._due.clear()
            while self._requests:
                request = self._requests[0]
                at_ms, tx_id, cfg, frame, airtime = request
                wait = time.ticks_diff(at_ms, time.ticks_ms()) - LEAD_MS
                if wait > 0:
                    # In steps, so that an earlier request that comes meanwhile goes first.
                    await asyncio.sleep_ms(min(wait, LEAD_MS))
                    continue
                radio.modem.standby()  # the listener's receive returns None: it gives the radio up
                async with radio.lock:
                    sent = await radio.send(frame, cfg["freq_khz"], at_ms, cfg=cfg)
                self._requests.remove(request)
                if not sent:
                    self._result(tx_id, link_contract.TX_RADIO_ERROR)
                else:
                    self.transmitted += 1
                    self._result(tx_id, link_contract.TX_SENT, airtime)

    def _result(self, tx_id, result, airtime_us=0):
        struct.pack_into(
            link_contract.TRANSMIT_RESULT_LAYOUT,
            self._writer.record,
            0,
            link_contract.RECORD_TRANSMIT_RESULT,
            tx_id,
            result,
            airtime_us,
        )
        self._write(link_contract.TRANSMIT_RESULT_SIZE)

    async def _heartbeat(self):
        while True:
            major, minor, patch = app.FIRMWARE_VERSION
            struct.pack_into(
                link_contract.HEARTBEAT_LAYOUT,
                self._writer.record,
                0,
                link_contract.RECORD_HEARTBEAT,
                link_contract.LINK_VERSION,
                major,
                minor,
                patch,
                self._uptime.seconds(),
                self.received,
                self.transmitted,
                min(self.radio.errors, 0xFFFF),
                min(self.dropped + self._reader.damaged, 0xFFFF),
            )
            self._write(link_contract.HEARTBEAT_SIZE)
            await asyncio.sleep_ms(HEARTBEAT_MS)


def _overlap(a_ms, a_us, b_ms, b_us):
    """Whether transmissions starting at ticks_ms a_ms and b_ms, a_us and b_us long, come closer than
    LEAD_MS: the radio needs that long between them to be set up for the next."""
    start = time.ticks_diff(b_ms, a_ms)  # b's start, from a's
    return -(b_us // 1000 + LEAD_MS) < start < a_us // 1000 + LEAD_MS
