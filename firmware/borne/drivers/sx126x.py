"""Semtech SX1261/62 in LoRa mode, on SPI with its BUSY line, written from the datasheet (DS: SX1261/2
datasheet rev 2.1: "§" its sections; RM0453: ST's STM32WL reference manual, whose sub-GHz radio is
the same IP, where it says more).

`SX126x(spi, cs, busy, dio1, reset, chip="sx1262", tcxo_mv=None, tcxo_start_us=5000,
dio2_rf_switch=False)` resets the chip, checks it answers in standby, powers its TCXO from DIO3 if
the board has one, calibrates, and leaves it in STDBY_RC with LoRa selected. The rest is the SX127x
driver's API (`borne/drivers/sx127x.py`): `configure(cfg)`, `await send(frame, tx_at_ms)` (then `sent_ms`),
`await recv(timeout_ms)` (a memoryview of the driver's one buffer, with `rssi`, `snr` (dB x 4) and
`ticks_ms` in attributes), `standby()`, `sleep()`, `crc_errors`.

Errors: a chip that does not answer is OSError(19) at construction; BUSY high past its time
OSError(110, why); a command the chip refuses (CmdError/ExecError in its status byte) or a device
error (GetDeviceErrors) OSError(5, why); a TX-done that never comes OSError(110); standby() during a
send OSError(125). A DIO1 that never reaches the board while the chip works (`dio_dead`, see
`borne/drivers/dio.py`): GetIrqStatus over SPI stands for it, polled from then on.
"""

import time

from machine import Pin
from micropython import const

from borne.airtime import time_on_air_us
from borne.drivers.dio import DioWait
from borne.reused import RETURN_NONE, RETURN_TRUE, Reused, sleep_ms

# Opcodes (DS §13, Table 13-1 to 13-5).
_SET_SLEEP = const(0x84)
_SET_STANDBY = const(0x80)
_SET_TX = const(0x83)
_SET_RX = const(0x82)
_SET_REGULATOR_MODE = const(0x96)
_CALIBRATE = const(0x89)
_CALIBRATE_IMAGE = const(0x98)
_SET_PA_CONFIG = const(0x95)
_WRITE_REGISTER = const(0x0D)
_READ_REGISTER = const(0x1D)
_WRITE_BUFFER = const(0x0E)
_READ_BUFFER = const(0x1E)
_SET_DIO_IRQ_PARAMS = const(0x08)
_GET_IRQ_STATUS = const(0x12)
_CLEAR_IRQ_STATUS = const(0x02)
_SET_DIO2_AS_RF_SWITCH = const(0x9D)
_SET_DIO3_AS_TCXO = const(0x97)
_SET_RF_FREQUENCY = const(0x86)
_SET_PACKET_TYPE = const(0x8A)
_SET_TX_PARAMS = const(0x8E)
_SET_MODULATION_PARAMS = const(0x8B)
_SET_PACKET_PARAMS = const(0x8C)
_SET_BUFFER_BASE = const(0x8F)
_GET_STATUS = const(0xC0)
_GET_RX_BUFFER_STATUS = const(0x13)
_GET_PACKET_STATUS = const(0x14)
_GET_DEVICE_ERRORS = const(0x17)
_CLEAR_DEVICE_ERRORS = const(0x07)

# How many parameters each write command takes (DS §13, Tables 13-1 to 13-5).
_PARAMETERS = {
    _SET_STANDBY: 1,
    _SET_TX: 3,
    _SET_RX: 3,
    _SET_REGULATOR_MODE: 1,
    _CALIBRATE: 1,
    _CALIBRATE_IMAGE: 2,
    _SET_PA_CONFIG: 4,
    _WRITE_REGISTER: 3,  # an address and one byte
    _SET_DIO_IRQ_PARAMS: 8,
    _CLEAR_IRQ_STATUS: 2,
    _SET_DIO2_AS_RF_SWITCH: 1,
    _SET_DIO3_AS_TCXO: 4,
    _SET_RF_FREQUENCY: 4,
    _SET_PACKET_TYPE: 1,
    _SET_TX_PARAMS: 2,
    _SET_MODULATION_PARAMS: 4,
    _SET_PACKET_PARAMS: 6,
    _SET_BUFFER_BASE: 2,
    _CLEAR_DEVICE_ERRORS: 2,
}

_STDBY_RC = const(0x00)
_PACKET_TYPE_LORA = const(0x01)
_REGULATOR_DC_DC = const(0x01)  # the boards carry the DC-DC's inductor (DS §13.1.5)
_CALIBRATE_ALL = const(0x7F)  # RC64k, RC13M, PLL, ADC pulse, ADC bulk N and P, image (DS §13.1.12)
_SLEEP_WARM = const(0x04)  # configuration kept (DS §13.1.1)
_RAMP_40_US = const(0x02)  # SetTxParams RampTime (DS §13.4.4)

# The status byte (DS §13.5.1): chip mode in bits 6:4, command status in bits 3:1.
_MODE_STDBY_RC = const(0x2)
_MODE_STDBY_XOSC = const(0x3)
_MODE_TX = const(0x6)  # the highest chip mode; 0, 1 and 7 are unused
_CMD_ERROR = const(0x4)  # unknown opcode or wrong number of parameters
_EXEC_ERROR = const(0x5)  # the command came at a time the chip could not execute it

# IRQ bits (DS §13.3.1, Table 13-29).
_IRQ_TX_DONE = const(0x0001)
_IRQ_RX_DONE = const(0x0002)
_IRQ_HEADER_ERR = const(0x0020)
_IRQ_CRC_ERR = const(0x0040)
_IRQ_TIMEOUT = const(0x0200)
_IRQ_USED = const(_IRQ_TX_DONE | _IRQ_RX_DONE | _IRQ_HEADER_ERR | _IRQ_CRC_ERR | _IRQ_TIMEOUT)
_IRQ_ALL = const(0x03FF)


# Registers (DS §12, Table 12-1) and the known limitations' workarounds (DS §15).
_REG_SYNC_WORD = const(0x0740)  # two bytes: private 0x1424, public 0x3444 (DS §6.1.1.1)
_REG_IQ_POLARITY = const(0x0736)  # bit 2: 1 standard IQ, 0 inverted (DS §15.4)
_REG_TX_MODULATION = const(0x0889)  # bit 2: 0 at BW 500 kHz, 1 otherwise (DS §15.1)
_REG_TX_CLAMP = const(0x08D8)  # bits 4:1 set on the SX1262 (DS §15.2)

# SetModulationParams' bandwidth codes, by Hz (DS §13.4.5.2, Table 13-47).
_BW_CODES = {7800: 0x00, 10400: 0x08, 15600: 0x01, 20800: 0x09, 31250: 0x02, 41700: 0x0A, 62500: 0x03}
_BW_CODES.update({125000: 0x04, 250000: 0x05, 500000: 0x06})
# CalibrateImage's two frequencies by band, in kHz (DS §9.2.1, Table 9-2).
_IMAGE_BANDS = (
    (430000, 440000, 0x6B, 0x6F),
    (470000, 510000, 0x75, 0x81),
    (779000, 787000, 0xC1, 0xC5),
    (863000, 870000, 0xD7, 0xDB),
    (902000, 928000, 0xE1, 0xE9),
)
_TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)  # SetDIO3AsTCXOCtrl codes 0-7 (DS §13.3.6)

_BUSY_TIMEOUT_US = const(20000)  # Calibrate takes 3.5 ms (DS §9.2.1); some chips up to 18 ms
_LDRO_SYMBOL_US = const(16000)  # LowDataRateOptimize is advised for longer symbols (DS §6.1.1.4)
_TX_SLACK_MS = const(100)  # beyond the time on air, before a TX-done that has not come is an error
_EIO = const(5)
_ENODEV = const(19)
_ETIMEDOUT = const(110)
_ECANCELED = const(125)


class SX126x:
    def __init__(
        self, spi, cs, busy, dio1, reset=None, chip="sx1262", tcxo_mv=None, tcxo_start_us=5000, dio2_rf_switch=False
    ):
        if chip not in ("sx1261", "sx1262"):
            raise ValueError("chip")
        self._spi = spi
        self._cs = cs
        cs.init(Pin.OUT, value=1)
        self._busy = busy
        busy.init(Pin.IN)
        self._sx1261 = chip == "sx1261"
        self._command_buf = bytearray(9)  # the opcode and at most 8 parameters (SetDioIrqParams)
        # One view per command length: sending a command allocates nothing.
        self._commands = [memoryview(self._command_buf)[:n] for n in range(10)]
        self._answer = bytearray(4)
        self._answers = [memoryview(self._answer)[:n] for n in range(5)]
        self._view = memoryview(bytearray(256))  # the chip's 256-byte data buffer: the one receive buffer
        self.packet = self._view[:0]  # the frame the last recv that gave True received
        self._dio = DioWait(dio1, self._pending)  # a send or recv waits for DIO1; standby() ends it
        self.light_sleep = False  # nothing else runs on this board: sends and receives wait in light sleep
        self._sending = Reused(self._sends)
        self._frame = b""  # the send under way's arguments
        self._tx_at_ms = None
        self._receiving = Reused(self._receives)
        self._rx_timeout_ms = None  # the recv under way's
        self.sent_ms = 0  # time.ticks_ms() at the last TX-done
        self._asleep = False
        self.crc_errors = 0
        self.rssi = 0
        self.snr = 0
        self.ticks_ms = time.ticks_ms()
        self._sf = 7
        self._bw_hz = 125000
        self._coding_rate = 5
        self._preamble_len = 8
        self._invert_iq_rx = False
        self._invert_iq_tx = False
        self._image_band = None
        self._busy_timeout_us = _BUSY_TIMEOUT_US
        if reset is not None:
            # NRESET low for more than 100 us (DS §8.1); the chip then calibrates with BUSY high.
            reset.init(Pin.OUT, value=0)
            time.sleep_us(200)
            reset(1)
        self._wake()
        mode = self._status() >> 4 & 0x07
        if mode not in (_MODE_STDBY_RC, _MODE_STDBY_XOSC):
            raise OSError(_ENODEV)  # MISO floats at 0x00 or 0xFF: no chip, or an unpowered one
        self._command(_SET_STANDBY, _STDBY_RC)
        if tcxo_mv:
            # DIO3 powers the TCXO before anything starts the XOSC; the failed start of the XOSC that
            # enabling it records is then cleared, and calibration runs again on the TCXO (DS §13.3.6).
            if tcxo_mv not in _TCXO_MV:
                raise ValueError("tcxo_mv")
            delay = tcxo_start_us * 64 // 1000  # in steps of 15.625 us
            self._busy_timeout_us = _BUSY_TIMEOUT_US + tcxo_start_us
            self._command(_SET_DIO3_AS_TCXO, _TCXO_MV.index(tcxo_mv), delay >> 16, delay >> 8 & 0xFF, delay & 0xFF)
            self._command(_CLEAR_DEVICE_ERRORS, 0, 0)
            self._command(_CALIBRATE, _CALIBRATE_ALL)
        self._command(_SET_REGULATOR_MODE, _REGULATOR_DC_DC)
        if dio2_rf_switch:
            self._command(_SET_DIO2_AS_RF_SWITCH, 1)  # DIO2 high in TX drives the board's RF switch (DS §13.3.5)
        self._command(_SET_PACKET_TYPE, _PACKET_TYPE_LORA)  # first, in standby (DS §13.4.2)
        self._command(_SET_BUFFER_BASE, 0, 0)  # the whole buffer each way: TX and RX never at once
        # Every IRQ the driver uses reaches DIO1 (DS §13.3.1).
        self._command(
            _SET_DIO_IRQ_PARAMS, _IRQ_USED >> 8, _IRQ_USED & 0xFF, _IRQ_USED >> 8, _IRQ_USED & 0xFF, 0, 0, 0, 0
        )
        if not self._sx1261:
            # DS §15.2: the SX1262's PA clamps too early on a mismatched antenna.
            self._write_register(_REG_TX_CLAMP, self._read_register(_REG_TX_CLAMP) | 0x1E)
        dio1.init(Pin.IN)
        dio1.irq(self._dio.irq, Pin.IRQ_RISING)
        defaults = {"freq_khz": 868100, "syncword": 0x12, "preamble_len": 8, "sf": 7, "bw": 125, "coding_rate": 5}
        defaults["output_power"] = 14
        self.configure(defaults)

    # SPI (DS §8.3): an opcode and its parameters while NSS is low, accepted only while BUSY is low;
    # BUSY rises while the chip executes it.

    def _wait_ready(self):
        started = time.ticks_us()
        while True:
            # The time is read before BUSY: a task held up between the two still looks once past the deadline.
            late = time.ticks_diff(time.ticks_us(), started) > self._busy_timeout_us
            if not self._busy():
                return
            if late:
                raise OSError(
                    _ETIMEDOUT,
                    "the SX126x's BUSY line stays high: check the radio's power, its reset line and the TCXO settings",
                )

    def _wake(self):
        """A falling NSS wakes the chip from sleep; BUSY is high until it is ready (DS §13.1.1)."""
        asleep = self._asleep
        self._cs(0)
        time.sleep_us(100)
        self._cs(1)
        self._asleep = False
        self._wait_ready()
        if asleep:
            # The TCXO's XOSC_START error comes back with each wake from sleep (micropython-lib's
            # sx126x.py sees it too): not a fault.
            self._command(_CLEAR_DEVICE_ERRORS, 0, 0)

    def _send(self, n):
        """Send the first `n` bytes of the command buffer, then wait for the chip to be done with it."""
        if self._asleep:
            self._wake()
        self._wait_ready()
        self._cs(0)
        self._spi.write(self._commands[n])
        self._cs(1)
        self._wait_ready()

    def _command(self, opcode, a=0, b=0, c=0, d=0, e=0, f=0, g=0, h=0):
        """A write command with its parameters, as many as the opcode takes (no tuple built: nothing allocated)."""
        buf = self._command_buf
        buf[0] = opcode
        buf[1] = a
        buf[2] = b
        buf[3] = c
        buf[4] = d
        buf[5] = e
        buf[6] = f
        buf[7] = g
        buf[8] = h
        self._send(1 + _PARAMETERS[opcode])

    def _read(self, opcode, n, a=None):
        """A read command: its answer's `n` bytes after the status byte, in `_answer`."""
        if self._asleep:
            self._wake()
        self._wait_ready()
        buf = self._command_buf
        buf[0] = opcode
        start = 1
        if a is not None:
            buf[1] = a
            start = 2
        self._cs(0)
        self._spi.write(self._commands[start])
        self._spi.readinto(self._answers[n + 1])
        self._cs(1)
        self._wait_ready()

    def _status(self):
        """GetStatus (DS §13.5.1): the chip mode and the status of the last command."""
        self._read(_GET_STATUS, 0)
        return self._answer[0]

    def _check(self, what):
        """Raise if the chip refused the last command (DS §13.5.1, command status)."""
        status = self._status() >> 1 & 0x07
        if status in (_CMD_ERROR, _EXEC_ERROR):
            errors = self.device_errors()
            raise OSError(
                _EIO,
                f"the SX126x refused {what} (command status {status}, device errors {errors:#06x}):"
                " reset the chip and set it up again",
            )

    def _write_register(self, address, value):
        self._command(_WRITE_REGISTER, address >> 8, address & 0xFF, value)

    def _read_register(self, address):
        buf = self._command_buf
        buf[0] = _READ_REGISTER
        buf[1] = address >> 8
        buf[2] = address & 0xFF
        if self._asleep:
            self._wake()
        self._wait_ready()
        self._cs(0)
        self._spi.write(self._commands[3])
        self._spi.readinto(self._answers[2])  # the status, then the register
        self._cs(1)
        self._wait_ready()
        return self._answer[1]

    def device_errors(self):
        """GetDeviceErrors (DS §13.6.1): OpError's bits, 0 when all is well."""
        self._read(_GET_DEVICE_ERRORS, 2)
        return self._answer[1] << 8 | self._answer[2]

    def _irq_status(self):
        self._read(_GET_IRQ_STATUS, 2)
        return self._answer[1] << 8 | self._answer[2]

    def _pending(self):
        """The IRQs that DIO1 shows, if any is set: GetIrqStatus (DS §13.3.3) over SPI, for a wait whose
        IRQ does not come. 0 from a chip that does not answer: a MISO that floats reads 0x00 or 0xFF,
        whose chip mode (status bits 6:4, DS §13.5.1) is none of STDBY_RC to TX."""
        self._read(_GET_IRQ_STATUS, 2)
        mode = self._answer[0] >> 4 & 0x07
        if mode < _MODE_STDBY_RC or mode > _MODE_TX:
            return 0
        return (self._answer[1] << 8 | self._answer[2]) & _IRQ_USED

    @property
    def dio_dead(self):
        """DIO1 was found dead: GetIrqStatus said TxDone, RxDone, an error or a timeout and the line
        never rose. The driver polls GetIrqStatus instead (True also makes a new driver poll from the start)."""
        return self._dio.dead

    @dio_dead.setter
    def dio_dead(self, dead):
        self._dio.dead = dead

    def _clear_irqs(self):
        self._command(_CLEAR_IRQ_STATUS, _IRQ_ALL >> 8, _IRQ_ALL & 0xFF)

    def configure(self, cfg):
        """Apply the channel settings in `cfg` (in STDBY_RC; the chip is left there)."""
        self.standby()
        if "freq_khz" in cfg:
            khz = int(cfg["freq_khz"])
            self._calibrate_image(khz)
            # RfFreq = f * 2**25 / 32 MHz (DS §13.4.1) = f_kHz * 2**20 / 1000, rounded, in small integers.
            whole, part = divmod(khz, 125)
            frf = whole * 131072 + (part * 131072 + 62) // 125
            self._command(_SET_RF_FREQUENCY, frf >> 24, frf >> 16 & 0xFF, frf >> 8 & 0xFF, frf & 0xFF)
        if "bw" in cfg:
            bw_hz = int(float(cfg["bw"]) * 1000)
            if bw_hz not in _BW_CODES:
                raise ValueError("bw")
            self._bw_hz = bw_hz
        if "sf" in cfg:
            self._sf = int(cfg["sf"])
            if not 7 <= self._sf <= 12:
                raise ValueError("sf")  # SF5 and SF6 do not interoperate with the SX127x (DS §6.1.1.1)
        if "coding_rate" in cfg:
            self._coding_rate = int(cfg["coding_rate"])
            if not 5 <= self._coding_rate <= 8:
                raise ValueError("coding_rate")
        if "preamble_len" in cfg:
            self._preamble_len = int(cfg["preamble_len"])
        if "invert_iq_rx" in cfg or "invert_iq_tx" in cfg:
            self._invert_iq_rx = bool(cfg.get("invert_iq_rx", False))
            self._invert_iq_tx = bool(cfg.get("invert_iq_tx", False))
        if "syncword" in cfg:
            word = int(cfg["syncword"])
            if word <= 0xFF:
                word = (word & 0xF0) << 8 | (word & 0x0F) << 4 | 0x0404  # an SX127x byte 0xYZ is 0xY4Z4
            self._write_register(_REG_SYNC_WORD, word >> 8)
            self._write_register(_REG_SYNC_WORD + 1, word & 0xFF)
        if "output_power" in cfg:
            self._set_power(int(cfg["output_power"]))
        ldro = (1 << self._sf) * 1000000 // self._bw_hz > _LDRO_SYMBOL_US
        self._command(_SET_MODULATION_PARAMS, self._sf, _BW_CODES[self._bw_hz], self._coding_rate - 4, int(ldro))
        self._packet_params(255, self._invert_iq_rx)
        # DS §15.1: the modulation quality at 500 kHz.
        value = self._read_register(_REG_TX_MODULATION)
        self._write_register(_REG_TX_MODULATION, value & 0xFB if self._bw_hz == 500000 else value | 0x04)
        self._check("the channel settings")
        errors = self.device_errors()
        if errors:
            self._command(_CLEAR_DEVICE_ERRORS, 0, 0)
            raise OSError(
                _EIO, f"the SX126x reports device errors {errors:#06x} (DS 13.6.1): it is reset and set up again"
            )

    def _calibrate_image(self, khz):
        """CalibrateImage for the band of `khz`, once per band (DS §9.2.1)."""
        for low, high, f1, f2 in _IMAGE_BANDS:
            if low <= khz <= high:
                if self._image_band != f1:
                    self._command(_CALIBRATE_IMAGE, f1, f2)
                    self._image_band = f1
                return
        raise ValueError("freq_khz: no image calibration band of the SX126x holds it")

    def _set_power(self, dbm):
        # SetPaConfig then SetTxParams (DS §13.1.14, Table 13-21: the optimal settings per chip).
        if self._sx1261:
            dbm = min(max(dbm, -17), 15)
            self._command(_SET_PA_CONFIG, 0x06 if dbm == 15 else 0x04, 0x00, 0x01, 0x01)
            self._command(_SET_TX_PARAMS, min(dbm, 14) & 0xFF, _RAMP_40_US)
        else:
            # The high-power PA at its +22 dBm setting, the power itself from SetTxParams (-9 to +22).
            dbm = min(max(dbm, -9), 22)
            self._command(_SET_PA_CONFIG, 0x04, 0x07, 0x00, 0x01)
            self._command(_SET_TX_PARAMS, dbm & 0xFF, _RAMP_40_US)

    def _packet_params(self, length, inverted):
        # Preamble, explicit header, length, CRC on, IQ (DS §13.4.6.2), then DS §15.4's IQ polarity fix.
        p = self._preamble_len
        self._command(_SET_PACKET_PARAMS, p >> 8, p & 0xFF, 0x00, length, 0x01, int(inverted))
        value = self._read_register(_REG_IQ_POLARITY)
        self._write_register(_REG_IQ_POLARITY, value & 0xFB if inverted else value | 0x04)

    def standby(self):
        """STDBY_RC: ends a send or a receive under way (its call returns None or raises)."""
        self._command(_SET_STANDBY, _STDBY_RC)
        self._dio.cancel()

    def sleep(self):
        """Sleep with warm start: the configuration is kept, the buffer lost (DS §13.1.1)."""
        self.standby()
        self._command_buf[0] = _SET_SLEEP
        self._command_buf[1] = _SLEEP_WARM
        self._wait_ready()
        self._cs(0)
        self._spi.write(self._commands[2])
        self._cs(1)
        self._asleep = True  # BUSY stays high while it sleeps: the next command wakes it first

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
            self.standby()
            self._packet_params(n, self._invert_iq_tx)
            buf = self._command_buf
            buf[0] = _WRITE_BUFFER
            buf[1] = 0
            self._wait_ready()
            self._cs(0)
            self._spi.write(self._commands[2])
            self._spi.write(frame)
            self._cs(1)
            self._wait_ready()
            self._clear_irqs()
            if self._tx_at_ms is not None:
                yield from sleep_ms(max(time.ticks_diff(self._tx_at_ms, time.ticks_ms()), 0))
            airtime_ms = time_on_air_us(n, self._sf, self._bw_hz, self._coding_rate, self._preamble_len) // 1000
            # The chip's own TX timeout, in steps of 15.625 us (DS §13.1.4), backs the driver's.
            timeout = (airtime_ms + _TX_SLACK_MS) * 64
            self._dio.arm()
            self._command(_SET_TX, timeout >> 16, timeout >> 8 & 0xFF, timeout & 0xFF)
            self._check("to transmit")
            done = yield from self._dio.wait(airtime_ms + _TX_SLACK_MS, airtime_ms if self.light_sleep else 0)
            if done is None:
                raise OSError(_ECANCELED)  # standby() cut it short
            irqs = self._irq_status()
            self._clear_irqs()
            if not done or not irqs & _IRQ_TX_DONE:
                self.standby()
                raise OSError(_ETIMEDOUT)
            self.sent_ms = self._dio.tx_done_ms(airtime_ms)  # the chip falls back to STDBY_RC by itself (DS §13.1.4)
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
            self._packet_params(255, self._invert_iq_rx)
            self._clear_irqs()
            self._dio.arm()
            # RX continuous (DS §13.1.5): the driver keeps the deadline, so the chip's RX timer is never
            # armed and DS §15.3's stopped-timer fix is not needed.
            self._command(_SET_RX, 0xFF, 0xFF, 0xFF)
            self._check("to receive")
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
                irqs = self._irq_status()
                self._clear_irqs()
                if not irqs & _IRQ_RX_DONE:
                    continue
                if irqs & (_IRQ_CRC_ERR | _IRQ_HEADER_ERR):
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
        self._read(_GET_RX_BUFFER_STATUS, 2)  # length, start (DS §13.5.2)
        n = self._answer[1]
        start = self._answer[2]
        self._read(_GET_PACKET_STATUS, 3)  # RssiPkt, SnrPkt, SignalRssiPkt (DS §13.5.3)
        self.rssi = -(self._answer[1] >> 1)
        snr = self._answer[2]
        self.snr = snr - 256 if snr > 127 else snr  # SnrPkt is the SNR in dB x 4
        if len(self.packet) != n:  # a view per length: frames of one length (ACKs) allocate nothing
            self.packet = self._view[:n]
        buf = self._command_buf
        buf[0] = _READ_BUFFER
        buf[1] = start
        buf[2] = 0  # NOP: the status
        self._wait_ready()
        self._cs(0)
        self._spi.write(self._commands[3])
        self._spi.readinto(self.packet)
        self._cs(1)
        self._wait_ready()
