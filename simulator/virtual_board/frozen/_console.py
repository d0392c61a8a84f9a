# The console as main.py sees it on a board: while main.py runs, the REPL is not reading, so what
# arrives on the USB serial port waits in the UART's buffer for `sys.stdin`, and Ctrl-C (the
# character set by micropython.kbd_intr) interrupts main.py. This port's `sys.stdin` reads Node's
# own stdin and cannot be replaced, so `sys` and `micropython` are replaced in sys.modules by
# stand-ins that serve these two things and pass everything else through.
import io
import sys

import _board
import micropython

_POLLIN = 0x0001
_MP_STREAM_POLL = 3
# What the console's UART holds for a reader that does not keep up; the rest is lost. ESP32 port:
# mphalport.c's stdin_ringbuf_array[260], filled by uart.c's RX interrupt, which drops a byte when
# py/ringbuf.h's ringbuf_put finds it full (it keeps one slot free: 259 bytes).
_RX_BUFFER = 259


class _UartInput(io.IOBase):
    """What main.py reads as sys.stdin (and sys.stdin.buffer): bytes held for it, never blocking."""

    def __init__(self):
        self._held = bytearray()
        self.buffer = self

    def room(self):
        return _RX_BUFFER - len(self._held)

    def receive(self, data):
        room = self.room()
        self._held.extend(data[:room] if room < len(data) else data)

    def ioctl(self, request, arg):
        if request == _MP_STREAM_POLL:
            return arg & _POLLIN if self._held else 0
        return 0

    def readinto(self, buf):
        n = min(len(buf), len(self._held))
        buf[:n] = self._held[:n]
        self._held = self._held[n:]
        return n

    def read(self, n=-1):
        n = len(self._held) if n < 0 else min(n, len(self._held))
        data = bytes(self._held[:n])
        self._held = self._held[n:]
        return data


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
        _board.kbd_intr(char)  # mcu.mjs interrupts main.py on this character (-1: never)


sys.modules["sys"] = _Sys()
sys.modules["micropython"] = _MicroPython()
