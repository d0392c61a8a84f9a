"""The host side of the virtual board: its USB serial port (a pty), its power, and the world around it.

The microcontroller is `mcu.mjs`: the real MicroPython VM under Node, whose console is its
stdin/stdout. `VirtualBoard` pumps bytes between that console and a pty, so that mpremote, pyserial
or a terminal reach it by a path like a real board's `/dev/ttyUSB0`. A reset (mpremote's
`soft-reset` or `reset`, `machine.reset()`, `VirtualBoard.reset()`, the watchdog, a wake from deep
sleep) ends the Node process and boots a fresh one over the same flash directory: new Python state,
same files, as on an ESP32. Opening or closing the port does not reset the board, and what it prints
while nobody has the port open is lost, as on a real one.

Beside the console, two pipes link the VM to this side, which plays what is outside the chip: the
levels on input pins and the voltages on ADC pins (set by the tests), the watchdog's clock, the
power that RTC memory needs, the timer that wakes the chip from deep sleep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import shutil
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import serial

if TYPE_CHECKING:
    from simulator.virtual_board.medium import RadioMedium

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

# machine.reset_cause() values on ESP32.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5  # what ESP32 reports after machine.reset() or a crash

RTC_MEMORY_FILE = "rtc_memory.bin"  # in the state directory, while the power is on
NVS_FILE = "nvs.json"  # in the state directory: the NVS partition, committed values only

_POLL_S = 0.05
_PANIC_PAUSE_S = 0.5  # keeps a VM that crashes at boot from spinning
_MAX_UNREAD = 1 << 16  # console output held for a slow reader, beyond which it is dropped
_REQUEST_TIMEOUT_S = 10  # for the pump to act on reset() or power_cycle()
_ACK_TIMEOUT_S = 5  # for the VM to apply a pin level or ADC voltage (it may be busy or rebooting)
_RADIO_EVENT_AGE_S = 1  # older radio events are taken as of when they are read
_RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
_WDT_MESSAGE = b"\r\nE (0) task_wdt: Task watchdog got triggered: mpy_machine_wdt was not fed in time\r\n"


class VirtualBoardError(RuntimeError):
    """The virtual board cannot run here; the message says what to install or change."""


class BoardExecError(Exception):
    """Code run by `VirtualBoard.exec` raised on the board; the message is MicroPython's traceback."""

    def __init__(self, traceback: str, output: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback
        self.output = output  # what the code printed before it raised


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
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise VirtualBoardError(f"npm did not finish installing the MicroPython VM in {NPM_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise VirtualBoardError(f"npm could not install the MicroPython VM: {done.stderr.strip()[-500:]}")
    check_vm_installed(node)


class _Mcu:
    """One run of mcu.mjs: the Node process, and the two pipes beside its console."""

    def __init__(self, process: subprocess.Popen[bytes], control: int, events: int) -> None:
        self.process = process
        self.control = control  # host -> VM: JSON lines (pin levels, ADC voltages)
        self.events = events  # VM -> host: text lines (watchdog, deep sleep, output pins, acks)
        self.unread_events = b""

    @property
    def stdin(self) -> int:
        assert self.process.stdin is not None
        return self.process.stdin.fileno()

    @property
    def stdout(self) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    def read_events(self) -> list[str]:
        """The complete lines the VM has written so far."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.events, 4096):
                self.unread_events += chunk
        *lines, self.unread_events = self.unread_events.split(b"\n")
        return [line.decode() for line in lines]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        for fd in (self.control, self.events):
            with contextlib.suppress(OSError):
                os.close(fd)


class VirtualBoard:
    """A virtual ESP32 running MicroPython, reached over a pty at `port`, its flash kept in `flash`.

    Use it as a context manager (or call `start()` and `close()`):

        with VirtualBoard("/tmp/ttyBORNE0", tmp_path / "flash") as board:
            subprocess.run(["mpremote", "connect", "/tmp/ttyBORNE0", "fs", "ls"], check=True)
            board.set_pin(0, 0)  # press the button on GPIO0
            print(board.exec("import machine; print(machine.Pin(0).value())"))

    `state` (default: beside `flash`, named `<flash>.state`) holds the NVS partition and, while the
    board has power, its RTC memory.

    `radio` is the LoRa chip micropython-lib's `lora` finds on the board: "sx1276", "sx1262" or None;
    a board on a `medium` (a `RadioMedium` shared with other boards) has an SX1276 unless told.
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        flash: str | os.PathLike[str],
        *,
        state: str | os.PathLike[str] | None = None,
        unique_id: bytes = b"\x24\x0a\xc4\x00\x00\x01",
        node: str = "node",
        radio: str | None = None,
        medium: RadioMedium | None = None,
    ) -> None:
        self.port = Path(port)
        self.flash = Path(flash)
        self.state = Path(state) if state is not None else self.flash.with_name(self.flash.name + ".state")
        self.unique_id = unique_id
        self.node = node
        if radio is None and medium is not None:
            radio = "sx1276"
        if radio not in (None, "sx1276", "sx1262"):
            raise ValueError(f"radio {radio!r}: the virtual board has an 'sx1276', an 'sx1262' or None")
        self.radio = radio
        self.medium = medium
        self.boots = 0  # VMs started so far: each reset adds one
        self._reset_cause = PWRON_RESET  # kept by a soft reboot, as ESP32's hardware keeps it
        self._master = self._slave = -1
        self._mcu: _Mcu | None = None
        self._requests: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None
        # The world outside the chip, set by the tests and handed to every VM that boots.
        self._pins: dict[int, int] = {}
        self._adc: dict[int, int] = {}
        self._outputs: dict[int, int] = {}  # levels the board drives
        self._air: dict[str, float] = {}  # what the board's sensors measure (i2c_bus.py has the defaults)
        self._i2c: dict[str, dict] = {}  # the chips on the I2C lines, by "SDA/SCL/ADDRESS"
        self._spi: dict[str, dict] = {}  # the chips on SPI lines, by "SCK/MOSI/MISO/CS"
        self._changed = threading.Condition()  # guards the above, the VM's control pipe, and acks
        self._sent = self._acked = 0
        # Watchdog (which only a soft reboot leaves running) and deep sleep, on the host's clock.
        self._wdt_timeout_s: float | None = None
        self._wdt_deadline: float | None = None
        self._sleep_ms = 0
        self._wake_at: float | None = None

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def reset_cause(self) -> int:
        """What `machine.reset_cause()` returns on the VM booted last (set as it starts, before boot.py)."""
        return self._reset_cause

    @property
    def asleep(self) -> bool:
        """True while the board is in deep sleep."""
        return self._pump is not None and self._mcu is None and not self._stopping.is_set()

    def start(self) -> None:
        """Power the board on: create the port and boot MicroPython (boot.py, then main.py)."""
        if self.port.is_symlink() and os.readlink(self.port).startswith("/dev/pts/"):
            self.port.unlink()  # left by a board that was not closed
        elif self.port.exists() or self.port.is_symlink():
            raise VirtualBoardError(f"{self.port} exists and is not a link to a pty: choose another --pty path")
        check_vm_installed(self.node)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass as on a serial line
        self.port.symlink_to(os.ttyname(self._slave))
        # Only clients hold the slave open, so the master sees when nobody listens (POLLHUP).
        os.close(self._slave)
        os.set_blocking(self._master, False)
        self._lose_power()  # RTC memory from an earlier run is gone
        self._boot(reset_cause=PWRON_RESET)
        self._pump = threading.Thread(target=self._run, name=f"virtual board {self.port}", daemon=True)
        self._pump.start()

    def reset(self) -> None:
        """Press the reset (EN) button: a fresh VM boots over the same flash, with HARD_RESET as its cause.

        RTC memory and committed NVS values are kept; returns once the new VM is started."""
        self._request("reset")

    def power_cycle(self) -> None:
        """Cut the power and restore it: RAM, RTC memory, uncommitted NVS writes and the watchdog are
        lost; files and committed NVS values are kept; the board boots with PWRON_RESET."""
        self._request("power cycle")

    def set_pin(self, pin: int, level: int | None) -> None:
        """Drive GPIO `pin` from outside the board: high (1), low (0), or not at all (None).

        What a `Pin` configured as an input then reads; its IRQ handler has run when this returns
        (unless the VM is busy, rebooting or asleep: it reads the level when it next can)."""
        with self._changed:
            if level is None:
                self._pins.pop(pin, None)
            else:
                self._pins[pin] = 1 if level else 0
        self._tell_vm({"pin": pin, "level": None if level is None else self._pins[pin]})

    def set_adc(self, pin: int, microvolts: int) -> None:
        """Apply `microvolts` to ADC pin `pin`: what `ADC(Pin(pin)).read_uv()` then returns."""
        with self._changed:
            self._adc[pin] = int(microvolts)
        self._tell_vm({"adc": pin, "uv": int(microvolts)})

    def wire_i2c(self, kind: str, address: int, *, sda: int, scl: int, **state: object) -> None:
        """Wire a chip to the I2C lines on GPIOs `sda` and `scl`: `kind` is "bme280", "scd4x" or "pn532".

        `state` is the model's, e.g. `interval_ms=0` for an SCD4x that measures without waiting 5 s."""
        with self._changed:
            self._i2c[f"{sda}/{scl}/{address}"] = {"kind": kind, "answering": True, "corrupt": 0, **state}
        self._tell_i2c()

    def unwire_i2c(self, address: int) -> None:
        """Take the chip at `address` off its I2C lines."""
        with self._changed:
            del self._i2c[self._i2c_key(address)]
        self._tell_i2c()

    def set_air(
        self,
        *,
        temperature_c: float | None = None,
        humidity_pct: float | None = None,
        pressure_hpa: float | None = None,
        co2_ppm: int | None = None,
    ) -> None:
        """Set what the board's environmental sensors measure; None leaves a quantity as it is."""
        given = {"temperature_c": temperature_c, "humidity_pct": humidity_pct, "pressure_hpa": pressure_hpa}
        given["co2_ppm"] = co2_ppm
        with self._changed:
            self._air.update({name: value for name, value in given.items() if value is not None})
        self._tell_i2c()

    def wire_spi(self, kind: str, *, cs: int, sck: int, mosi: int, miso: int, **state: object) -> None:
        """Wire a chip to the SPI lines on GPIOs `sck`, `mosi`, `miso`, selected by GPIO `cs` low: `kind`
        is "mfrc522".

        `state` is the model's: `reset=GPIO` for the MFRC522's NRSTPD line (held low, the chip is
        powered down; unwired, it is always on), `version=0x91` for another VersionReg."""
        with self._changed:
            for key in [key for key in self._spi if key.endswith(f"/{cs}")]:
                del self._spi[key]  # one chip per chip-select line
            self._spi[f"{sck}/{mosi}/{miso}/{cs}"] = {"kind": kind, "answering": True, "corrupt": 0, **state}
        self._tell_spi()

    def unwire_spi(self, cs: int) -> None:
        """Take the chip selected by GPIO `cs` off its SPI lines."""
        with self._changed:
            del self._spi[self._spi_key(cs)]
        self._tell_spi()

    def silence_spi(self, cs: int, silent: bool = True) -> None:
        """Unpower the SPI chip selected by GPIO `cs` (it hears nothing, MISO floats), or power it again:
        then it starts from its reset state, as a chip plugged back in does."""
        self._set_chip_state(None, cs, answering=not silent)

    def present_badge(
        self, uid: bytes, tag_type: str = "mifare_classic", *, address: int = 0x24, cs: int | None = None
    ) -> None:
        """Hold a badge (UID of 4, 7 or 10 bytes; a tag type of payload_codec's TAG_TYPES) at the reader:
        the PN532 at I2C `address`, or, given `cs`, the SPI reader (MFRC522) that GPIO `cs` selects."""
        self._set_chip_state(address, cs, badge={"uid": uid.hex(), "tag_type": tag_type})

    def remove_badge(self, *, address: int = 0x24, cs: int | None = None) -> None:
        self._set_chip_state(address, cs, badge=None)

    def silence_i2c(self, address: int, silent: bool = True) -> None:
        """Make the chip at `address` stop answering (no ACK, as when unpowered or unplugged), or answer again."""
        self._set_i2c_state(address, answering=not silent)

    def corrupt_next_answer(self, address: int | None = None, *, cs: int | None = None) -> None:
        """Damage the next answer of the I2C chip at `address` (PN532 frame DCS, SCD4x and SHT4x CRC), or
        of the SPI chip that GPIO `cs` selects (MFRC522: the badge's next UID or SAK, which its BCC or
        CRC_A then gives away)."""
        with self._changed:
            corrupted = self._chip(address, cs)["corrupt"]
        self._set_chip_state(address, cs, corrupt=corrupted + 1)

    def pin_output(self, pin: int) -> int | None:
        """The level the board drives on GPIO `pin` (a `Pin` in OUT mode), or None if it drives none."""
        with self._changed:
            return self._outputs.get(pin)

    def radio_receive(self, payload: bytes, rssi_dbm: float, snr_db: float, *, valid_crc: bool = True) -> None:
        """Bring a LoRa frame to the board's antenna: its modem takes it if it is receiving (not
        sending). A bad CRC counts in the modem's `crc_errors` instead. The medium calls this."""
        snr_x4 = max(-128, min(round(snr_db * 4), 127))  # the chips report SNR in dB x 4, signed 8-bit
        self._tell_vm({"radio": payload.hex(), "rssi": round(rssi_dbm), "snr": snr_x4, "crc": valid_crc})

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

        with serial.Serial(str(self.port), 115200, timeout=timeout) as console:
            console.write(b"\r\x03\x03\x01")  # interrupt the friendly REPL's input, enter the raw REPL
            read_until(console, _RAW_REPL_BANNER)
            if soft_reset:
                console.write(b"\x04")
                read_until(console, _RAW_REPL_BANNER)
            console.write((code or "pass").encode() + b"\x04")  # an empty one would soft-reset
            read_until(console, b"OK")
            output = read_until(console, b"\x04").decode(errors="replace")
            error = read_until(console, b"\x04>").decode(errors="replace")
            console.write(b"\x02")  # back to the friendly REPL, from which a soft reset runs main.py
        if error:
            raise BoardExecError(error, output)
        return output

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

    def _request(self, action: str) -> None:
        if self._pump is None or self._stopping.is_set():
            raise VirtualBoardError("the board is off: start() it first")
        done = threading.Event()
        self._requests.put((action, done))
        if not done.wait(_REQUEST_TIMEOUT_S):
            raise VirtualBoardError(f"the board did not {action} within {_REQUEST_TIMEOUT_S} s")

    def _i2c_key(self, address: int) -> str:
        keys = [key for key in self._i2c if key.endswith(f"/{address}")]
        if len(keys) != 1:
            raise ValueError(f"{len(keys)} chips are wired at I2C address {address:#04x}: expected one")
        return keys[0]

    def _set_i2c_state(self, address: int, **state: object) -> None:
        with self._changed:
            self._i2c[self._i2c_key(address)].update(state)
        self._tell_i2c()

    def _spi_key(self, cs: int) -> str:
        keys = [key for key in self._spi if key.endswith(f"/{cs}")]
        if not keys:
            raise ValueError(f"no SPI chip is wired with its chip select on GPIO {cs}")
        return keys[0]

    def _chip(self, address: int | None, cs: int | None) -> dict:
        """The state of the I2C chip at `address`, or, given `cs`, of the SPI chip that GPIO `cs` selects."""
        if cs is not None:
            return self._spi[self._spi_key(cs)]
        if address is None:
            raise ValueError("say which chip: an I2C address or an SPI chip select")
        return self._i2c[self._i2c_key(address)]

    def _set_chip_state(self, address: int | None, cs: int | None, **state: object) -> None:
        with self._changed:
            self._chip(address, cs).update(state)
        if cs is None:
            self._tell_i2c()
        else:
            self._tell_spi()

    def _spi_description(self) -> str:
        return json.dumps({"devices": self._spi}, sort_keys=True)

    def _tell_spi(self) -> None:
        # As for I2C: the description rides on the pin key "spi".
        with self._changed:
            description = self._spi_description()
        self._tell_vm({"pin": "spi", "level": description})

    def _i2c_description(self) -> str:
        return json.dumps({"air": self._air, "devices": self._i2c}, sort_keys=True)

    def _tell_i2c(self) -> None:
        # The VM has no message of its own for it: the description rides on the pin key "i2c".
        with self._changed:
            description = self._i2c_description()
        self._tell_vm({"pin": "i2c", "level": description})

    def _tell_vm(self, message: dict[str, int | str | None]) -> None:
        """Send a change of the outside world to the running VM; wait until it has applied it."""
        with self._changed:
            if self._mcu is None:
                return  # asleep or off: the next VM gets it when it boots
            self._sent += 1
            sent, boots = self._sent, self.boots
            try:
                os.write(self._mcu.control, (json.dumps({**message, "seq": sent}) + "\n").encode())
            except OSError:
                return  # the VM has just ended: the next one gets it when it boots
            applied = self._changed.wait_for(lambda: self._acked >= sent or self.boots != boots, _ACK_TIMEOUT_S)
        if not applied:
            log.warning("virtual board %s: the VM is busy and has not applied %s yet", self.port, message)

    def _lose_power(self) -> None:
        (self.state / RTC_MEMORY_FILE).unlink(missing_ok=True)

    def _boot(self, *, reset_cause: int, repl: str = "friendly", soft_reboot: bool = False) -> None:
        if not soft_reboot:
            self._wdt_timeout_s = self._wdt_deadline = None  # a chip reset stops the watchdog
        self._wake_at = None
        control_out, control_in = os.pipe()
        events_out, events_in = os.pipe()
        with self._changed:
            pins: dict[int | str, int | str] = {**self._pins, "i2c": self._i2c_description()}
            pins["spi"] = self._spi_description()
            inputs = json.dumps({"pins": pins, "adc": self._adc})
            command = [self.node, str(MCU), "--flash", str(self.flash), "--state", str(self.state)]
            command += ["--reset-cause", str(reset_cause), "--repl", repl, "--unique-id", self.unique_id.hex()]
            command += ["--inputs", inputs, "--control", str(control_out), "--events", str(events_in)]
            if soft_reboot:
                command.append("--soft-reboot")
            if self.radio is not None:
                command += ["--radio", self.radio]
            entry = vm_entry()
            if entry is not None:
                command += ["--vm", str(entry)]
            # A session of its own: Ctrl-C in the terminal powers off the board, not just its VM.
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=NPM_PROJECT,
                start_new_session=True,
                pass_fds=(control_out, events_in),
            )
            os.close(control_out)
            os.close(events_in)
            for fd in (process.stdout.fileno(), process.stdin.fileno(), events_out):
                os.set_blocking(fd, False)
            self._mcu = _Mcu(process, control_in, events_out)
            self._outputs.clear()  # every pin is an input after a reset
            self.boots += 1
            self._reset_cause = reset_cause
            self._changed.notify_all()

    def _halt(self) -> None:
        with self._changed:
            if self._mcu is not None:
                self._mcu.stop()
                self._mcu = None

    def _handle_events(self) -> None:
        """Act on what the VM said: watchdog armed or fed, deep sleep ahead, output pins, acks."""
        if self._mcu is None:
            return
        for line in self._mcu.read_events():
            kind, *arguments = line.split()
            if kind == "wdt":
                self._wdt_timeout_s = int(arguments[0]) / 1000
            if kind in ("wdt", "feed") and self._wdt_timeout_s is not None:
                self._wdt_deadline = time.monotonic() + self._wdt_timeout_s
            elif kind == "sleep":
                self._sleep_ms = int(arguments[0])
            elif kind == "pin":
                with self._changed:
                    pin, level = int(arguments[0]), int(arguments[1])
                    if level < 0:
                        self._outputs.pop(pin, None)
                    else:
                        self._outputs[pin] = level
            elif kind == "ack":
                with self._changed:
                    self._acked = max(self._acked, int(arguments[0]))
                    self._changed.notify_all()
            elif kind == "radio" and self.medium is not None:
                self._radio_event(line)

    def _radio_event(self, line: str) -> None:
        """Hand the medium what lora.py reported: "radio rx NS SETTINGS", "radio idle NS" or
        "radio tx NS HEX SETTINGS", NS being when, in ns of the monotonic clock."""
        assert self.medium is not None
        _, state, ns, *rest = line.split(" ", 3)
        now = time.monotonic()
        at = int(ns) / 1e9
        at = at if now - _RADIO_EVENT_AGE_S < at <= now else now  # as late as the pipe was read, at worst
        if state == "rx":
            self.medium.board_listens(self, json.loads(rest[0]), at)
        elif state == "idle":
            self.medium.board_listens(self, None, at)
        elif state == "tx":
            payload, settings = rest[0].split(" ", 1)
            self.medium.board_transmits(self, bytes.fromhex(payload), json.loads(settings), at)

    def _reboot_after(self, exit_code: int) -> None:
        """Boot the next VM as the ending one asked; a crash reboots like an ESP32 panic does."""
        self._handle_events()  # what it said before it ended
        self._halt()
        if exit_code == EXIT_NOT_INSTALLED:
            log.error("virtual board %s: the MicroPython VM is missing: run `npm ci` in %s", self.port, NPM_PROJECT)
            self._stopping.set()
        elif exit_code in (EXIT_SOFT_REBOOT_FRIENDLY, EXIT_SOFT_REBOOT_RAW):
            # A soft reboot keeps the hardware's reset cause, the REPL's mode, and a running watchdog.
            repl = "raw" if exit_code == EXIT_SOFT_REBOOT_RAW else "friendly"
            self._boot(reset_cause=self._reset_cause, repl=repl, soft_reboot=True)
        elif exit_code == EXIT_MACHINE_RESET:
            self._boot(reset_cause=SOFT_RESET)
        elif exit_code == EXIT_DEEPSLEEP:
            # The chip is off but for its RTC: no VM until the timer (if any) wakes it, or a reset.
            self._wdt_timeout_s = self._wdt_deadline = None
            self._wake_at = time.monotonic() + self._sleep_ms / 1000 if self._sleep_ms > 0 else None
        else:
            log.warning("virtual board %s: the VM stopped (exit code %s); rebooting it", self.port, exit_code)
            time.sleep(_PANIC_PAUSE_S)
            self._boot(reset_cause=SOFT_RESET)
        with self._changed:
            self._changed.notify_all()  # a VM that ended will not acknowledge what it was sent

    def _serve_requests(self) -> bool:
        """Act on reset() and power_cycle(); True if the VM was replaced."""
        served = False
        while not self._requests.empty():
            action, done = self._requests.get()
            self._halt()
            if action == "power cycle":
                self._lose_power()
                self._boot(reset_cause=PWRON_RESET)
            else:
                self._boot(reset_cause=HARD_RESET)
            done.set()
            served = True
        return served

    def _run_timers(self, to_port: bytearray) -> bool:
        """The watchdog and the deep-sleep wake-up timer; True if the VM was replaced."""
        now = time.monotonic()
        if self._mcu is None and self._wake_at is not None and now >= self._wake_at:
            self._boot(reset_cause=DEEPSLEEP_RESET)
            return True
        if self._wdt_deadline is not None and now >= self._wdt_deadline:
            self._handle_events()  # a feed may be waiting in the pipe
        if self._wdt_deadline is not None and now >= self._wdt_deadline:
            to_port += _WDT_MESSAGE
            self._halt()
            self._boot(reset_cause=WDT_RESET)
            return True
        return False

    def _run(self) -> None:
        """Pump bytes between the port and the VM's console until closed; reboot the VM when it must."""
        to_mcu = bytearray()
        to_port = bytearray()
        port_closed_at = None  # when the port was last found with nobody holding it
        with selectors.DefaultSelector() as selector:
            while not self._stopping.is_set():
                if self._serve_requests() or self._run_timers(to_port):
                    to_mcu.clear()  # what arrived during the reboot is lost, as on a UART
                mcu = self._mcu
                # A port nobody holds signals POLLHUP at once: look at it again only after _POLL_S,
                # and meanwhile keep serving the VM (its radio, pins and watchdog cannot wait).
                if port_closed_at is None or time.monotonic() - port_closed_at >= _POLL_S:
                    port_events = selectors.EVENT_READ | (selectors.EVENT_WRITE if to_port else 0)
                    selector.register(self._master, port_events, "port")
                if mcu is not None:
                    selector.register(mcu.stdout, selectors.EVENT_READ, "console out")
                    selector.register(mcu.events, selectors.EVENT_READ, "events")
                    if to_mcu:
                        selector.register(mcu.stdin, selectors.EVENT_WRITE, "console in")
                ready = selector.select(_POLL_S)
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                for key, events in ready:
                    if key.data == "port":
                        open_ = self._exchange_with_port(events, to_mcu, to_port)
                        port_closed_at = None if open_ else time.monotonic()
                    elif key.data == "events":
                        self._handle_events()
                    elif key.data == "console out":
                        assert mcu is not None
                        output = os.read(mcu.stdout, 4096)
                        if output:
                            to_port += output
                            del to_port[:-_MAX_UNREAD]
                        else:
                            self._reboot_after(mcu.process.wait())
                            to_mcu.clear()
                            break
                    elif key.data == "console in":
                        assert mcu is not None
                        with contextlib.suppress(BlockingIOError, BrokenPipeError):
                            del to_mcu[: os.write(mcu.stdin, to_mcu)]
                if self._mcu is None:
                    to_mcu.clear()  # a sleeping chip hears nothing

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
