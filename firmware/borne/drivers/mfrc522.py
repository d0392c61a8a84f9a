# NXP MFRC522 (RC522) NFC reader on SPI: reads the UID and type of the ISO 14443A badge in its field.
# The reader is a set of registers: the driver loads a frame into its FIFO, starts Transceive, and
# reads the badge's answer back from the FIFO. A read is ISO 14443-3 activation: WUPA (which also
# wakes a badge halted by the previous read), then anticollision and SELECT at each cascade level
# (4, 7 or 10-byte UIDs), then HLTA. The CRC_A of SELECT and SAK comes from the reader's coprocessor.
import time

from machine import Pin
from micropython import const

from borne.drivers.iso14443a import tag_type

_REG_COMMAND = const(0x01)
_REG_COM_IRQ = const(0x04)
_REG_DIV_IRQ = const(0x05)
_REG_ERROR = const(0x06)
_REG_FIFO_DATA = const(0x09)
_REG_FIFO_LEVEL = const(0x0A)
_REG_BIT_FRAMING = const(0x0D)
_REG_MODE = const(0x11)
_REG_TX_MODE = const(0x12)
_REG_RX_MODE = const(0x13)
_REG_TX_CONTROL = const(0x14)
_REG_TX_ASK = const(0x15)
_REG_CRC_RESULT_H = const(0x21)
_REG_CRC_RESULT_L = const(0x22)
_REG_T_MODE = const(0x2A)
_REG_T_PRESCALER = const(0x2B)
_REG_T_RELOAD_H = const(0x2C)
_REG_T_RELOAD_L = const(0x2D)
_REG_VERSION = const(0x37)

_IDLE = const(0x00)
_CALC_CRC = const(0x03)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)  # CommandReg: reads 1 until the chip has woken up from a reset
_RX_IRQ = const(0x20)
_IDLE_IRQ = const(0x10)
_TIMER_IRQ = const(0x01)
_CRC_IRQ = const(0x04)
_ERRORS = const(0x1F)  # BufferOvfl, CollErr, CRCErr, ParityErr, ProtocolErr
_COLL_ERR = const(0x08)
_FLUSH_FIFO = const(0x80)
_START_SEND = const(0x80)
_T_AUTO = const(0x80)  # the timer starts when a frame has been sent: no answer, a TimerIRq
_PRESCALER = const(0xA9)  # 13.56 MHz / (2 x 169 + 1): a 25 us tick
_RELOAD = const(400)  # 10 ms: a badge answers within 0.1 ms (ISO 14443-3 frame delay)
_MODE_CRC_6363 = const(0x3D)  # CRC preset 0x6363, that of ISO 14443-3's CRC_A
_FORCE_100_ASK = const(0x40)
_ANTENNA_ON = const(0x03)
_WAIT_POLLS = const(30)  # ms, for a reset, an answer or a CRC: each takes well under the timer's 10 ms

_WUPA = const(0x52)
_HLTA = const(0x50)
_SEL_CL1 = const(0x93)  # then 0x95, 0x97
_NVB_ANTICOLLISION = const(0x20)
_NVB_SELECT = const(0x70)
_CASCADE_TAG = const(0x88)
_SAK_CASCADE = const(0x04)  # the UID goes on at the next cascade level


class MFRC522:
    """An MFRC522 on `spi` (mode 0, up to 10 MHz), selected by the Pin `cs`, reset by the Pin `reset`
    (NRSTPD) if wired: `MFRC522(spi, cs).read_badge()` -> (uid, tag type) or None.

    A reader that does not answer (its version register reads 0x00 or 0xFF) raises OSError(ENODEV);
    a damaged answer (collision, bad BCC or CRC_A) raises OSError(EIO); callers count both as reader
    errors. A read halts the badge, so the next read wakes it again: a badge held on the reader is
    read at every poll."""

    def __init__(self, spi, cs, reset=None):
        self._spi = spi
        self._cs = cs
        self._register = bytearray(2)  # address byte, value
        self._out = bytearray(9)  # the longest frame we send: SELECT
        self._in = bytearray(1 + 64)  # what a FIFO read clocks in: a dummy byte, then the FIFO
        self._addresses = bytearray(1 + 64)  # what it clocks out: the FIFO's address, n times, then 0
        cs.init(Pin.OUT, value=1)
        if reset is not None:
            reset.init(Pin.OUT, value=0)
            time.sleep_ms(1)
            reset(1)  # a rising edge resets the chip
        else:
            self._write(_REG_COMMAND, _SOFT_RESET)
        for _ in range(_WAIT_POLLS):
            if not self._read(_REG_COMMAND) & _POWER_DOWN:
                break
            time.sleep_ms(1)
        self.version()
        self._write(_REG_T_MODE, _T_AUTO)
        self._write(_REG_T_PRESCALER, _PRESCALER)
        self._write(_REG_T_RELOAD_H, _RELOAD >> 8)
        self._write(_REG_T_RELOAD_L, _RELOAD & 0xFF)
        self._write(_REG_TX_ASK, _FORCE_100_ASK)  # ISO 14443A modulates 100 %
        self._write(_REG_MODE, _MODE_CRC_6363)
        self._write(_REG_TX_MODE, 0)  # 106 kBd, no CRC added: we add it where it belongs
        self._write(_REG_RX_MODE, 0)
        self._write(_REG_TX_CONTROL, self._read(_REG_TX_CONTROL) | _ANTENNA_ON)

    def version(self):
        """VersionReg: 0x91 or 0x92 for NXP's v1.0 and v2.0 (clones read otherwise)."""
        version = self._read(_REG_VERSION)
        if version in (0x00, 0xFF):
            raise OSError(19, "MFRC522 not answering")  # ENODEV: MISO floats
        return version

    def read_badge(self):
        """The badge in the field, as (uid bytes, tag type), or None if there is none."""
        self.version()
        out, answer = self._out, self._in
        out[0] = _WUPA
        n = self._transceive(1, 7)  # a 7-bit short frame
        if n == 0:
            return None
        if n != 2:
            raise OSError(5, "MFRC522 bad ATQA")  # EIO
        atqa = answer[2] << 8 | answer[1]  # least significant byte first on air
        try:
            found = self._select()
        finally:
            self._halt()  # also sends a badge left in the middle of a selection back to sleep
        return found and (found[0], tag_type(atqa, found[1]))

    def _select(self):
        """Anticollision and SELECT at each cascade level: (uid, sak), or None if the badge went away."""
        out, answer = self._out, self._in
        uid = bytearray()
        for level in range(3):
            out[0] = _SEL_CL1 + 2 * level
            out[1] = _NVB_ANTICOLLISION
            n = self._transceive(2)
            if n == 0:
                return None
            if n != 5:
                raise OSError(5, "MFRC522 bad UID length")
            if answer[1] ^ answer[2] ^ answer[3] ^ answer[4] != answer[5]:
                raise OSError(5, "MFRC522 bad BCC")
            out[1] = _NVB_SELECT
            out[2:7] = answer[1:6]
            self._crc(out, 7)
            n = self._transceive(9)
            if n == 0:
                return None
            sak = answer[1]
            if n != 3 or self._calculate_crc(memoryview(answer)[1:], 1) != answer[2] | answer[3] << 8:
                raise OSError(5, "MFRC522 bad CRC")
            if not sak & _SAK_CASCADE:
                uid.extend(out[2:6])
                return bytes(uid), sak
            if out[2] != _CASCADE_TAG:
                raise OSError(5, "MFRC522 bad cascade")
            uid.extend(out[3:6])
        raise OSError(5, "MFRC522 UID too long")

    def _halt(self):
        out = self._out
        out[0] = _HLTA
        out[1] = 0
        self._crc(out, 2)
        self._transceive(4)  # a halted badge does not answer

    def _transceive(self, n, last_bits=0):
        """Send the first `n` bytes of the output buffer (`last_bits` of the last one, 0 for 8) and
        return the length of the answer, in the input buffer from index 1; 0 if nothing answered."""
        self._write(_REG_COMMAND, _IDLE)
        self._write(_REG_COM_IRQ, 0x7F)  # clear every request
        self._write(_REG_FIFO_LEVEL, _FLUSH_FIFO)
        self._write_fifo(self._out, n)
        self._write(_REG_COMMAND, _TRANSCEIVE)
        self._write(_REG_BIT_FRAMING, _START_SEND | last_bits)
        for _ in range(_WAIT_POLLS):
            irq = self._read(_REG_COM_IRQ)
            if irq & (_RX_IRQ | _IDLE_IRQ):
                break
            if irq & _TIMER_IRQ:
                return 0
            time.sleep_ms(1)
        else:
            raise OSError(110, "MFRC522 timer stopped")  # ETIMEDOUT: the reader lost its settings
        error = self._read(_REG_ERROR) & _ERRORS
        if error:
            raise OSError(5, "MFRC522 collision" if error & _COLL_ERR else "MFRC522 receive error")
        return self._read_fifo()

    def _crc(self, buf, n):
        """Append to the first `n` bytes of `buf` their CRC_A, computed by the reader."""
        crc = self._calculate_crc(buf, n)
        buf[n] = crc & 0xFF
        buf[n + 1] = crc >> 8

    def _calculate_crc(self, buf, n):
        self._write(_REG_COMMAND, _IDLE)
        self._write(_REG_DIV_IRQ, _CRC_IRQ)  # clear it (Set2 is 0)
        self._write(_REG_FIFO_LEVEL, _FLUSH_FIFO)
        self._write_fifo(buf, n)
        self._write(_REG_COMMAND, _CALC_CRC)
        for _ in range(_WAIT_POLLS):
            if self._read(_REG_DIV_IRQ) & _CRC_IRQ:
                break
            time.sleep_ms(1)
        else:
            raise OSError(110, "MFRC522 CRC coprocessor")  # ETIMEDOUT
        self._write(_REG_COMMAND, _IDLE)
        return self._read(_REG_CRC_RESULT_H) << 8 | self._read(_REG_CRC_RESULT_L)

    def _read(self, register):
        b = self._register
        b[0] = 0x80 | register << 1
        b[1] = 0
        self._cs(0)
        try:
            self._spi.write_readinto(b, b)
        finally:
            self._cs(1)
        return b[1]

    def _write(self, register, value):
        b = self._register
        b[0] = register << 1
        b[1] = value
        self._cs(0)
        try:
            self._spi.write(b)
        finally:
            self._cs(1)

    def _write_fifo(self, buf, n):
        self._register[0] = _REG_FIFO_DATA << 1
        self._cs(0)
        try:
            self._spi.write(memoryview(self._register)[:1])
            self._spi.write(memoryview(buf)[:n])
        finally:
            self._cs(1)

    def _read_fifo(self):
        """Read the FIFO into the input buffer from index 1; its length."""
        n = self._read(_REG_FIFO_LEVEL) & 0x7F
        if n > 64:
            raise OSError(5, "MFRC522 bad FIFO level")
        addresses = self._addresses
        for i in range(n):
            addresses[i] = 0x80 | _REG_FIFO_DATA << 1
        addresses[n] = 0
        self._cs(0)
        try:
            self._spi.write_readinto(memoryview(addresses)[: n + 1], memoryview(self._in)[: n + 1])
        finally:
            self._cs(1)
        return n
