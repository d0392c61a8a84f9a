"""The board's USB serial port: a pty linked at a path of your choice, the bytes pumped between it and
the VM's console, and the raw REPL as `mpremote exec` drives it.

Opening or closing the port does not reset the board. What it prints while nobody has the port open
is lost, as on a real one, except on a native USB console, which keeps the latest for the next host.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
import tty
from pathlib import Path

import serial

from simulator.virtual_board.mcu import Mcu, VirtualBoardError

_POLL_S = 0.05
_MAX_UNREAD = 1 << 16  # console output held for a slow reader, beyond which it is dropped
# What the board's console keeps of its output while no host has the port open. UART: nothing, it goes
# out on the wire. Native USB: MicroPython writes it into TinyUSB's transmit FIFO, "expecting it to
# overwrite old data so it will have latest data buffered when host connects" (ports/esp32 v1.27,
# shared/tinyusb/mp_usbd_cdc.c), whose size is CFG_TUD_CDC_TX_BUFSIZE, 256 at full speed (tusb_config.h).
KEPT_WHILE_CLOSED = {"uart": 0, "usb": 256}
RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
# A board still starting after a reset may take the interrupt before its firmware runs, then run it and
# never answer: `exec` asks for the raw REPL again this often until it answers (a raw REPL that already
# answered takes the request again harmlessly: Ctrl-C clears its line, Ctrl-A starts it afresh).
_RAW_REPL_RETRY_S = 5.0


class BoardExecError(Exception):
    """Code run by `VirtualBoard.exec` raised on the board; the message is MicroPython's traceback."""

    def __init__(self, traceback: str, output: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback
        self.output = output  # what the code printed before it raised


class Console:
    """The pty at `port` and the bytes on their way between it and the VM's console (stdin/stdout)."""

    def __init__(self, port: Path, kind: str = "uart") -> None:
        self.port = port
        self.kind = kind  # the profile's console, "uart" or "usb"
        self._master = -1
        self._pty = ""  # the pty's own name, which `port` links to
        self._to_mcu = bytearray()
        self._to_port = bytearray()
        self._port_closed_at: float | None = None  # when the port was last found with nobody holding it
        self._unplugged = False  # a native USB port gone from the host while the chip deep sleeps

    def open(self) -> None:
        """Create the pty and link it at `port`."""
        if self.port.is_symlink() and os.readlink(self.port).startswith("/dev/pts/"):
            if self.port.exists():  # its pty is open: another board runs there
                raise VirtualBoardError(
                    f"{self.port} is the port of a virtual board that is running ({os.readlink(self.port)}): "
                    "stop that board, or choose another --pty path"
                )
            self.port.unlink()  # left by a board that was not closed
        elif self.port.exists() or self.port.is_symlink():
            raise VirtualBoardError(f"{self.port} exists and is not a link to a pty: choose another --pty path")
        self._master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as on a serial line
        self._pty = os.ttyname(slave)
        self.port.symlink_to(self._pty)
        # Only clients hold the slave open, so the master sees when nobody listens (POLLHUP).
        os.close(slave)
        os.set_blocking(self._master, False)

    def close(self) -> None:
        """Remove the port."""
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        self._unplugged = False
        with contextlib.suppress(OSError):  # gone already, or not a link
            if os.readlink(self.port) == self._pty:  # still ours: a board started after a crash may own it
                self.port.unlink()

    def show(self, text: bytes) -> None:
        """Print what ESP-IDF prints (the VM never sees it), such as the watchdog's message: on UART0, its
        console (ports/esp32/boards/sdkconfig.base keeps ESP-IDF's default), which a native USB port never carries."""
        if self.kind == "uart":
            self._to_port += text

    def replug(self) -> None:
        """The chip reset or woke from deep sleep: a native USB port leaves the host with its USB device
        and comes back as a new one (a new pty at the same path), so a host that held it open must open
        it again, as with a real /dev/ttyACM0; what it sent the board is lost. A USB-UART bridge stays."""
        if self.kind == "usb" and (self._master >= 0 or self._unplugged):
            self.unplug()
            self._unplugged = False
            self.open()

    def unplug(self) -> None:
        """The chip went to deep sleep: a native USB port leaves the host until the chip wakes or resets
        ("If the application enters Deep-sleep mode, the USB Serial/JTAG device will disappear from the
        system", ESP-IDF's USB Serial/JTAG console guide, Limitations; the S3's USB OTG, which MicroPython
        uses, sleeps with the same digital domain). The path is gone meanwhile. A USB-UART bridge stays."""
        if self.kind == "usb" and self._master >= 0:
            with contextlib.suppress(OSError):  # what the board sent before it went is on its way to the host
                os.write(self._master, self._to_port)
            self.close()
            self._unplugged = True
            self._to_mcu.clear()
            self._to_port.clear()
            self._port_closed_at = None

    def drop_input(self) -> None:
        """Lose what arrived for the VM, as a UART does while its chip reboots or sleeps."""
        self._to_mcu.clear()

    def watch(self, selector: selectors.BaseSelector, mcu: Mcu | None) -> None:
        """Register what is to be pumped now: the port, and the console of the running VM, if any."""
        # A port nobody holds signals POLLHUP at once: look at it again only after _POLL_S, and
        # meanwhile keep serving the VM (its radio, pins and watchdog cannot wait).
        if self._master < 0:
            pass  # no port: a native USB console while the chip deep sleeps
        elif self._port_closed_at is None or time.monotonic() - self._port_closed_at >= _POLL_S:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._to_port else 0)
            selector.register(self._master, events, self.pump_port)
        if mcu is not None:
            selector.register(mcu.stdout, selectors.EVENT_READ, self.pump_output)
            if self._to_mcu:
                selector.register(mcu.stdin, selectors.EVENT_WRITE, self.pump_input)

    def pump_port(self, events: int, mcu: Mcu | None) -> bool:
        """Move bytes over the pty; what the VM printed is dropped while nobody has the port open (but
        the latest, on a native USB console)."""
        try:
            if events & selectors.EVENT_READ:
                self._to_mcu += os.read(self._master, 4096)
            if events & selectors.EVENT_WRITE and self._to_port:
                del self._to_port[: os.write(self._master, self._to_port)]
        except BlockingIOError:
            pass
        except OSError:  # EIO: the last client closed the port
            del self._to_port[: max(len(self._to_port) - KEPT_WHILE_CLOSED[self.kind], 0)]
            self._port_closed_at = time.monotonic()
            return True
        self._port_closed_at = None
        return True

    def pump_output(self, events: int, mcu: Mcu | None) -> bool:
        """Take what the VM printed; False when its console closed: the VM has ended."""
        assert mcu is not None
        output = os.read(mcu.stdout, 4096)
        if not output:
            return False
        self._to_port += output
        del self._to_port[:-_MAX_UNREAD]
        return True

    def pump_input(self, events: int, mcu: Mcu | None) -> bool:
        """Give the VM what arrived on the port."""
        assert mcu is not None
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            del self._to_mcu[: os.write(mcu.stdin, self._to_mcu)]
        return True

    def exec(self, code: str, timeout: float = 30, *, soft_reset: bool = False) -> str:
        """Run `code` through the board's raw REPL, as `mpremote exec` does, and return what it printed.

        With `soft_reset`, the board soft-resets first (fresh Python state, boot.py runs, main.py
        does not), as mpremote does unless told `resume`. Raises BoardExecError, carrying the
        traceback, if the code raised; TimeoutError if it did not finish within `timeout` seconds.
        Leaves the board in the friendly REPL. Nobody else may have the port open meanwhile."""
        deadline = time.monotonic() + timeout

        def read_until(console: serial.Serial, marker: bytes) -> bytes:
            console.timeout = max(deadline - time.monotonic(), 0)
            data = console.read_until(marker)
            if not data.endswith(marker):
                console.write(b"\x03\x02")  # interrupt the code, if it yields, and leave the raw REPL
                printed = data.decode(errors="replace")
                raise TimeoutError(f"the board did not finish within {timeout} s; it printed: {printed!r}")
            return data[: -len(marker)]

        def enter_raw_repl(console: serial.Serial) -> None:
            printed = b""
            while not printed.endswith(RAW_REPL_BANNER):
                left = deadline - time.monotonic()
                if left <= 0:
                    console.write(b"\x02")
                    shown = printed.decode(errors="replace")
                    raise TimeoutError(f"the board did not answer within {timeout} s; it printed: {shown!r}")
                console.write(b"\r\x03\x03\x01")  # interrupt the friendly REPL's input, enter the raw REPL
                console.timeout = min(left, _RAW_REPL_RETRY_S)
                printed += console.read_until(RAW_REPL_BANNER)

        with serial.Serial(str(self.port), 115200, timeout=timeout) as console:
            enter_raw_repl(console)
            if soft_reset:
                console.write(b"\x04")
                read_until(console, RAW_REPL_BANNER)
            console.write((code or "pass").encode() + b"\x04")  # an empty one would soft-reset
            read_until(console, b"OK")
            output = read_until(console, b"\x04").decode(errors="replace")
            error = read_until(console, b"\x04>").decode(errors="replace")
            console.write(b"\x02")  # back to the friendly REPL, from which a soft reset runs main.py
        if error:
            raise BoardExecError(error, output)
        return output
