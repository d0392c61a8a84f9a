# ESP32's `cryptolib` (MicroPython's extmod/modcryptolib.c), with AES computed by the host.
# ESP32 builds enable ECB and CBC, not CTR (MICROPY_PY_CRYPTOLIB_CTR), nor the MODE_* constants.
# Arguments are checked in the order, and with the errors, of modcryptolib.c.
from binascii import hexlify

import _board
from uctypes import addressof

# Looked up on the _board proxy once, as machine.py's: a lookup allocates, and a MemoryError in the VM's
# JavaScript glue leaves it spinning, where the board's C works on a full heap.
_host_aes = _board.aes

_MODE_ECB = 1
_MODE_CBC = 2
_ENCRYPTING = 1
_DECRYPTING = 2


# Tuples built once: `isinstance(x, (a, b))` would build one at each call, where the C allocates nothing.
_BUFFERS = (bytes, bytearray, memoryview)
_WRITABLE = (bytearray, memoryview)


def _buffer(obj):
    if isinstance(obj, str):
        return obj.encode()
    if isinstance(obj, _BUFFERS):
        return obj
    raise TypeError("object with buffer protocol required")


class aes:  # MicroPython's name
    def __init__(self, *args, **kwargs):
        # MicroPython's constructor takes positional arguments only: aes(key, mode[, IV]).
        if kwargs:
            raise TypeError("function doesn't take keyword arguments")
        if len(args) < 2:
            raise TypeError(f"function missing {2 - len(args)} required positional arguments")
        if len(args) > 3:
            raise TypeError(f"function expected at most 3 arguments, got {len(args)}")
        key, mode = args[0], args[1]
        iv = args[2] if len(args) > 2 else None
        if not isinstance(mode, int):
            raise TypeError(f"can't convert {type(mode).__name__} to int")
        if mode not in (_MODE_ECB, _MODE_CBC):
            raise ValueError("mode")
        key = _buffer(key)
        if len(key) not in (16, 32):
            raise ValueError("key")
        if iv is not None:
            iv = _buffer(iv)
            if len(iv) != 16:
                raise ValueError("IV")
        elif mode == _MODE_CBC:
            raise ValueError("IV")
        self._key = hexlify(key).decode()
        self._mode = mode
        self._iv = bytearray(iv or 16)  # CBC's chaining value, carried from one call to the next (aes.mjs)
        self._direction = None  # the first call fixes it: the key schedule differs

    def encrypt(self, in_buf, out_buf=None):
        return self._process(in_buf, out_buf, _ENCRYPTING)

    def decrypt(self, in_buf, out_buf=None):
        return self._process(in_buf, out_buf, _DECRYPTING)

    def _process(self, in_buf, out_buf, direction):
        data = _buffer(in_buf)
        length = len(data)
        if length % 16:
            raise ValueError("blksize % 16")
        if out_buf is not None:
            if not isinstance(out_buf, _WRITABLE):
                raise TypeError("object with buffer protocol required")
            if len(out_buf) < length:
                raise ValueError("output too small")
        if self._direction is None:
            self._direction = direction
        elif self._direction != direction:
            raise ValueError("can't encrypt & decrypt")
        out = bytearray(length) if out_buf is None else out_buf  # as the C: a new buffer only when none is given
        if length:
            result = _host_aes(
                self._key,
                self._mode,
                addressof(self._iv),
                addressof(data),
                addressof(out),
                length,
                direction == _ENCRYPTING,
            )
            if result < 0:
                raise OSError(-result)
        return bytes(out) if out_buf is None else out_buf
