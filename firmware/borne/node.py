"""Role node: badges and sensors at a door or in a room, sent over LoRa.

Tasks, one job each, on one asyncio loop:
  _badges     polls the reader; a new presentation goes into the check-in queue (on flash)
  _checkins   sends the queue's oldest events in one frame and waits for its ACK in the receive
              window; without one, backs off with jitter and builds a frame again: a new counter,
              the ages of that moment, the events that follow those of the last frame (then the
              oldest again), and the events' numbers, by which the gateway publishes each
              check-in once whichever frame carried it
  _telemetry  every telemetry_s, the sensors' readings (not acknowledged)
  _status     at boot, again 10 to 30 s later, then every status_s: uptime, reset cause, queue,
              faults, counters, and the digest of the last config applied; a config downlink may
              follow in its receive window, and once one is applied the next status goes out soon
              to show it
Telemetry and status keep their own schedule whatever the check-ins wait for: they share only
the radio, and a check-in frame holds it for one send and its receive window.
A battery node without NFC does one telemetry (and status when due) per wake and deep-sleeps.
"""

import asyncio
import time

import machine
from micropython import const

from borne import app, backoff, retained
from borne.airtime import max_frame_size
from borne.badges import Presentations
from borne.checkin_queue import CheckinQueue
from borne.contract import (
    ACK,
    ACK_TIME_SIZE,
    BADGE_RETAP_S,
    CHECKIN_DIRECTION,
    DIRECTIONS,
    ENVELOPE_SIZE,
    NUMBER_WINDOW,
    REBOOT,
    REPORT_INTERVAL_S,
    SPREADING_FACTOR,
    STATUS_INTERVAL_S,
    TAG_TYPES,
    TX_POWER_DBM,
)
from borne.counter import FrameCounter
from borne.crypto import DeviceKeys, badge_token
from borne.frame import Downlink, Uplink, checkin_tag, max_checkins
from borne.radio import Radio
from borne.sensors import Sensors

_POLL_MS = const(150)  # badge reader polls: a tap lasts a few hundred ms
_RX_EARLY_MS = const(200)  # the receive window opens this much before the ACK is due (a reader poll may hold the loop)
_RX_LATE_MS = const(200)  # and stays open this much after its end
_ACK_FRAME_SIZE = ENVELOPE_SIZE + ACK_TIME_SIZE  # the longest ACK on air: with the gateway's time
_STATUS_AFTER_BOOT_MS = const(3000)  # plus up to as much again, at random
# The boot status goes out a second time, this long after the first plus up to twice as much again:
# nodes powered on together (a power cut's end) may have lost the first in a collision, and a status
# is not acknowledged. Without it the gateway would know nothing of the node (firmware, reset cause)
# for an hour, and Home Assistant would show its diagnostics unknown that long.
_STATUS_AGAIN_AFTER_MS = const(10000)
_STATUS_AFTER_CONFIG_MS = const(3000)  # the status that shows the gateway a config was applied
_TRIES_BEFORE_FULL = const(4)  # at least, before a queue filling at its pace evicts a check-in
_JITTER_PCT = const(10)  # each report interval varies by up to this much, at random


class Led:
    def __init__(self, spec):
        self._pin = None
        if spec:
            self._on = 1 if spec.get("active_high", True) else 0
            self._pin = machine.Pin(spec["pin"], machine.Pin.OUT, value=1 - self._on)

    def flash(self, ms=200):
        if self._pin is not None:
            self._flashing = asyncio.create_task(self._flash(self._pin, ms))

    async def _flash(self, pin, ms):
        pin.value(self._on)
        await asyncio.sleep_ms(ms)
        pin.value(1 - self._on)


class Node:
    def __init__(self, config):
        self.config = config
        board = config["board"]
        self.reset_cause = app.reset_cause()
        self.uptime = app.Uptime()
        keys = config["keys"]
        device_keys = DeviceKeys(bytes.fromhex(keys["mic"]), bytes.fromhex(keys["enc"]))
        device_id = config["device_id"]
        self.uplink = Uplink(device_id, device_keys)
        self.downlink = Downlink(device_id, device_keys)
        resume_at = None
        if self.reset_cause == machine.DEEPSLEEP_RESET:
            resume_at = retained.load().get("counter")
        self.counter = FrameCounter(resume_at=resume_at)
        # A node that deep-sleeps between reports runs nothing else while it transmits: the CPU sleeps too.
        self.radio = Radio(board["radio"], config["radio"], light_sleep=config["deep_sleep"])
        self.led = Led(board.get("led"))
        self._i2c = sensor_bus(board)
        self.sensors = Sensors(config.get("sensors", []), board, self._i2c, deep_sleep=config["deep_sleep"])
        self.reader_errors = 0
        self.rejected_downlinks = 0
        self.config_save_errors = 0  # configurations the flash refused to keep
        self.configured = False  # a config downlink was applied since the last status
        nfc = config.get("nfc")
        self.queue = None
        if nfc:
            self.queue = CheckinQueue()
            self.badge_key = bytes.fromhex(keys["badge"])
            self.direction = DIRECTIONS.index(nfc["direction"])
            self.presentations = Presentations(nfc["retap_s"] * 1000)
            self._reader = None
            self._waiting = asyncio.Event()  # set when the queue has something to send

    async def run(self):
        if self.config["deep_sleep"]:
            return await self._report_and_sleep()
        tasks = [self._status()]
        if self.config.get("sensors"):
            tasks.append(self._telemetry())
        if self.queue is not None:
            tasks.append(self._badges(self.queue))
            tasks.append(self._checkins(self.queue))
        await asyncio.gather(*[app.supervised(job) for job in tasks])

    # Check-ins.

    async def _badges(self, queue):
        while True:
            badge = None
            try:
                if self._reader is None:
                    self._reader = open_reader(self.config, self._i2c)
                badge = self._reader.read_badge()
                if badge is None:
                    self.presentations.empty()
            except OSError:  # says nothing of the badge
                self.reader_errors += 1
                self._reader = None  # opened again at the next poll: it may have been unplugged
            if badge is not None:
                self._check_in(queue, badge[0], badge[1])
                badge = None  # the UID is forgotten at once
            await asyncio.sleep_ms(_POLL_MS)

    def _check_in(self, queue, uid, tag_type):
        token = badge_token(self.badge_key, uid)
        tag = checkin_tag(self.direction, TAG_TYPES.index(tag_type), len(uid))
        if not self.presentations.seen(token):
            return
        queue.push(tag, token, self.uptime.seconds())  # a write the flash refuses: kept in RAM (flash_errors)
        self.led.flash()
        self._waiting.set()

    async def _checkins(self, queue):
        attempt = 0
        # The queued event the next frame starts from. A frame not ACKed is followed by one that
        # starts past it: with the ACKs lost (the gateway hears us, we do not hear it), every event
        # still goes out, not only the first frame's, over and over. The gateway publishes each
        # number once whichever frame carried it. The turn stays within NUMBER_WINDOW of the oldest
        # event: a number further below the gateway's highest would be taken as published before.
        start = 0
        # Numbers [beyond_lo, beyond_hi) past the oldest event that an ACK said the gateway has, from a
        # frame that did not start at the oldest: the queue removes events in order only, so they are
        # removed with the events before them, and no frame carries them meanwhile. A door that fell
        # behind on a busy channel catches up with every frame ACKed, not only those of the oldest.
        # Kept in RAM: after a reboot they go out again, and the gateway publishes each number once.
        beyond_lo = beyond_hi = 0
        while True:
            if not queue.depth:
                self._waiting.clear()
                await self._waiting.wait()
                continue
            oldest = queue.first_number
            if beyond_hi <= oldest:
                beyond_lo = beyond_hi = 0
            if 0 < start < queue.depth and queue.number(start) == beyond_lo:
                start += beyond_hi - beyond_lo  # the numbers are consecutive there: one frame carried them
            if start >= queue.depth or queue.number(start) >= oldest + NUMBER_WINDOW:
                start = 0
            async with self.radio.lock:
                # Built now, not at the first try: the ages are those of this sending.
                counter = self.counter.next()
                first = queue.number(start)
                limit = min(max_checkins(max_frame_size(self.radio.sf)), oldest + NUMBER_WINDOW - first)
                if first < beyond_lo:
                    limit = min(limit, beyond_lo - first)  # up to what the gateway has, not into it
                n = queue.batch(self.uplink.add_checkin, limit, self.uptime.seconds(), start)
                frame = self.uplink.seal_checkins(counter, first)
                acked = await self._send_for_ack(frame, counter)
            if acked:
                if start == 0:
                    upto = first + n
                    if beyond_lo <= upto < beyond_hi:
                        upto = beyond_hi
                        beyond_lo = beyond_hi = 0
                    queue.ack(upto, self.uptime.seconds())
                elif beyond_lo < beyond_hi and (first + n == beyond_lo or beyond_hi == first):
                    beyond_lo = min(beyond_lo, first)  # next to those the gateway has: one range
                    beyond_hi = max(beyond_hi, first + n)
                else:
                    beyond_lo = first
                    beyond_hi = first + n
                start = attempt = 0
            else:
                start += n
                await asyncio.sleep_ms(backoff.delay_ms(attempt, cap_ms=self._retry_ceiling_ms(queue, len(frame))))
                attempt += 1

    def _retry_ceiling_ms(self, queue, frame_size):
        """The longest wait before the next try of a frame of `frame_size` bytes: nfc.retry_max_s, or
        less, so that a queue filling at its pace sees _TRIES_BEFORE_FULL tries before a push evicts
        its oldest check-in; never less than twice the duty cycle's pace for that frame (the wait is
        uniform under the ceiling: it averages half), whose budget a gateway that comes back needs."""
        cap_s = self.config["nfc"]["retry_max_s"]
        fill_s = queue.fill_s(self.uptime.seconds())
        if fill_s is None:
            return cap_s * 1000
        pace_ms = 2 * self.radio.pace_ms(frame_size)
        return min(cap_s * 1000, max(pace_ms, min(fill_s // _TRIES_BEFORE_FULL, cap_s) * 1000))

    async def _send_for_ack(self, frame, counter):
        """Send a frame that asks for an ACK; True if the gateway ACKed it in the receive window."""
        radio = self.radio
        if not await radio.send(frame):
            return False
        sent_at = radio.sent_ms
        radio_config = self.config["radio"]
        opens = time.ticks_add(sent_at, radio_config["ack_delay_ms"] - _RX_EARLY_MS)
        closes = time.ticks_add(opens, _RX_EARLY_MS + radio.airtime_us(_ACK_FRAME_SIZE) // 1000 + _RX_LATE_MS)
        delay = time.ticks_diff(opens, time.ticks_ms())
        if delay > 0 and self.config["deep_sleep"]:
            # Nothing else runs on a node that sleeps between reports, and the radio idles until the
            # window: the CPU sleeps too (light sleep: about 1/50 of its active current).
            machine.lightsleep(delay)
        elif delay > 0:
            await asyncio.sleep_ms(delay)
        while True:  # another node's ACK may come first on the ACK channel: ours may follow it
            left = time.ticks_diff(closes, time.ticks_ms())
            if left <= 0:
                return False
            if not await radio.receive(radio_config["ack_freq_khz"], left):
                return False
            if self._take_downlink(radio.packet, counter):
                return True

    def _take_downlink(self, frame, counter):
        """Check a downlink; act on a config; True if it is the ACK of uplink `counter`."""
        down = self.downlink
        if down.read(frame, self.counter.downlink) is not None:
            self.rejected_downlinks += 1
            return False
        self.counter.accept_downlink(down.counter)
        if down.kind == ACK:
            return down.acked_counter16 == counter & 0xFFFF
        self._configure(down.config)
        return False

    def _configure(self, values):
        """Apply a config downlink, and keep it in the configuration file for the next boots."""
        config = self.config
        intervals = config["intervals"]
        if values[REPORT_INTERVAL_S] is not None:
            intervals["telemetry_s"] = values[REPORT_INTERVAL_S]
        if values[STATUS_INTERVAL_S] is not None:
            intervals["status_s"] = values[STATUS_INTERVAL_S]
        if values[SPREADING_FACTOR] is not None:
            config["radio"]["sf"] = values[SPREADING_FACTOR]
            self.radio.set_sf(values[SPREADING_FACTOR])
        if values[TX_POWER_DBM] is not None:
            config["radio"]["output_power"] = values[TX_POWER_DBM]
            self.radio.set_power(values[TX_POWER_DBM])
        nfc = config.get("nfc")
        if nfc and values[BADGE_RETAP_S] is not None:
            nfc["retap_s"] = values[BADGE_RETAP_S]
            self.presentations.retap_ms = values[BADGE_RETAP_S] * 1000
        if nfc and values[CHECKIN_DIRECTION] is not None:
            nfc["direction"] = DIRECTIONS[values[CHECKIN_DIRECTION]]
            self.direction = values[CHECKIN_DIRECTION]
        config["config_digest"] = self.downlink.config_digest  # the next status shows it to the gateway
        # Dropped once the board booted (app.start), the module comes back from flash with the first
        # config downlink, and stays: one allocation of it, not one at each.
        from borne import config as board_config

        try:
            board_config.save(config)
        except OSError as error:
            # A full or failing flash: applied until the next boot, whose status shows the gateway the
            # digest of before, so it sends the config again (a crash here would come back with each).
            print("borne: the config downlink is applied but not kept:", repr(error))
            self.config_save_errors += 1
        self.configured = True
        if values[REBOOT]:
            machine.reset()

    @property
    def flash_errors(self):
        """The file writes the flash refused since boot, full or failing: config saves and the check-in
        journal's records. The frame counter is in NVS: a bound it cannot store is a crash instead."""
        queue = self.queue
        return self.config_save_errors + (queue.journal_errors if queue else 0)

    # Telemetry and status.

    async def _telemetry(self):
        await asyncio.sleep_ms(backoff.uniform_ms(_STATUS_AFTER_BOOT_MS))  # not with every node powered on with it
        while True:
            await self._send_telemetry()
            await asyncio.sleep_ms(_jittered(self.config["intervals"]["telemetry_s"] * 1000))

    async def _status(self):
        wait_ms = _STATUS_AFTER_BOOT_MS + backoff.uniform_ms(_STATUS_AFTER_BOOT_MS)
        booted = True  # the next status is the boot status's second
        while True:
            await asyncio.sleep_ms(wait_ms)
            await self._send_status()
            if self.configured:
                self.configured = False
                wait_ms = _STATUS_AFTER_CONFIG_MS
            elif booted:
                booted = False
                wait_ms = _STATUS_AGAIN_AFTER_MS + backoff.uniform_ms(2 * _STATUS_AGAIN_AFTER_MS)
            else:
                wait_ms = _jittered(self.config["intervals"]["status_s"] * 1000)

    async def _send_telemetry(self):
        values = await self.sensors.measure()
        for value in values:
            if value is not None:
                break
        else:
            return  # every sensor failed: the status frame says which
        async with self.radio.lock:
            await self._send(self.uplink.telemetry(self.counter.next(), values))

    async def _send_status(self):
        """Send a status, then listen in its receive window: the gateway sends config downlinks there."""
        queue = self.queue
        async with self.radio.lock:
            counter = self.counter.next()
            frame = self.uplink.status(
                counter,
                app.FIRMWARE_VERSION,
                self.uptime.seconds(),
                self.reset_cause,
                queue_depth=queue.depth if queue else 0,
                checkins_dropped=queue.dropped if queue else 0,
                sensor_faults=self.sensors.faults,
                radio_errors=self.radio.errors,
                reader_errors=self.reader_errors,
                flash_errors=self.flash_errors,
                duty_cycle_deferrals=self.radio.deferrals,
                config_digest=self.config.get("config_digest", 0),
                next_downlink_counter=self.counter.next_downlink,
            )
            await self._send_for_ack(frame, counter)  # no ACK comes for a status: the window is for a config

    async def _send(self, frame):
        await self.radio.send(frame)  # not acknowledged; a modem error is counted in radio.errors

    async def _report_and_sleep(self):
        intervals = self.config["intervals"]
        wakes = retained.load().get("wakes", 0) if self.reset_cause == machine.DEEPSLEEP_RESET else 0
        await self._send_telemetry()
        if wakes % max(1, intervals["status_s"] // intervals["telemetry_s"]) == 0:
            await self._send_status()
            if self.configured:  # show the gateway the config before sleeping on it
                await asyncio.sleep_ms(_STATUS_AFTER_CONFIG_MS)
                await self._send_status()
        # A report sent is a healthy boot: a node that sleeps never runs long enough to say so otherwise.
        retained.update(counter=self.counter.peek, wakes=wakes + 1, crashes=0)
        self.radio.modem.sleep()  # a radio left in standby would draw a hundred times the ESP32's sleep
        try:  # noqa: SIM105 (MicroPython has no contextlib.suppress)
            app.power_down(self.config["board"])  # Vext held off, a power chip's radio rail off
        except OSError:
            pass  # a power chip that does not answer leaves the sleeping radio's rail on: µA, no reason to crash
        # RAM's duty-cycle budget does not survive the sleep: sleep long enough for what was spent (1 %).
        machine.deepsleep(max(intervals["telemetry_s"] * 1000, self.radio.air_ms * 100))


def _jittered(interval_ms):
    """`interval_ms`, give or take _JITTER_PCT at random: frames of nodes on the same period drift
    apart instead of colliding at every report (they are not acknowledged, so a collision loses them)."""
    spread = interval_ms * _JITTER_PCT // 100
    return interval_ms - spread + backoff.uniform_ms(2 * spread)


def sensor_bus(board):
    """The board's I2C bus for sensors and a PN532, or None if its profile has none."""
    i2c = board.get("i2c")
    if not i2c:
        return None
    return machine.I2C(i2c["id"], sda=machine.Pin(i2c["sda"]), scl=machine.Pin(i2c["scl"]), freq=100000)


def open_reader(config, i2c):
    """The configured badge reader; OSError if it does not answer."""
    board, nfc = config["board"], config["nfc"]
    if nfc["reader"] == "pn532":
        from borne.drivers.pn532 import PN532

        return PN532(i2c)
    from borne.drivers.mfrc522 import MFRC522

    spi_pins = board["nfc_spi"]
    spi = machine.SPI(
        spi_pins["spi_id"],
        baudrate=1000000,
        sck=machine.Pin(spi_pins["sck"]),
        mosi=machine.Pin(spi_pins["mosi"]),
        miso=machine.Pin(spi_pins["miso"]),
    )
    reset = spi_pins.get("reset")
    return MFRC522(spi, machine.Pin(spi_pins["cs"]), reset=None if reset is None else machine.Pin(reset))
