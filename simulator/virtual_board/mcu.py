"""The host's side of the microcontroller, `mcu.mjs`: installing the VM, one run of it, and its control pipe.

A run is one Node process: the real MicroPython VM booting like an ESP32, its console on
stdin/stdout, and two pipes beside it (`messages.py` has what travels on them). It ends at any reset,
with an exit code that says how to boot the next run (`power.py` decides).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator.children import start_child
from simulator.virtual_board.messages import Control, Event, decode, encode

log = logging.getLogger(__name__)

MCU = Path(__file__).with_name("mcu.mjs")
# The VM is an npm package pinned by package.json and package-lock.json beside this file. A checkout
# installs it here (`make test` runs `npm ci` in this folder); an installed wheel's folder may not be
# writable, so `install_vm` puts it in the user's cache instead.
NPM_PROJECT = Path(__file__).parent
VM_NAME = "@micropython/micropython-webassembly-pyscript"
NPM_TIMEOUT_S = 600

# Exit codes of mcu.mjs: how the next VM boots.
EXIT_SOFT_REBOOT_FRIENDLY = 40
EXIT_SOFT_REBOOT_RAW = 41
EXIT_MACHINE_RESET = 42
EXIT_NOT_INSTALLED = 43
EXIT_DEEPSLEEP = 44

MCUS = ("esp32", "esp32s3")  # the profiles' MCUs: mcu.mjs gives each its Python heap
CONSOLES = ("uart", "usb")  # the profiles' consoles: a USB-UART bridge on UART0, or the ESP32-S3's native USB

_ACK_TIMEOUT_S = 5  # for the VM to apply a control message (it may be busy or rebooting)


class VirtualBoardError(RuntimeError):
    """The virtual board cannot run here; the message says what to install or change."""


def vm_cache() -> Path:
    """Where `install_vm` puts the VM when the package's own folder cannot hold it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "borne" / "micropython-vm"


def vm_entry() -> Path | None:
    """The VM's JavaScript entry point, beside this package (a checkout) or in the user's cache."""
    for project in (NPM_PROJECT, vm_cache()):
        entry = project / "node_modules" / VM_NAME / "micropython.mjs"
        if entry.is_file():
            return entry
    return None


def check_vm_installed(node: str = "node") -> None:
    """Raise VirtualBoardError, saying what to install, if Node or the MicroPython VM is missing."""
    if shutil.which(node) is None:
        raise VirtualBoardError(f"the virtual board needs Node.js 20 or later: `{node}` is not on PATH")
    if vm_entry() is None:
        raise VirtualBoardError(
            f"the MicroPython VM is missing: run `npm ci` in {NPM_PROJECT}, or let `borne sim board` or "
            f"`borne demo` install it in {vm_cache()} (they need npm)"
        )


def install_vm(node: str = "node") -> None:
    """Install the pinned MicroPython VM with npm into the user's cache if it is not there yet.

    For an installed `borne`: the package's folder holds the pins (package-lock.json) but may not be
    writable. Says what it does on stderr: npm takes a while on a first run."""
    if shutil.which(node) is None or vm_entry() is not None:
        check_vm_installed(node)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise VirtualBoardError("the MicroPython VM is missing and npm is not on PATH: install npm (apt install npm)")
    target = vm_cache()
    target.mkdir(parents=True, exist_ok=True)
    for pins in ("package.json", "package-lock.json"):
        shutil.copyfile(NPM_PROJECT / pins, target / pins)
    print(f"installing the MicroPython VM ({VM_NAME}) with npm into {target}", file=sys.stderr, flush=True)
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    # npm stays in the terminal's process group: its own children, whom the parent-death signal does
    # not reach, stop with it on Ctrl-C.
    with start_child(
        command, cwd=target, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=False
    ) as npm_ci:
        try:
            _, errors = npm_ci.communicate(timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            npm_ci.kill()
            raise VirtualBoardError(f"npm did not finish installing the MicroPython VM in {NPM_TIMEOUT_S} s") from None
    if npm_ci.returncode != 0:
        raise VirtualBoardError(f"npm could not install the MicroPython VM: {errors.strip()[-500:]}")
    check_vm_installed(node)


@dataclass(frozen=True)
class Silicon:
    """What stays the same from run to run: where the flash and state live, the chip's identity."""

    flash: Path
    state: Path
    unique_id: bytes
    node: str = "node"
    mcu: str | None = "esp32"  # the profile's MCU, "esp32" or "esp32s3": its Python heap (mcu.mjs); None: unlimited
    console: str = "uart"  # the profile's console, "uart" or "usb": how main.py's input is fed (mcu.mjs)


class Mcu:
    """One run of mcu.mjs: the Node process, and the two pipes beside its console."""

    def __init__(self, process: subprocess.Popen[bytes], control: int, events: int) -> None:
        self.process = process
        self.control = control  # host -> VM: control messages
        self.events = events  # VM -> host: events
        self._unread_events = b""

    @classmethod
    def start(
        cls,
        silicon: Silicon,
        *,
        reset_cause: int,
        repl: str,
        soft_reboot: bool,
        world: Sequence[Control],
    ) -> Mcu:
        """Boot a VM over the flash, into `world` (the control messages that describe what it finds at
        power-on), its REPL in mode `repl` ("friendly" or "raw"); `soft_reboot` prints MicroPython's banner."""
        control_out, control_in = os.pipe()
        events_out, events_in = os.pipe()
        world_lines = "\n".join(encode(message) for message in world)
        command = [silicon.node, str(MCU), "--flash", str(silicon.flash), "--state", str(silicon.state)]
        command += ["--reset-cause", str(reset_cause), "--repl", repl, "--unique-id", silicon.unique_id.hex()]
        command += ["--mcu", silicon.mcu or "none", "--console", silicon.console]
        command += ["--world", world_lines, "--control", str(control_out), "--events", str(events_in)]
        if soft_reboot:
            command.append("--soft-reboot")
        entry = vm_entry()
        if entry is not None:
            command += ["--vm", str(entry)]
        # A session of its own, as every child has (children.py): Ctrl-C in the terminal powers off
        # the board, not just its VM.
        process = start_child(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=NPM_PROJECT,
            pass_fds=(control_out, events_in),
        )
        os.close(control_out)
        os.close(events_in)
        mcu = cls(process, control_in, events_out)
        for fd in (mcu.stdout, mcu.stdin, events_out):
            os.set_blocking(fd, False)
        return mcu

    @property
    def stdin(self) -> int:
        assert self.process.stdin is not None
        return self.process.stdin.fileno()

    @property
    def stdout(self) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    def send(self, message: Control, seq: int) -> None:
        """Write a control message on the pipe; OSError if the VM has ended."""
        os.write(self.control, (encode(message, seq) + "\n").encode())

    def read_events(self) -> list[Event]:
        """The events the VM has written since the last call (complete lines only)."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.events, 4096):
                self._unread_events += chunk
        *lines, self._unread_events = self._unread_events.split(b"\n")
        events = []
        for line in lines:
            try:
                event = decode(line)
            except ValueError:
                event = None
            if isinstance(event, Event):
                events.append(event)
            else:
                log.warning("virtual board: the VM reported %r, which is no event", line)
        return events

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        for fd in (self.control, self.events):
            with contextlib.suppress(OSError):
                os.close(fd)


class ControlLink:
    """The control pipe of whichever VM runs: sends each change of the world outside the chip and waits
    until the VM has applied it.

    A change and the boot of a VM exclude each other, so every VM either boots into a change or is
    sent it: `tell` applies the change to the host's description under the link's lock, and
    `connect` takes that description and starts the VM under the same lock."""

    def __init__(self, name: str) -> None:
        self.name = name  # for log messages: the board's port
        self._lock = threading.Condition()
        self._mcu: Mcu | None = None
        self._connections = 0  # VMs connected so far: an ack is not awaited from one that ended
        self._sent = self._acked = 0

    def tell(self, change: Callable[[], Control | None]) -> None:
        """Apply `change` (which returns the control message that says it, or None) and send that
        message to the running VM; return once it has applied it, or it ended, or after a warning."""
        with self._lock:
            message = change()
            if message is None or self._mcu is None:
                return  # asleep or off: the next VM boots into the change
            self._sent += 1
            sent, connections = self._sent, self._connections
            try:
                self._mcu.send(message, sent)
            except OSError:
                return  # the VM has just ended: the next one boots into the change
            applied = self._lock.wait_for(
                lambda: self._acked >= sent or self._connections != connections, _ACK_TIMEOUT_S
            )
        if not applied:
            log.warning("virtual board %s: the VM is busy and has not applied %s yet", self.name, message)

    def connect(self, start: Callable[[], Mcu]) -> Mcu:
        """Start a VM with `start` (which reads the host's description of the world) and send it what changes next."""
        with self._lock:
            self._mcu = start()
            self._connections += 1
            self._lock.notify_all()
            return self._mcu

    def disconnect(self) -> None:
        """The VM has ended: nobody waits for its acknowledgements any longer."""
        with self._lock:
            self._mcu = None
            self._connections += 1
            self._lock.notify_all()

    def acknowledged(self, seq: int) -> None:
        with self._lock:
            self._acked = max(self._acked, seq)
            self._lock.notify_all()
