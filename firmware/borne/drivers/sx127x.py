"""Semtech SX1276/77/78 in LoRa mode, on SPI, written from the datasheet (DS: SX1276/77/78/79
datasheet rev 4: "§" its sections, "p." its pages, "register table" its LoRa register map).

`SX127x(spi, cs, dio0, reset)` resets the chip, checks it, and leaves it in LoRa standby;
`configure(cfg)` takes the keys of a channel (`freq_khz`, `sf`, `bw`, `coding_rate`, `syncword`,
`preamble_len`, `output_power`, `invert_iq_rx`, `invert_iq_tx`; those absent keep their value).
`await send(frame)` gives True, and `sent_ms` is then `time.ticks_ms()` at TX-done (the send allocates
nothing, see `borne/reused.py`); `await recv(timeout_ms)` gives the next frame with
a good CRC as a memoryview of the driver's one buffer (valid until the next recv), its `rssi` (dBm),
`snr` (dB x 4) and `ticks_ms` in attributes of the driver, or None at the timeout or `standby()`.
Frames with a bad CRC are dropped and counted in `crc_errors`. A chip that does not answer raises
OSError(19) at construction; a TX-done that never comes OSError(110). A DIO0 that never reaches the
board while the chip works (`dio_dead`, see `borne/drivers/dio.py`): RegIrqFlags read over SPI stands
for it, polled from then on.
"""

import time

from machine import Pin
from micropython import const

from borne.airtime import time_on_air_us
from borne.drivers.dio import DioWait
from borne.reused import RETURN_NONE, RETURN_TRUE, Reused, sleep_ms

_FIFO = const(0x00)
_OP_MODE = const(0x01)
_FRF_MSB = const(0x06)
_FRF_MID = const(0x07)
_FRF_LSB = const(0x08)
_PA_CONFIG = const(0x09)
_OCP = const(0x0B)
_LNA = const(0x0C)
_FIFO_ADDR_PTR = const(0x0D)
_FIFO_TX_BASE = const(0x0E)
_FIFO_RX_BASE = const(0x0F)
_FIFO_RX_CURRENT = const(0x10)
_IRQ_FLAGS_MASK = const(0x11)
_IRQ_FLAGS = const(0x12)
_RX_NB_BYTES = const(0x13)
_PKT_SNR = const(0x19)
_PKT_RSSI = const(0x1A)
_HOP_CHANNEL = const(0x1C)
_MODEM_CONFIG1 = const(0x1D)
_MODEM_CONFIG2 = const(0x1E)
_PREAMBLE_MSB = const(0x20)
_PREAMBLE_LSB = const(0x21)
_PAYLOAD_LENGTH = const(0x22)
_MODEM_CONFIG3 = const(0x26)
_IF_FREQ2 = const(0x2F)
_IF_FREQ1 = const(0x30)
_DETECT_OPTIMIZE = const(0x31)
_INVERT_IQ = const(0x33)
_HIGH_BW_OPTIMIZE1 = const(0x36)
_DETECTION_THRESHOLD = const(0x37)
_SYNC_WORD = const(0x39)
_HIGH_BW_OPTIMIZE2 = const(0x3A)
_INVERT_IQ2 = const(0x3B)
_DIO_MAPPING1 = const(0x40)
_VERSION = const(0x42)
_PA_DAC = const(0x4D)

_SILICON_VERSION = const(0x12)  # RegVersion of the SX1276/77/78/79 (DS p.112)

# RegOpMode (DS §4.1.3 and the register table): LongRangeMode, and the mode in bits 2:0.
_LONG_RANGE = const(0x80)
_LOW_FREQUENCY_MODE = const(0x08)  # the LF registers page: for the 137-525 MHz port only
_SLEEP = const(0)
_STANDBY = const(1)
_TX = const(3)
_RX_CONTINUOUS = const(5)
_MODE_MASK = const(0x07)

# RegIrqFlags (DS p.111): write 1 to clear.
_RX_DONE = const(0x40)
_PAYLOAD_CRC_ERROR = const(0x20)
_TX_DONE = const(0x08)
_ALL_IRQS = const(0xFF)
_CRC_ON_PAYLOAD = const(0x40)  # RegHopChannel: the received header said the frame carries a CRC

# RegDioMapping1 bits 7:6, DIO0 in LoRa mode (DS Table 18): 00 RxDone, 01 TxDone.
_DIO0_RX_DONE = const(0x00)
_DIO0_TX_DONE = const(0x40)

_BW_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)  # RegModemConfig1 Bw codes
_HF_PORT_KHZ = const(525000)  # above: the HF port (band 1), RSSI offset -157; below -164 (DS §5.5.5)
_RSSI_OFFSET_HF = const(-157)
_RSSI_OFFSET_LF = const(-164)
_LDRO_SYMBOL_US = const(16000)  # LowDataRateOptimize is mandated when a symbol lasts longer (DS §4.1.1.6)
_TX_SLACK_MS = const(100)  # beyond the time on air, before a TX-done that has not come is an error
_ENODEV = const(19)
_ETIMEDOUT = const(110)
_ECANCELED = const(125)


class SX127x:
    def __init__(self, spi, cs, dio0, reset=None, pa_boost=True):
        self._spi = spi
        self._cs = cs
        cs.init(Pin.OUT, value=1)
        self._pa_boost = pa_boost
        self._address = bytearray(1)
        self._register = bytearray(2)  # address and value out; a read's answer comes back into it
        self._view = memoryview(bytearray(256))  # the FIFO's 256 bytes: the one receive buffer
        self.packet = self._view[:0]  # the frame the last recv that gave True received
        self._dio0_flag = _TX_DONE  # the IRQ flag that DIO0 shows now (RegDioMapping1)
        self._dio = DioWait(dio0, self._pending)  # a send or recv waits for DIO0; standby() ends it
        self.light_sleep = False  # nothing else runs on this board: sends and receives wait in light sleep
        self._sending = Reused(self._sends)
        self._frame = b""  # the send under way's arguments
        self._tx_at_ms = None
        self._receiving = Reused(self._receives)
        self._rx_timeout_ms = None  # the recv under way's
        self.sent_ms = 0  # time.ticks_ms() at the last TX-done
        self.crc_errors = 0
        self.rssi = 0
        self.snr = 0
        self.ticks_ms = time.ticks_ms()
        self._sf = 7
        self._bw_hz = 125000
        self._coding_rate = 5
        self._preamble_len = 8
        self._hf = True
        if reset is not None:
            # NRESET low for more than 100 us, then 5 ms before the chip is ready (DS §7.2.2).
            reset.init(Pin.OUT, value=0)
            time.sleep_us(200)
            reset(1)
            time.sleep_ms(5)
        if self._read(_VERSION) != _SILICON_VERSION:
            raise OSError(_ENODEV)  # no answer (MISO floats at 0x00 or 0xFF), or another chip
        # LongRangeMode is writable in Sleep only (DS register table, RegOpMode): Sleep in FSK mode, then LoRa Sleep.
        self._write(_OP_MODE, self._read(_OP_MODE) & ~_MODE_MASK & 0xFF | _SLEEP)
        self._write(_OP_MODE, _LONG_RANGE | _SLEEP)
        if self._read(_OP_MODE) & _LONG_RANGE == 0:
            raise OSError(_ENODEV)
        self._write(_IRQ_FLAGS_MASK, 0x00)  # every IRQ reaches the flags, DIO0 chooses which it shows
        # The whole FIFO for each direction: TX and RX never share it at once (DS §4.1.2.3).
        self._write(_FIFO_TX_BASE, 0x00)
        self._write(_FIFO_RX_BASE, 0x00)
        self._write(_LNA, 0x23)  # G1 (the AGC picks the gain), LnaBoostHf 150 % current (DS register table, RegLna)
        self.standby()
        dio0.init(Pin.IN)
        dio0.irq(self._dio.irq, Pin.IRQ_RISING)
        self.configure({"syncword": 0x12, "preamble_len": 8, "sf": 7, "bw": 125, "coding_rate": 5, "output_power": 14})

    # SPI: the first byte is wnr (1 write, 0 read) and the address; a burst goes on at the next
    # address, or through the FIFO for RegFifo (DS §4.3).

    def _read(self, register):
        self._register[0] = register
        self._register[1] = 0
        self._cs(0)
        self._spi.write_readinto(self._register, self._register)  # one buffer both ways: machine.SPI allows it
        self._cs(1)
        return self._register[1]

    def _write(self, register, value):
        self._register[0] = register | 0x80
        self._register[1] = value
        self._cs(0)
        self._spi.write(self._register)
        self._cs(1)

    def _pending(self):
        """The IRQ flag that DIO0 shows, if set: RegIrqFlags (DS §4.1.2.4, register table p.111) read
        over SPI, for a wait whose IRQ does not come. 0 from a chip that does not answer: a MISO that
        floats reads 0x00 or 0xFF, never RegVersion's 0x12."""
        flags = self._read(_IRQ_FLAGS) & self._dio0_flag
        if flags and self._read(_VERSION) != _SILICON_VERSION:
            return 0
        return flags

    @property
    def dio_dead(self):
        """DIO0 was found dead: the chip's flags said TxDone or RxDone and the line never rose. The
        driver polls RegIrqFlags instead (True also makes a new driver poll from the start)."""
        return self._dio.dead

    @dio_dead.setter
    def dio_dead(self, dead):
        self._dio.dead = dead

    def _mode(self, mode):
        self._write(_OP_MODE, _LONG_RANGE | (0 if self._hf else _LOW_FREQUENCY_MODE) | mode)

    def configure(self, cfg):
        """Apply the channel settings in `cfg` (in standby; the chip is left there)."""
        self.standby()
        if "freq_khz" in cfg:
            khz = int(cfg["freq_khz"])
            self._hf = khz > _HF_PORT_KHZ
            # Frf = f / Fstep, Fstep = 32 MHz / 2**19 (DS §4.1.4): f_kHz * 2048 / 125, rounded, in
            # small integers (an int over 2**30 would be allocated).
            whole, part = divmod(khz, 125)
            frf = whole * 2048 + (part * 2048 + 62) // 125
            self._mode(_STANDBY)  # the LF page bit follows the port
            self._write(_FRF_MSB, frf >> 16)
            self._write(_FRF_MID, frf >> 8 & 0xFF)
            self._write(_FRF_LSB, frf & 0xFF)
        if "bw" in cfg:
            self._bw_hz = int(float(cfg["bw"]) * 1000)
            if self._bw_hz not in _BW_HZ:
                raise ValueError("bw")
        if "sf" in cfg:
            self._sf = int(cfg["sf"])
            if not 7 <= self._sf <= 12:
                raise ValueError("sf")  # SF6 needs implicit headers (DS §4.1.1.2): not ours
        if "coding_rate" in cfg:
            self._coding_rate = int(cfg["coding_rate"])
            if not 5 <= self._coding_rate <= 8:
                raise ValueError("coding_rate")
        if "preamble_len" in cfg:
            self._preamble_len = int(cfg["preamble_len"])
            self._write(_PREAMBLE_MSB, self._preamble_len >> 8)
            self._write(_PREAMBLE_LSB, self._preamble_len & 0xFF)
        if "syncword" in cfg:
            self._write(_SYNC_WORD, int(cfg["syncword"]) & 0xFF)
        if "output_power" in cfg:
            self._set_power(int(cfg["output_power"]))
        if "invert_iq_rx" in cfg or "invert_iq_tx" in cfg:
            self._set_iq(cfg.get("invert_iq_rx", False), cfg.get("invert_iq_tx", False))
        bw = _BW_HZ.index(self._bw_hz)
        # Explicit header (bit 0 clear), CRC on (DS §4.1.1.4: the transmitter decides).
        self._write(_MODEM_CONFIG1, bw << 4 | (self._coding_rate - 4) << 1)
        self._write(_MODEM_CONFIG2, self._sf << 4 | 0x04)
        ldro = (1 << self._sf) * 1000000 // self._bw_hz > _LDRO_SYMBOL_US
        self._write(_MODEM_CONFIG3, 0x04 | (0x08 if ldro else 0))  # AgcAutoOn, LowDataRateOptimize
        # DetectionOptimize 0x03 and DetectionThreshold 0x0A for SF7-12 (DS register table).
        self._write(_DETECT_OPTIMIZE, self._read(_DETECT_OPTIMIZE) & 0xF8 | 0x03)
        self._write(_DETECTION_THRESHOLD, 0x0A)
        # Errata note 2.1 (sensitivity at 500 kHz) and 2.3 (spurious reception below 500 kHz).
        if bw == 9:
            self._write(_HIGH_BW_OPTIMIZE1, 0x02)
            self._write(_HIGH_BW_OPTIMIZE2, 0x64 if self._hf else 0x7F)
            self._write(_DETECT_OPTIMIZE, self._read(_DETECT_OPTIMIZE) | 0x80)
        else:
            self._write(_HIGH_BW_OPTIMIZE1, 0x03)
            self._write(_DETECT_OPTIMIZE, self._read(_DETECT_OPTIMIZE) & 0x7F)
            self._write(_IF_FREQ1, 0x00)
            self._write(_IF_FREQ2, 0x48 if bw == 0 else 0x44 if bw < 6 else 0x40)

    def _set_power(self, dbm):
        # RegPaConfig's formulas (DS p.94), the +20 dBm PaDac (DS §5.4.3), RegOcp's trim (DS p.85 Table 37).
        if not self._pa_boost:
            # RFO: Pout = Pmax - (15 - OutputPower), MaxPower 7 gives Pmax 15 dBm.
            self._write(_PA_CONFIG, 0x70 | min(max(dbm, 0), 15))
            self._write(_PA_DAC, 0x84)
            self._write(_OCP, 0x20 | 11)  # 100 mA, the reset value
        elif dbm > 17:
            # +20 dBm mode: PaDac 0x87, Pout = OutputPower + 5; the PA draws up to 120 mA, above the
            # 100 mA OCP default: 140 mA, OcpTrim = (140 + 30) / 10.
            self._write(_PA_CONFIG, 0xF0 | min(dbm, 20) - 5)
            self._write(_PA_DAC, 0x87)
            self._write(_OCP, 0x20 | 17)
        else:
            # PA_BOOST: Pout = 17 - (15 - OutputPower), 2 to 17 dBm.
            self._write(_PA_CONFIG, 0xF0 | max(dbm, 2) - 2)
            self._write(_PA_DAC, 0x84)
            self._write(_OCP, 0x20 | 11)

    def _set_iq(self, rx_inverted, tx_inverted):
        # RegInvertIQ bit 6 inverts RX; bit 0 is the TX path, 1 for normal I/Q; RegInvertIQ2 0x19 when
        # either is inverted, 0x1D otherwise: as Semtech's own reference driver sets them (the TX bit's
        # sense is the reverse of what the register table says).
        value = 0x27 | (0x40 if rx_inverted else 0)
        if tx_inverted:
            value &= 0xFE
        self._write(_INVERT_IQ, value)
        self._write(_INVERT_IQ2, 0x19 if rx_inverted or tx_inverted else 0x1D)

    def standby(self):
        """Standby: ends a send or a receive under way (its call returns None or raises)."""
        self._mode(_STANDBY)
        self._dio.cancel()

    def sleep(self):
        """Sleep: registers kept, FIFO lost (DS §4.1.3)."""
        self.standby()
        self._mode(_SLEEP)

    def send(self, frame, tx_at_ms=None):
        """Transmit `frame` (at `tx_at_ms` if given): await it; True, `sent_ms` the time of TX-done."""
        if not 0 < len(frame) < 256:
            raise ValueError("frame length")
        self._frame = frame
        self._tx_at_ms = tx_at_ms
        return self._sending()

    def _sends(self):
        # Every send(), one after another (see borne/reused.py).
        while True:
            frame = self._frame
            n = len(frame)
            self.standby()  # the FIFO is filled in standby, TX is started from it (DS §4.1.6)
            self._write(_DIO_MAPPING1, _DIO0_TX_DONE)
            self._dio0_flag = _TX_DONE
            self._write(_FIFO_ADDR_PTR, 0x00)
            self._address[0] = _FIFO | 0x80
            self._cs(0)
            self._spi.write(self._address)
            self._spi.write(frame)
            self._cs(1)
            self._write(_PAYLOAD_LENGTH, n)
            self._write(_IRQ_FLAGS, _ALL_IRQS)
            if self._tx_at_ms is not None:
                yield from sleep_ms(max(time.ticks_diff(self._tx_at_ms, time.ticks_ms()), 0))
            self._dio.arm()
            self._mode(_TX)
            airtime_us = time_on_air_us(n, self._sf, self._bw_hz, self._coding_rate, self._preamble_len)
            airtime_ms = airtime_us // 1000
            done = yield from self._dio.wait(airtime_ms + _TX_SLACK_MS, airtime_ms if self.light_sleep else 0)
            if done is None:
                raise OSError(_ECANCELED)  # standby() cut it short
            flags = self._read(_IRQ_FLAGS)
            self._write(_IRQ_FLAGS, _ALL_IRQS)
            if not done or not flags & _TX_DONE:
                self.standby()
                raise OSError(_ETIMEDOUT)
            self.sent_ms = self._dio.tx_done_ms(airtime_ms)  # the chip is back in standby by itself (DS §4.1.6)
            yield RETURN_TRUE

    def recv(self, timeout_ms=None):
        """Listen for the next frame with a good CRC within `timeout_ms` (None: until standby()): await
        it; True, and `packet` is the frame (a view of the one buffer, valid until the next recv), or
        None. Allocates nothing, but a view for a frame of a new length (borne/reused.py)."""
        self._rx_timeout_ms = timeout_ms
        return self._receiving()

    def _receives(self):
        # Every recv(), one after another (see borne/reused.py).
        while True:
            self.standby()
            self._write(_DIO_MAPPING1, _DIO0_RX_DONE)
            self._dio0_flag = _RX_DONE
            self._write(_FIFO_ADDR_PTR, 0x00)
            self._write(_IRQ_FLAGS, _ALL_IRQS)
            self._dio.arm()
            self._mode(_RX_CONTINUOUS)
            timeout_ms = self._rx_timeout_ms
            deadline = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
            end = RETURN_NONE
            while True:
                left = None if deadline is None else time.ticks_diff(deadline, time.ticks_ms())
                got = yield from self._dio.wait(left, 0, self.light_sleep)
                if not got:
                    if got is False:
                        self.standby()
                    break
                flags = self._read(_IRQ_FLAGS)
                self._write(_IRQ_FLAGS, _ALL_IRQS)
                if not flags & _RX_DONE:
                    continue
                # A frame without a CRC, or with a bad one, is dropped (DS §4.1.1.4: check CrcOnPayload).
                if flags & _PAYLOAD_CRC_ERROR or not self._read(_HOP_CHANNEL) & _CRC_ON_PAYLOAD:
                    self.crc_errors += 1
                    continue
                self._read_packet()
                end = RETURN_TRUE
                break
            yield end

    def _read_packet(self):
        """Read the frame received, and its strength, into `packet`, `rssi`, `snr` and `ticks_ms`."""
        self.ticks_ms = self._dio.ticks_ms
        self.standby()
        n = self._read(_RX_NB_BYTES)
        self._write(_FIFO_ADDR_PTR, self._read(_FIFO_RX_CURRENT))
        snr = self._read(_PKT_SNR)
        self.snr = snr - 256 if snr > 127 else snr
        # Packet strength (DS §5.5.5): offset + PacketRssi, plus SNR / 4 when the SNR is negative.
        self.rssi = (_RSSI_OFFSET_HF if self._hf else _RSSI_OFFSET_LF) + self._read(_PKT_RSSI)
        if self.snr < 0:
            self.rssi += self.snr // 4
        if len(self.packet) != n:  # a view per length: frames of one length (ACKs) allocate nothing
            self.packet = self._view[:n]
        self._address[0] = _FIFO
        self._cs(0)
        self._spi.write(self._address)
        self._spi.readinto(self.packet)
        self._cs(1)
