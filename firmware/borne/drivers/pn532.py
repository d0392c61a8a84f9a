# NXP PN532 NFC reader on I2C: reads the UID and type of the ISO 14443A badge in its field.
# Every exchange is a frame with length and data checksums, acknowledged by the reader (ACK frame)
# before its answer; on I2C, each read starts with a status byte, 0x01 once the answer is ready.
import time

from micropython import const

from borne.drivers.iso14443a import tag_type

_PREAMBLE_LEN = const(5)  # 00 00 FF LEN LCS
_HOST_TO_PN532 = const(0xD4)
_PN532_TO_HOST = const(0xD5)
_CMD_GET_FIRMWARE_VERSION = const(0x02)
_CMD_SAM_CONFIGURATION = const(0x14)
_CMD_RF_CONFIGURATION = const(0x32)
_CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
_RF_MAX_RETRIES = const(0x05)
_BAUD_106_TYPE_A = const(0x00)
_READY = const(0x01)
_ACK_MS = const(20)
_ANSWER_MS = const(200)  # InListPassiveTarget with a few activation retries is done well within this
_MAX_FRAME = const(48)  # the longest answer we ask for: a 10-byte UID with its ATS

ADDRESS = const(0x24)
_ACK = b"\x00\x00\xff\x00\xff\x00"


class PN532:
    """A PN532 on `i2c`: `PN532(i2c).read_badge()` -> (uid, tag type) or None.

    A reader that does not answer raises OSError(ENODEV); a damaged frame (bad checksum, no ACK, an
    error frame) raises OSError(EIO); callers count both as reader errors."""

    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._address = address
        self._frame = bytearray(_PREAMBLE_LEN + 2 + 4 + 2)  # the longest command we send
        self._in = bytearray(1 + _MAX_FRAME)  # status byte, then the frame
        self._in_view = memoryview(self._in)
        self.configure()

    def configure(self):
        """Normal SAM mode, and few activation retries, so that polling with no badge returns at once."""
        self._command(_CMD_SAM_CONFIGURATION, b"\x01\x14\x00")
        self._command(_CMD_RF_CONFIGURATION, bytes((_RF_MAX_RETRIES, 0xFF, 0x01, 0x02)))

    def firmware_version(self):
        """(IC, version, revision, support) as the reader reports it: IC is 0x32 for a PN532."""
        answer = self._command(_CMD_GET_FIRMWARE_VERSION)
        if len(answer) < 4:
            raise OSError(5, "PN532 short answer")
        return answer[0], answer[1], answer[2], answer[3]

    def read_badge(self):
        """The badge in the field, as (uid bytes, tag type), or None if there is none."""
        a = self._command(_CMD_IN_LIST_PASSIVE_TARGET, bytes((1, _BAUD_106_TYPE_A)))
        if len(a) < 1 or a[0] == 0:
            return None
        # NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID...
        if len(a) < 6 or len(a) < 6 + a[5] or a[5] not in (4, 7, 10):
            raise OSError(5, "PN532 bad target")
        return bytes(a[6 : 6 + a[5]]), tag_type(a[2] << 8 | a[3], a[4])

    def _command(self, command, params=b""):
        """Send a command frame, check its ACK, return the answer's data (after TFI and CMD+1)."""
        frame = self._frame
        n = len(params) + 2  # TFI, command, params
        frame[0:3] = b"\x00\x00\xff"
        frame[3] = n
        frame[4] = -n & 0xFF
        frame[5] = _HOST_TO_PN532
        frame[6] = command
        checksum = _HOST_TO_PN532 + command
        for i, byte in enumerate(params):
            frame[7 + i] = byte
            checksum += byte
        frame[5 + n] = -checksum & 0xFF
        frame[6 + n] = 0
        self._i2c.writeto(self._address, memoryview(frame)[: 7 + n])
        ack = self._read_ready(len(_ACK), _ACK_MS)
        for i in range(len(_ACK)):
            if ack[i] != _ACK[i]:
                raise OSError(5, "PN532 no ACK")
        a = self._read_ready(_MAX_FRAME, _ANSWER_MS)
        length = a[3]
        if a[0] or a[1] or a[2] != 0xFF or (length + a[4]) & 0xFF or 6 + length > len(a):
            raise OSError(5, "PN532 bad frame")
        if sum(a[5 : 6 + length]) & 0xFF:
            raise OSError(5, "PN532 bad checksum")
        if length < 2 or a[5] != _PN532_TO_HOST or a[6] != command + 1:
            raise OSError(5, "PN532 error frame")  # 00 00 FF 01 FF 7F 81 00: the reader refused the command
        return a[7 : 5 + length]

    def _read_ready(self, n, timeout_ms):
        """Poll the status byte until the reader is ready, then return the `n` bytes after it."""
        view = self._in_view[: 1 + n]
        start = time.ticks_ms()
        while True:
            # The time is read before the status: a task held up between the two still looks once past the deadline.
            late = time.ticks_diff(time.ticks_ms(), start) > timeout_ms
            self._i2c.readfrom_into(self._address, view)
            if view[0] == _READY:
                return view[1:]
            if late:
                raise OSError(110, "PN532 not ready")  # ETIMEDOUT
            time.sleep_ms(1)
