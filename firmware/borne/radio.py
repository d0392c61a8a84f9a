"""The LoRa modem, through micropython-lib's lora-async API, with each sub-band's duty cycle kept.

The board profile says which chip and pins; the configuration's "radio" section the channel.
One task at a time uses the radio (`lock`): the modem is half duplex and has one channel.
"""

import asyncio
import time

from machine import SPI, Pin
from micropython import const

from borne.airtime import DutyCycle, time_on_air_us

_SPI_BAUD = const(2000000)


def make_modem(board_radio, lora_cfg):
    """The lora-async modem of the board's radio chip (lora-sx127x or lora-sx126x, installed by mip)."""
    import lora  # here: the installer's mip packages, absent from a board that only runs the codec

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
    dio1 = Pin(r["dio1"]) if r.get("dio1") is not None else None
    if r["chip"] == "sx1276":
        cfg = dict(lora_cfg)
        if r.get("tx_ant"):
            cfg["tx_ant"] = r["tx_ant"]
        return lora.AsyncSX1276(spi, Pin(r["cs"]), dio0=Pin(r["dio0"]), dio1=dio1, reset=reset, lora_cfg=cfg)
    if r["chip"] == "sx1262":
        return lora.AsyncSX1262(
            spi,
            Pin(r["cs"]),
            busy=Pin(r["busy"]),
            dio1=dio1,
            dio3_tcxo_millivolts=r.get("dio3_tcxo_mv"),
            reset=reset,
            lora_cfg=lora_cfg,
        )
    raise ValueError(f"unknown radio chip {r['chip']!r} in the board profile")


class Radio:
    """Sends and receives frames on the configured channel; `deferrals` counts frames the duty cycle held back."""

    def __init__(self, board_radio, radio_config):
        self.config = radio_config
        self._max_power_dbm = board_radio.get("max_power_dbm") or 14
        self.power_dbm = min(radio_config["output_power"], self._max_power_dbm)
        self.sf = radio_config["sf"]
        self.bw_hz = int(float(radio_config["bw"]) * 1000)
        self._cfgs = {}  # lora_cfg by channel (kHz)
        self.modem = make_modem(board_radio, self._lora_cfg(radio_config["freq_khz"]))
        self._freq_khz = radio_config["freq_khz"]
        self.lock = asyncio.Lock()
        self.duty = DutyCycle()
        self.deferrals = 0
        self.errors = 0

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
            "crc_en": True,
        }
        return cfg

    def set_power(self, dbm):
        """A new transmit power (a config downlink), within what the board allows: from the next frame on."""
        self.power_dbm = min(dbm, self._max_power_dbm)
        self.set_sf(self.sf)

    def set_sf(self, sf):
        """A new spreading factor (a config downlink): used from the next frame on."""
        self.sf = sf
        self._cfgs = {}
        self._freq_khz = None  # configure again before the next use

    def airtime_us(self, size):
        c = self.config
        return time_on_air_us(size, self.sf, self.bw_hz, c["coding_rate"], c["preamble_len"])

    def _tune(self, freq_khz):
        if freq_khz != self._freq_khz:
            self.modem.configure(self._lora_cfg(freq_khz))
            self._freq_khz = freq_khz

    async def send(self, frame, freq_khz=None, tx_at_ms=None):
        """Transmit `frame` once the sub-band's duty cycle allows it; returns ticks_ms at its end.

        Call with `lock` held. ValueError if the frame can never fit the sub-band's budget.
        """
        freq_khz = freq_khz or self.config["freq_khz"]
        airtime = self.airtime_us(len(frame))
        wait = self.duty.wait_ms(freq_khz * 1000, airtime)
        if wait:
            self.deferrals += 1
            await asyncio.sleep_ms(wait)
        self._tune(freq_khz)
        self.duty.spend(freq_khz * 1000, airtime)
        return await self.modem.send(frame, tx_at_ms)

    async def receive(self, freq_khz, timeout_ms):
        """The next frame heard on `freq_khz` within `timeout_ms`, or None. Call with `lock` held."""
        self._tune(freq_khz)
        return await self.modem.recv(timeout_ms)

    async def receive_window(self, opens_ms, freq_khz, length_ms):
        """Listen from ticks_ms `opens_ms` for `length_ms` (a node's window for its ACK)."""
        delay = time.ticks_diff(opens_ms, time.ticks_ms())
        if delay > 0:
            await asyncio.sleep_ms(delay)
        return await self.receive(freq_khz, length_ms)
