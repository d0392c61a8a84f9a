"""The LoRa modem, with each sub-band's duty cycle kept: our drivers, SX127x (`borne/drivers/sx127x.py`)
on SX1276 boards and SX126x (`borne/drivers/sx126x.py`) on SX1262 boards, with one API.

The board profile says which chip and pins (and, for an SX1262, its TCXO and RF switch); the
configuration's "radio" section the channel. One task at a time uses the radio (`lock`): the modem
is half duplex and has one channel. A modem that fails is reset and set up again (`resets`). A chip
whose DIO line never reaches the board, though it answers on SPI, is not a failure: the driver reads
its IRQ flags over SPI instead (`dio_dead`, counted once in `errors`).
"""

import asyncio
import time

from machine import SPI, Pin
from micropython import const

from borne.airtime import DutyCycle, time_on_air_us
from borne.reused import RETURN_NONE, RETURN_TRUE, Reused, sleep_ms

_SPI_BAUD = const(2000000)
MAX_FAULTS = const(10)  # modem errors in a row before the board resets
# A single-channel receiver (our bridge) puts its modem in standby to read each frame from the FIFO
# (drivers' recv), then forwards it before it listens again: a frame whose preamble starts meanwhile
# is not heard. So a frame never follows the one before it sooner than this.
TURNAROUND_MS = const(100)


def make_modem(board_radio, lora_cfg):
    """The modem of the board's radio chip, configured with `lora_cfg`."""
    r = board_radio
    spi = SPI(
        r["spi_id"],
        baudrate=_SPI_BAUD,
        polarity=0,
        phase=0,
        sck=Pin(r["sck"]),
        mosi=Pin(r["mosi"]),
        miso=Pin(r["miso"]),
    )
    reset = Pin(r["reset"]) if r.get("reset") is not None else None
    if r["chip"] == "sx1276":
        from borne.drivers.sx127x import SX127x

        modem = SX127x(spi, Pin(r["cs"]), Pin(r["dio0"]), reset, pa_boost=r.get("tx_ant") == "PA_BOOST")
        modem.configure(lora_cfg)
        return modem
    if r["chip"] in ("sx1261", "sx1262"):
        from borne.drivers.sx126x import SX126x

        sx126x = SX126x(
            spi,
            Pin(r["cs"]),
            Pin(r["busy"]),
            Pin(r["dio1"]),
            reset,
            chip=r["chip"],
            tcxo_mv=r.get("dio3_tcxo_mv"),
            tcxo_start_us=r.get("dio3_tcxo_start_us") or 5000,
            dio2_rf_switch=bool(r.get("dio2_rf_switch")),
        )
        sx126x.configure(lora_cfg)
        return sx126x
    raise ValueError(f"unknown radio chip {r['chip']!r} in the board profile")


class Radio:
    """Sends and receives frames on the configured channel; `deferrals` counts frames the duty cycle held back.

    `packet` is the last frame received; `rssi` (dBm), `snr` (dB x 4) and `rx_ticks_ms` describe it."""

    def __init__(self, board_radio, radio_config, light_sleep=False):
        self.config = radio_config
        self._light_sleep = light_sleep  # nothing else runs on this board while it sends or listens
        self.max_power_dbm = board_radio.get("max_power_dbm") or 14
        self.power_dbm = min(radio_config["output_power"], self.max_power_dbm)
        self.sf = radio_config["sf"]
        self.bw_hz = int(float(radio_config["bw"]) * 1000)
        self._cfgs = {}  # lora_cfg by channel (kHz)
        self._board_radio = board_radio
        self.dio_dead = False  # the chip's DIO line never reaches the board: its IRQ flags are polled
        self._set_up()
        self.lock = asyncio.Lock()
        self.duty = DutyCycle()
        self.deferrals = 0
        self.errors = 0
        self.resets = 0  # modems set up again after a failure, each one of `errors` (in the status)
        self._stale = False  # the modem failed and setting it up again did too: try again before using it
        self._faults = 0  # modem errors since the last call that worked
        # Time on air spent since boot, in ms as the drivers count it: in µs it would pass MicroPython's
        # small ints (2**30) after 18 minutes of air, and every frame sent would then allocate.
        self.air_ms = 0
        # ticks_ms at the end of the last frame sent; at first, as if a turnaround ago: the first goes at once
        self.sent_ms = time.ticks_add(time.ticks_ms(), -TURNAROUND_MS)
        self._sending = Reused(self._sends)
        self._frame = b""  # the send under way's arguments
        self._frame_freq_khz = 0
        self._tx_at_ms = None
        self._frame_cfg = None
        self._receiving = Reused(self._receives)
        self._rx_freq_khz = 0  # the receive under way's arguments
        self._rx_timeout_ms = 0
        self.packet = b""
        self.rssi = 0
        self.snr = 0
        self.rx_ticks_ms = 0

    def _lora_cfg(self, freq_khz):
        """The modem settings for `freq_khz`, made once per channel: retuning allocates nothing."""
        cfg = self._cfgs.get(freq_khz)
        if cfg is not None:
            return cfg
        c = self.config
        cfg = self._cfgs[freq_khz] = {
            "freq_khz": freq_khz,
            "sf": self.sf,
            "bw": c["bw"],
            "coding_rate": c["coding_rate"],
            "syncword": c["syncword"],
            "preamble_len": c["preamble_len"],
            "output_power": self.power_dbm,
        }
        return cfg

    def set_power(self, dbm):
        """A new transmit power (a config downlink), within what the board allows: from the next frame on."""
        self.power_dbm = min(dbm, self.max_power_dbm)
        self.set_sf(self.sf)

    def set_sf(self, sf):
        """A new spreading factor (a config downlink): used from the next frame on."""
        self.sf = sf
        self._cfgs = {}
        self._freq_khz = None  # configure again before the next use

    def airtime_us(self, size):
        c = self.config
        return time_on_air_us(size, self.sf, self.bw_hz, c["coding_rate"], c["preamble_len"])

    def pace_ms(self, size):
        """How often frames of `size` bytes may go on the uplink channel for good, in ms (borne/airtime.py)."""
        return self.duty.pace_ms(self.config["freq_khz"] * 1000, self.airtime_us(size))

    def _tune(self, freq_khz):
        if freq_khz != self._freq_khz:
            self.modem.configure(self._lora_cfg(freq_khz))
            self._freq_khz = freq_khz

    def _set_up(self):
        """Reset the modem through its reset line and set it up on the channel."""
        self.modem = make_modem(self._board_radio, self._lora_cfg(self.config["freq_khz"]))
        self.modem.light_sleep = self._light_sleep
        if self.dio_dead:
            self.modem.dio_dead = True  # the line is still dead after a reset: poll from the start
        self._freq_khz = self.config["freq_khz"]
        self._stale = False

    def _set_up_again(self):
        self._stale = True
        self._set_up()
        self.resets += 1

    def _check_dio(self):
        """Count, once, a DIO line the driver found dead: the frames go on, but the board needs a look."""
        if self.modem.dio_dead and not self.dio_dead:
            self.dio_dead = True
            self.errors += 1
            print(
                "borne: radio: the chip's DIO line never reaches the board (a broken solder joint, or the"
                " wrong dio pin in the board profile): its IRQ flags are read over SPI instead; check the line"
            )

    def _failed(self, error):
        """A modem call raised `error`: count it, reset the modem and set it up again (a chip that
        hangs, refuses a command or lost its IRQ starts afresh), and after MAX_FAULTS in a row raise,
        so that the board resets."""
        print("borne: radio failed:", repr(error))
        self._check_dio()
        self.errors += 1
        self._faults += 1
        self._freq_khz = None
        if self._faults >= MAX_FAULTS:
            raise RuntimeError(f"the radio failed {MAX_FAULTS} times in a row; the last error: {error!r}")
        try:
            self._set_up_again()
        except (OSError, ValueError) as again:  # the next call tries again first
            print("borne: radio reset failed:", repr(again))

    def send(self, frame, freq_khz=None, tx_at_ms=None, cfg=None):
        """Transmit `frame` once the sub-band's duty cycle allows it: await it; True, and `sent_ms` is
        ticks_ms at its end, or None if the modem failed (counted in `errors`). Allocates nothing, for
        a board that sends for years (borne/reused.py).

        `cfg` replaces the channel's settings for this frame (a bridge's transmit request). Call with
        `lock` held. ValueError if the frame can never fit the sub-band's budget.
        """
        self._frame = frame
        self._frame_freq_khz = freq_khz or self.config["freq_khz"]
        self._tx_at_ms = tx_at_ms
        self._frame_cfg = cfg
        return self._sending()

    def _sends(self):
        # Every send(), one after another (see borne/reused.py).
        while True:
            frame = self._frame
            freq_khz = self._frame_freq_khz
            tx_at_ms = self._tx_at_ms
            cfg = self._frame_cfg
            airtime = self.airtime_us(len(frame))
            wait = self.duty.wait_ms(freq_khz * 1000, airtime)
            if wait:
                self.deferrals += 1
                yield from sleep_ms(wait)
            if tx_at_ms is None:  # a frame at a set time (an ACK) keeps it
                gap = TURNAROUND_MS - time.ticks_diff(time.ticks_ms(), self.sent_ms)
                if gap > 0:
                    yield from sleep_ms(gap)
            try:
                if self._stale:
                    self._set_up_again()
                if cfg is None:
                    self._tune(freq_khz)
                else:
                    self.modem.configure(cfg)
                    self._freq_khz = None  # the next use tunes the channel again
                self.duty.spend(freq_khz * 1000, airtime)
                self.air_ms += -(-airtime // 1000)  # rounded up: the deep sleep that pays for it is long enough
                # Our drivers give up on a TX-done that does not come (OSError 110): no deadline here, whose
                # asyncio.wait_for_ms would cost two tasks per frame.
                yield from self.modem.send(frame, tx_at_ms)
            except (OSError, RuntimeError, ValueError, KeyError) as error:
                self._failed(error)
                yield RETURN_NONE
                continue
            self._check_dio()
            self._faults = 0
            self.sent_ms = self.modem.sent_ms
            yield RETURN_TRUE

    def receive(self, freq_khz, timeout_ms):
        """Listen on `freq_khz` for `timeout_ms`: await it; True, and `packet` is the frame heard (valid
        until the next receive), or None: nothing heard, or the modem failed (counted in `errors`).
        Call with `lock` held. Allocates nothing, as send does."""
        self._rx_freq_khz = freq_khz
        self._rx_timeout_ms = timeout_ms
        return self._receiving()

    def _receives(self):
        # Every receive(), one after another (see borne/reused.py).
        while True:
            try:
                if self._stale:
                    self._set_up_again()
                self._tune(self._rx_freq_khz)
                heard = yield from self.modem.recv(self._rx_timeout_ms)
            except (OSError, RuntimeError, ValueError) as error:
                self._failed(error)
                yield RETURN_NONE
                continue
            self._check_dio()
            self._faults = 0
            if not heard:
                yield RETURN_NONE
                continue
            # Our drivers keep a packet's metadata beside their one buffer.
            modem = self.modem
            self.packet = modem.packet
            self.rssi = modem.rssi
            self.snr = modem.snr
            self.rx_ticks_ms = modem.ticks_ms
            yield RETURN_TRUE
