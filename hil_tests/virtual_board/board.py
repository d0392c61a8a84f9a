"""The host side of the virtual board: its USB serial port (a pty) and its power.

The microcontroller is `mcu.mjs`: the real MicroPython VM under Node, whose console is its
stdin/stdout. `VirtualBoard` pumps bytes between that console and a pty, so that mpremote, pyserial
or a terminal reach it by a path like a real board's `/dev/ttyUSB0`. A reset (mpremote's
`soft-reset` or `reset`, `machine.reset()`, `VirtualBoard.reset()`) ends the Node process and
boots a fresh one over the same flash directory: new Python state, same files, as on an ESP32.
Opening or closing the port does not reset the board, and what it prints while nobody has the
port open is lost, as on a real one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import subprocess
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

MCU = Path(__file__).with_name("mcu.mjs")
REPOSITORY = Path(__file__).resolve().parents[2]
VM_PACKAGE = REPOSITORY / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

# Exit codes of mcu.mjs: how the next VM boots.
EXIT_SOFT_REBOOT_FRIENDLY = 40
EXIT_SOFT_REBOOT_RAW = 41
EXIT_MACHINE_RESET = 42
EXIT_NOT_INSTALLED = 43

# machine.reset_cause() values on ESP32.
PWRON_RESET = 1
HARD_RESET = 2
SOFT_RESET = 5  # what ESP32 reports after machine.reset() or a crash

_POLL_S = 0.05
_PANIC_PAUSE_S = 0.5  # keeps a VM that crashes at boot from spinning
_MAX_UNREAD = 1 << 16  # console output held for a slow reader, beyond which it is dropped


class VirtualBoardError(RuntimeError):
    """The virtual board cannot run here; the message says what to install or change."""


def check_vm_installed(node: str = "node") -> None:
    """Raise VirtualBoardError, saying what to install, if Node or the MicroPython VM is missing."""
    if shutil.which(node) is None:
        raise VirtualBoardError(f"the virtual board needs Node.js 20 or later: `{node}` is not on PATH")
    if not (VM_PACKAGE / "micropython.mjs").is_file():
        raise VirtualBoardError(f"the MicroPython VM is missing: run `npm install` in {REPOSITORY}")


class VirtualBoard:
    """A virtual ESP32 running MicroPython, reached over a pty at `port`, its flash kept in `flash`.

    Use it as a context manager (or call `start()` and `close()`):

        with VirtualBoard("/tmp/ttyBORNE0", tmp_path / "flash"):
            subprocess.run(["mpremote", "connect", "/tmp/ttyBORNE0", "fs", "ls"], check=True)
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        flash: str | os.PathLike[str],
        *,
        unique_id: bytes = b"\x24\x0a\xc4\x00\x00\x01",
        node: str = "node",
    ) -> None:
        self.port = Path(port)
        self.flash = Path(flash)
        self.unique_id = unique_id
        self.node = node
        self.boots = 0  # VMs started so far: each reset adds one
        self._reset_cause = PWRON_RESET  # kept by a soft reboot, as ESP32's hardware keeps it
        self._master = self._slave = -1
        self._mcu: subprocess.Popen[bytes] | None = None
        self._reset_requested = threading.Event()
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Power the board on: create the port and boot MicroPython (boot.py, then main.py)."""
        if self.port.is_symlink() and os.readlink(self.port).startswith("/dev/pts/"):
            self.port.unlink()  # left by a board that was not closed
        elif self.port.exists() or self.port.is_symlink():
            raise VirtualBoardError(f"{self.port} exists and is not a link to a pty: choose another --pty path")
        check_vm_installed(self.node)
        self.flash.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass as on a serial line
        self.port.symlink_to(os.ttyname(self._slave))
        # Only clients hold the slave open, so the master sees when nobody listens (POLLHUP).
        os.close(self._slave)
        os.set_blocking(self._master, False)
        self._boot(reset_cause=PWRON_RESET)
        self._pump = threading.Thread(target=self._run, name=f"virtual board {self.port}", daemon=True)
        self._pump.start()

    def reset(self) -> None:
        """Press the reset (EN) button: a fresh VM boots over the same flash."""
        self._reset_requested.set()

    def close(self) -> None:
        """Power the board off and remove its port."""
        self._stopping.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        self._halt()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        with contextlib.suppress(FileNotFoundError):
            self.port.unlink()

    def _boot(self, *, reset_cause: int, repl: str = "friendly", soft_reboot: bool = False) -> None:
        command = [self.node, str(MCU), "--flash", str(self.flash), "--reset-cause", str(reset_cause)]
        command += ["--repl", repl, "--unique-id", self.unique_id.hex()]
        if soft_reboot:
            command.append("--soft-reboot")
        # A session of its own: Ctrl-C in the terminal powers off the board, not just its VM.
        self._mcu = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPOSITORY, start_new_session=True
        )
        os.set_blocking(self._mcu.stdout.fileno(), False)
        os.set_blocking(self._mcu.stdin.fileno(), False)
        self.boots += 1
        self._reset_cause = reset_cause

    def _halt(self) -> None:
        if self._mcu is None:
            return
        self._mcu.kill()
        self._mcu.wait()
        for pipe in (self._mcu.stdin, self._mcu.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        self._mcu = None

    def _reboot_after(self, exit_code: int) -> None:
        """Boot the next VM as the ending one asked; a crash reboots like an ESP32 panic does."""
        self._halt()
        if exit_code == EXIT_NOT_INSTALLED:
            log.error("virtual board %s: the MicroPython VM is missing: run `npm install` in %s", self.port, REPOSITORY)
            self._stopping.set()
        elif exit_code in (EXIT_SOFT_REBOOT_FRIENDLY, EXIT_SOFT_REBOOT_RAW):
            # A soft reboot keeps the hardware's reset cause, and the REPL's mode.
            repl = "raw" if exit_code == EXIT_SOFT_REBOOT_RAW else "friendly"
            self._boot(reset_cause=self._reset_cause, repl=repl, soft_reboot=True)
        elif exit_code == EXIT_MACHINE_RESET:
            self._boot(reset_cause=SOFT_RESET)
        else:
            log.warning("virtual board %s: the VM stopped (exit code %s); rebooting it", self.port, exit_code)
            time.sleep(_PANIC_PAUSE_S)
            self._boot(reset_cause=SOFT_RESET)

    def _run(self) -> None:
        """Pump bytes between the port and the VM's console until closed; reboot the VM when it asks."""
        to_mcu = bytearray()
        to_port = bytearray()
        with selectors.DefaultSelector() as selector:
            while not self._stopping.is_set():
                if self._reset_requested.is_set():
                    self._reset_requested.clear()
                    self._halt()
                    to_mcu.clear()
                    self._boot(reset_cause=HARD_RESET)
                mcu = self._mcu
                assert mcu is not None and mcu.stdin is not None and mcu.stdout is not None
                port_events = selectors.EVENT_READ | (selectors.EVENT_WRITE if to_port else 0)
                selector.register(self._master, port_events, "port")
                selector.register(mcu.stdout, selectors.EVENT_READ, "console out")
                if to_mcu:
                    selector.register(mcu.stdin, selectors.EVENT_WRITE, "console in")
                ready = selector.select(_POLL_S)
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                for key, events in ready:
                    if key.data == "port":
                        if not self._exchange_with_port(events, to_mcu, to_port):
                            time.sleep(_POLL_S)  # nobody has the port open: no busy loop on POLLHUP
                    elif key.data == "console out":
                        output = os.read(mcu.stdout.fileno(), 4096)
                        if output:
                            to_port += output
                            del to_port[:-_MAX_UNREAD]
                        else:
                            self._reboot_after(mcu.wait())
                            to_mcu.clear()  # what arrived during the reboot is lost, as on a UART
                            break
                    elif key.data == "console in":
                        with contextlib.suppress(BlockingIOError, BrokenPipeError):
                            del to_mcu[: os.write(mcu.stdin.fileno(), to_mcu)]

    def _exchange_with_port(self, events: int, to_mcu: bytearray, to_port: bytearray) -> bool:
        """Move bytes over the pty; False, with pending output dropped, when nobody has the port open."""
        try:
            if events & selectors.EVENT_READ:
                to_mcu += os.read(self._master, 4096)
            if events & selectors.EVENT_WRITE and to_port:
                del to_port[: os.write(self._master, to_port)]
        except BlockingIOError:
            pass
        except OSError:  # EIO: the last client closed the port
            to_port.clear()
            return False
        return True
