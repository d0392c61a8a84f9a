# The console as main.py sees it on a board: while main.py runs, the REPL is not reading, so what
# arrives on the USB serial port waits in the UART's buffer for `sys.stdin`, and Ctrl-C (the
# character set by micropython.kbd_intr) interrupts main.py. This port's `sys.stdin` reads Node's
# own stdin and cannot be replaced, so `sys` and `micropython` are replaced in sys.modules by
# stand-ins that serve these two things and pass everything else through.
import io
import sys

import _board
import micropython

# Looked up on the _board proxy once, as machine.py's: a lookup allocates, and a MemoryError in the VM's
# JavaScript glue leaves it spinning, where the board's C works on a full heap.
_host_console_read = _board.console_read
_host_kbd_intr = _board.kbd_intr

_POLLIN = 0x0001
_MP_STREAM_POLL = 3
# What the console holds for a reader that does not keep up. ESP32 port: mphalport.c's
# stdin_ringbuf_array[260] (py/ringbuf.h's ringbuf_put keeps one slot free: 259 bytes), filled by
# uart.c's RX interrupt, which drops a byte that finds it full, or by native USB's mp_usbd_cdc.c, which
# leaves it with the host until there is room (mcu.mjs's giveToMain).
_RX_BUFFER = 259


class _UartInput(io.IOBase):
    """What main.py reads as sys.stdin (and sys.stdin.buffer): bytes held for it, never blocking.

    A ring, as py/ringbuf.h's: taking bytes out moves an index; readinto() allocates nothing, read()
    only the bytes it returns (and the buffer it fills them from), as the ESP32's stream read does.
    The rest of the buffer is never copied: a reader draining it a byte at a time in one step would
    otherwise leave garbage quadratic in its length, which this VM collects only when the step returns
    (the ESP32 collects whenever an allocation fails), and run the ESP32's heap out where a board does not."""

    def __init__(self):
        self._ring = bytearray(_RX_BUFFER)
        self._start = 0  # where the oldest byte held is
        self._held = 0  # how many bytes are held
        self.buffer = self

    def room(self):
        return _RX_BUFFER - self._held

    def receive(self, data):
        ring = self._ring
        at = (self._start + self._held) % _RX_BUFFER
        for byte in data[: self.room()]:
            ring[at] = byte
            at = at + 1 if at + 1 < _RX_BUFFER else 0
        self._held = min(self._held + len(data), _RX_BUFFER)

    def ioctl(self, request, arg):
        if request == _MP_STREAM_POLL:
            return arg & _POLLIN if self._held else 0
        return 0

    def readinto(self, buf):
        n = min(len(buf), self._held)
        if n and self._held == _RX_BUFFER:
            _host_console_read()  # room at last for what native USB held back
        ring = self._ring
        at = self._start
        for i in range(n):
            buf[i] = ring[at]
            at = at + 1 if at + 1 < _RX_BUFFER else 0
        self._start = at
        self._held -= n
        return n

    def read(self, n=-1):
        n = self._held if n < 0 else min(n, self._held)
        data = bytearray(n)
        self.readinto(data)
        return bytes(data)


uart_input = _UartInput()
held = False  # main.py holds the console: the REPL is not running


class _Sys:
    def __getattr__(self, name):
        return getattr(sys, name)

    @property
    def stdin(self):
        return uart_input if held else sys.stdin


class _MicroPython:
    def __getattr__(self, name):
        return getattr(micropython, name)

    def kbd_intr(self, char):
        micropython.kbd_intr(char)
        _host_kbd_intr(char)  # mcu.mjs interrupts main.py on this character (-1: never)


sys.modules["sys"] = _Sys()
sys.modules["micropython"] = _MicroPython()
