# micropython-lib's LoRa modem API (packages lora, lora-async, lora-sx127x, lora-sx126x) on the
# virtual board's simulated radio. The host (the board's Antenna in peripherals.py, and medium.py)
# carries each transmission to the boards listening on the same channel, with the time on air, loss,
# collisions, RSSI and SNR the tests set. Which chip the board has is the host's choice; the other
# chip's class raises as its real driver does when nothing answers, so that firmware can probe.
#
# Differences from the drivers: no SPI traffic; the async API only (as when lora-sync is not
# installed), without the low-level start_recv/poll_recv/prepare_send API; a key of lora_cfg that
# neither driver reads raises ConfigError (the drivers ignore it); standby() during a send makes
# send() return False at the end of the time on air, not at once.
import asyncio
import json
import time
from binascii import hexlify, unhexlify

import _board
from machine import Pin
from micropython import const

_BUSY_TIMEOUT_US = const(7000)

# The keys either driver reads.
_CFG_KEYS = (
    "freq_khz",
    "sf",
    "bw",
    "coding_rate",
    "tx_ant",
    "output_power",
    "implicit_header",
    "crc_en",
    "auto_image_cal",
    "syncword",
    "pa_ramp_us",
    "preamble_len",
    "invert_iq_tx",
    "invert_iq_rx",
    "rx_boost",
    "lna_gain",
)

_BW_HZ = {
    "7.8": 7800,
    "10.4": 10400,
    "15.6": 15600,
    "20.8": 20800,
    "31.25": 31250,
    "41.7": 41700,
    "62.5": 62500,
    "125": 125000,
    "250": 250000,
    "500": 500000,
}

_modem = None  # the modem object constructed last: it gets the frames the host delivers


class ConfigError(ValueError):
    def __init__(self, field):
        super().__init__(f"Invalid lora_cfg {field}")


class RxPacket(bytearray):
    # A received packet: its payload, and the radio's metadata (snr in dB x 4, rssi in dBm).
    def __init__(self, payload, ticks_ms=None, snr=None, rssi=None, valid_crc=True):
        super().__init__(payload)
        self.ticks_ms = ticks_ms
        self.snr = snr
        self.rssi = rssi
        self.valid_crc = valid_crc

    def __repr__(self):
        return f"RxPacket({bytes(self)!r}, {self.ticks_ms}, {self.snr}, {self.rssi}, {self.valid_crc})"


def _clamp(v, vmin, vmax):
    return min(max(vmin, v), vmax)


class _Modem:
    # What both chips share: configuration, time on air, and the async send/recv of lora-async.
    _SF_MIN = 6
    _CR_MIN = 5

    def __init__(self, cs, reset, lora_cfg, ant_sw):
        global _modem
        cs.init(Pin.OUT, value=1)
        if reset:  # pulsed as the drivers do, without their waits
            reset.init(Pin.OUT, value=0)
            reset(1)
        self._probe()
        self._ant_sw = ant_sw
        self._freq_hz = 0
        self._sf = 7
        self._bw_hz = 125000
        self._coding_rate = 5
        self._crc_en = True
        self._implicit_header = False
        self._preamble_len = 12
        self._syncword = 0x12
        self._output_power = 14
        self._invert_iq = [False, False]  # rx, tx
        self._settings = None  # the above as JSON (messages.py's RadioSettings), for the host
        self.crc_errors = 0
        self.rx_crc_error = False  # True: recv returns packets with a bad CRC too (crc_error set)
        self._rx = False  # as in BaseModem: False, True (no timeout) or the ticks_ms deadline
        self._rx_continuous = False
        self._rx_packet = None  # the buffer the receiving task offered
        self._received = None  # a packet the receiving task has not taken yet
        self._rx_flag = asyncio.Event()
        self._tx = False
        _modem = self
        self.configure(lora_cfg or {})

    def configure(self, lora_cfg):
        if self._rx is not False:
            raise RuntimeError("Receiving")
        for key in lora_cfg:
            if key not in _CFG_KEYS:
                raise ConfigError(key)
        if "freq_khz" in lora_cfg:
            self._freq_hz = int(lora_cfg["freq_khz"] * 1000)
        self._set_power(lora_cfg)
        if "bw" in lora_cfg:
            self._bw_hz = _BW_HZ[str(lora_cfg["bw"])]
        if "coding_rate" in lora_cfg:
            self._coding_rate = int(lora_cfg["coding_rate"])
            if not self._CR_MIN <= self._coding_rate <= 8:
                raise ConfigError("coding_rate")
        if "implicit_header" in lora_cfg:
            self._implicit_header = bool(lora_cfg["implicit_header"])
        if "sf" in lora_cfg:
            self._sf = int(lora_cfg["sf"])
            if not self._SF_MIN <= self._sf <= 12:
                raise ConfigError("sf")
        if "crc_en" in lora_cfg:
            self._crc_en = bool(lora_cfg["crc_en"])
        if "preamble_len" in lora_cfg:
            self._preamble_len = lora_cfg["preamble_len"]
        if "syncword" in lora_cfg:
            sw = lora_cfg["syncword"]
            # SX126x takes 0xY4Z4 for the SX127x's 0xYZ: the host compares the 8-bit form.
            self._syncword = sw if sw < 0x100 else (sw >> 8) & 0xF0 | (sw >> 4) & 0x0F
        if "invert_iq_rx" in lora_cfg:
            self._invert_iq[0] = bool(lora_cfg["invert_iq_rx"])
        if "invert_iq_tx" in lora_cfg:
            self._invert_iq[1] = bool(lora_cfg["invert_iq_tx"])
        self._settings = json.dumps(
            {
                "freq_hz": self._freq_hz,
                "sf": self._sf,
                "bw_hz": self._bw_hz,
                "coding_rate": self._coding_rate,
                "preamble_len": self._preamble_len,
                "crc_en": self._crc_en,
                "implicit_header": self._implicit_header,
                "syncword": self._syncword,
                "invert_iq_rx": self._invert_iq[0],
                "invert_iq_tx": self._invert_iq[1],
                "output_power": self._output_power,
            }
        )

    def _symbol_offsets(self):
        return (0, 0)

    def get_time_on_air_us(self, payload_len):
        # Semtech AN1200.13 in symbols x 4, as BaseModem.get_n_symbols_x4() computes it.
        s_o, b_o = self._symbol_offsets()
        t_sym_us = 1000_000 * (1 << self._sf) // self._bw_hz
        bits = 8 * payload_len + (16 if self._crc_en else 0) - 4 * self._sf + 8 + b_o
        bits = max(bits + (0 if self._implicit_header else 20), 0)
        bps = (self._sf - 2 * (t_sym_us >= 16000)) * 4  # low data rate optimisation
        n_x4 = 17 + 4 * (self._preamble_len + s_o + 8 + (bits + bps - 1) // bps * self._coding_rate)
        return t_sym_us * n_x4 // 4

    def standby(self):
        # Ends a receive (a pending recv returns None, recv_continuous stops) or a send.
        self._tx = False
        self._end_recv()
        self._received = None
        self._rx_flag.set()

    def sleep(self):
        self.standby()

    def is_idle(self):
        return self._rx is False and not self._tx

    def _listen(self):
        if self._ant_sw:
            self._ant_sw.rx()
        _board.radio_receiving(self._settings)

    def _end_recv(self):
        self._rx = False
        if self._ant_sw:
            self._ant_sw.idle()
        _board.radio_idle()

    def _take(self, payload_hex, rssi, snr, crc_ok):
        # A frame the host delivered while this modem receives.
        if not crc_ok:
            self.crc_errors += 1
            if not self.rx_crc_error:
                return
        payload = unhexlify(payload_hex)
        packet = self._rx_packet
        if packet is None or len(packet) != len(payload):
            packet = RxPacket(payload)
        else:
            packet[:] = payload
        packet.ticks_ms = time.ticks_ms()
        packet.snr = snr
        packet.rssi = rssi
        packet.crc_error = not crc_ok
        self._received = packet
        if not self._rx_continuous:
            self._end_recv()
        self._rx_flag.set()

    def _start_recv(self, timeout_ms, continuous, rx_packet):
        self._rx = True if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        self._rx_continuous = continuous
        self._rx_packet = rx_packet
        self._received = None
        if not self._tx:  # else send() resumes the receive when it is done
            self._listen()

    async def _recv(self):
        # Wait for a packet, the deadline, standby() or sleep(): the packet, or None.
        while self._received is None and self._rx is not False:
            self._rx_flag.clear()
            if self._rx is True:
                await self._rx_flag.wait()
                continue
            try:
                await asyncio.wait_for_ms(self._rx_flag.wait(), max(0, time.ticks_diff(self._rx, time.ticks_ms())))
            except asyncio.TimeoutError:  # noqa: UP041 (MicroPython has no builtin TimeoutError)
                self._end_recv()
        packet = self._received
        self._received = None
        return packet

    async def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        self._start_recv(timeout_ms, False, rx_packet)
        return await self._recv()

    def recv_continuous(self, rx_length=0xFF, rx_packet=None):
        self._start_recv(None, True, rx_packet)
        return _ContinuousReceiver(self)

    async def send(self, packet, tx_at_ms=None):
        # Returns time.ticks_ms() when the transmission ended; a pending receive pauses meanwhile.
        if len(packet) > 255:
            raise ValueError("packet too long")
        if tx_at_ms is not None:
            await asyncio.sleep_ms(max(0, time.ticks_diff(tx_at_ms, time.ticks_ms())))
        self._tx = True
        if self._ant_sw:
            self._ant_sw.tx(self._tx_arg())
        _board.radio_transmitting(hexlify(packet).decode(), self._settings)
        await asyncio.sleep_ms((self.get_time_on_air_us(len(packet)) + 999) // 1000)
        if not self._tx:
            return False  # standby() or sleep() ended it
        done = time.ticks_ms()
        self._tx = False
        if self._rx is not False:
            self._listen()
        elif self._ant_sw:
            self._ant_sw.idle()
        return done


class _ContinuousReceiver:
    # The async iterator of recv_continuous(): packets until standby() or sleep().
    def __init__(self, modem):
        self.modem = modem

    def __aiter__(self):
        return self

    async def __anext__(self):
        packet = await self.modem._recv()
        if packet is None:
            raise StopAsyncIteration
        return packet


class AsyncSX1276(_Modem):
    def __init__(self, spi, cs, dio0=None, dio1=None, reset=None, lora_cfg=None, ant_sw=None):
        self._pa_boost = False
        super().__init__(cs, reset, lora_cfg, ant_sw)

    def _probe(self):
        if _board.radio_chip != "sx1276":
            raise RuntimeError("Unexpected silicon version 0")  # nothing answered

    def configure(self, lora_cfg):
        super().configure(lora_cfg)
        if lora_cfg.get("sf") == 6 and not self._implicit_header:
            raise ConfigError("SF6 requires implicit_header mode")

    def _set_power(self, lora_cfg):
        if "tx_ant" in lora_cfg:
            self._pa_boost = lora_cfg["tx_ant"].upper() == "PA_BOOST"
        if "output_power" in lora_cfg:
            dbm = int(lora_cfg["output_power"])
            if not self._pa_boost:
                dbm = _clamp(dbm, -4, 15)
            elif dbm < 20:
                dbm = _clamp(dbm, 2, 17)
            self._output_power = min(dbm, 20)

    def _tx_arg(self):
        return self._pa_boost


AsyncSX1277 = AsyncSX1278 = AsyncSX1279 = AsyncSX1276


class _SX126x(_Modem):
    _CR_MIN = 4

    def __init__(
        self,
        spi,
        cs,
        busy,
        dio1=None,
        dio2_rf_sw=True,
        dio3_tcxo_millivolts=None,
        dio3_tcxo_start_time_us=1000,
        reset=None,
        lora_cfg=None,
        ant_sw=None,
    ):
        busy.init(Pin.IN)
        self._busy_timeout = _BUSY_TIMEOUT_US + (dio3_tcxo_start_time_us if dio3_tcxo_millivolts else 0)
        super().__init__(cs, reset, lora_cfg, ant_sw)

    def _probe(self):
        if _board.radio_chip != "sx1262":
            raise RuntimeError("BUSY timeout", self._busy_timeout)  # BUSY never fell

    def sleep(self, warm_start=True):
        self.standby()

    def _symbol_offsets(self):
        return (2, -8) if self._sf in (5, 6) else (0, 0)

    def _set_power(self, lora_cfg):
        if "output_power" in lora_cfg:
            self._output_power = _clamp(int(lora_cfg["output_power"]), *self._POWER_DBM)

    def _tx_arg(self):
        return self._TX_HP


class AsyncSX1262(_SX126x):
    _POWER_DBM = (-9, 22)
    _TX_HP = True


class AsyncSX1261(_SX126x):
    _POWER_DBM = (-17, 15)
    _TX_HP = False


def _host_frame(payload_hex, rssi, snr, crc_ok):
    # The handler of the host's radio_frame messages; a radio that is not receiving misses the frame.
    modem = _modem
    if modem is not None and modem._rx is not False and not modem._tx:
        modem._take(payload_hex, rssi, snr, crc_ok)


_board.on_control("radio_frame", _host_frame)
