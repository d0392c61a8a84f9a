"""Records on the USB serial link between the bridge board and the gateway: payload_codec's
bridge_link, byte for byte (the shared vectors hold both to it).

A record is `type | fields | CRC-16/CCITT-FALSE (LE)`, COBS-encoded, between 0x00 delimiters.
MicroPython has neither COBS nor binascii.crc_hqx, and both are a few lines: written here. The
record types, their layouts and codes are in link_contract.py, generated from payload_codec.
"""

import struct

from .link_contract import CRC_SIZE, MAX_ENCODED_SIZE, MAX_RECORD_SIZE


def crc16(data, n):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of data[:n]."""
    crc = 0xFFFF
    for i in range(n):
        crc ^= data[i] << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


class Writer:
    """Frames records into one buffer: `out` is what to write to the serial port."""

    def __init__(self):
        self.record = bytearray(MAX_RECORD_SIZE)  # fields are packed here, then framed into _out
        self._out = bytearray(MAX_ENCODED_SIZE + 2)
        self._view = memoryview(self._out)

    def frame(self, n):
        """The COBS framing of record[:n] (a CRC is appended), delimiters on both sides."""
        record = self.record
        struct.pack_into("<H", record, n, crc16(record, n))
        n += CRC_SIZE
        out = self._out
        out[0] = 0
        code_at = 1
        at = 2
        code = 1
        for i in range(n):
            byte = record[i]
            if byte:
                out[at] = byte
                at += 1
                code += 1
            if not byte or code == 0xFF:
                out[code_at] = code
                code_at = at
                at += 1
                code = 1
        out[code_at] = code
        out[at] = 0
        return self._view[: at + 1]


class Reader:
    """Gathers bytes from the serial port into records; damaged ones are counted and skipped."""

    def __init__(self):
        self._encoded = bytearray(MAX_ENCODED_SIZE)
        self._n = 0
        self._overflow = False
        self.record = bytearray(MAX_RECORD_SIZE)
        self.damaged = 0  # garbage, bad COBS, bad CRC or too long: what a noisy line or a reset gives

    def feed(self, byte):
        """Take one byte; the record's length when it completes a good one (in `record`), else 0."""
        if byte:
            if self._n < MAX_ENCODED_SIZE:
                self._encoded[self._n] = byte
                self._n += 1
            else:
                self._overflow = True
            return 0
        n, self._n = self._n, 0
        if self._overflow:
            self._overflow = False
            self.damaged += 1
            return 0
        if not n:
            return 0  # two delimiters in a row: nothing between them
        n = self._decode(n) - CRC_SIZE
        if n < 1 or crc16(self.record, n) != self.record[n] | self.record[n + 1] << 8:
            self.damaged += 1
            return 0
        return n

    def _decode(self, n):
        encoded, record = self._encoded, self.record
        at = 0
        size = 0
        while at < n:
            code = encoded[at]
            end = at + code
            if end > n or size + code > MAX_RECORD_SIZE + 1:
                return 0
            for i in range(at + 1, min(end, n)):
                record[size] = encoded[i]
                size += 1
            at = end
            if code != 0xFF and at < n:
                if size >= MAX_RECORD_SIZE:
                    return 0  # longer than any record: garbage
                record[size] = 0
                size += 1
        return size
