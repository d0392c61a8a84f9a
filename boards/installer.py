"""`borne board flash`: install the firmware and a configuration on a board with the real mpremote.

Each step is one mpremote command line, as an installer would type it, and one line of progress:
the board answers, the radio drivers are there (mip installs them if not), the firmware's files,
config.json, a reset. A failed step raises InstallError, which says what to do next.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import provisioning

# micropython-lib's drivers for each radio chip, and the class the firmware builds the modem with.
DRIVER_PACKAGES = {"sx1276": "lora-sx127x", "sx1262": "lora-sx126x"}
MODEM_CLASSES = {"sx1276": "AsyncSX1276", "sx1262": "AsyncSX1262"}
ASYNC_PACKAGE = "lora-async"
STEPS = 5
PROBE_TIMEOUT_S = 30
MIP_TIMEOUT_S = 300  # mip downloads every file from the index, on the laptop
COPY_TIMEOUT_S = 180
RESET_TIMEOUT_S = 30
PROBE_PATIENCE_S = 30  # for a board that is restarting to let mpremote in
PROBE_PAUSE_S = 1
_PROBE_MARK = "BORNE-PROBE "
_FORGOT_MARK = "BORNE-FORGOT "
_NO_RAW_REPL = "could not enter raw repl"

# Runs on the board: what it is, which .mpy it reads, whether the radio drivers import, which
# firmware files it holds under TOPS (the firmware's top-level files and package directories) and
# each one's SHA-256, so that only what changed is copied.
_PROBE = """\
import sys, os, json, hashlib, binascii
def digest(p):
    h = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                return binascii.hexlify(h.digest()).decode()
            h.update(memoryview(b)[:n])
def walk(p, out):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return out
    if mode & 0x4000:
        for n in os.listdir(p):
            walk(p + '/' + n, out)
    else:
        out[p[1:]] = digest(p)
    return out
try:
    import lora
    classes = [n for n in CLASSES if hasattr(lora, n)]
    lora_error = None
except Exception as e:
    classes = []
    lora_error = repr(e)
files = {}
for top in TOPS:
    walk('/' + top, files)
try:
    with open('/config.json') as f:
        c = json.load(f)
    identity = [c.get('role'), c.get('site'), c.get('device_id')]
except Exception:
    identity = None
i = sys.implementation
print(MARK + json.dumps({
    'version': '.'.join(str(v) for v in i.version[:3]),
    'machine': getattr(i, '_machine', sys.platform),
    'mpy': getattr(i, '_mpy', 0),
    'lora_error': lora_error,
    'modem_classes': classes,
    'files': files,
    'identity': identity,
}))
"""


def _probe_code(tops: Sequence[str]) -> str:
    tops = [top.rstrip("/") for top in tops]
    constants = f"CLASSES = {sorted(MODEM_CLASSES.values())!r}\nTOPS = {tops!r}\nMARK = {_PROBE_MARK!r}\n"
    return constants + _PROBE


Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


class InstallError(Exception):
    """A step of the installation failed; the message says what happened and what to do next."""


@dataclass(frozen=True)
class BoardFacts:
    """What the board said about itself before anything was installed."""

    version: str
    machine: str
    lora_error: str | None  # why `import lora` failed, or None
    modem_classes: tuple[str, ...]
    files: tuple[str, ...]  # firmware files already on it (boot.py, main.py, borne/…)
    identity: tuple[str | None, str | None, int | None] | None  # role, site, device id of its config.json
    # sys.implementation._mpy: the .mpy version it reads in the low byte (py/persistentcode.h); 0 if it says none
    mpy: int = 0
    digests: Mapping[str, str] = field(default_factory=dict)  # SHA-256 (hex) of each of `files`


def run_mpremote(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `python -m mpremote ARGUMENTS`, as an installer would type it."""
    return subprocess.run(
        [sys.executable, "-m", "mpremote", *arguments], capture_output=True, text=True, timeout=timeout
    )


class Installer:
    """Installs onto the board on `port`; `report` gets one line per step."""

    def __init__(
        self,
        port: str,
        *,
        report: Callable[[str], None] = print,
        runner: Runner = run_mpremote,
        mip_index: str | None = None,
    ) -> None:
        self.port = port
        self.report = report
        self.runner = runner
        self.mip_index = mip_index

    def install(self, config: Mapping[str, Any], firmware_dir: Path = provisioning.FIRMWARE_DIR) -> None:
        """Every step, in order; InstallError at the first that fails."""
        if self.runner is run_mpremote and importlib.util.find_spec("mpremote") is None:
            raise InstallError("mpremote is missing: `pip install mpremote` into borne's environment, then run again")
        with tempfile.TemporaryDirectory(prefix="borne-flash-") as directory:  # created 0700
            stage = Path(directory)
            files = provisioning.stage(config, stage, firmware_dir)
            firmware = [path for path in files if path != provisioning.CONFIG_FILE]
            facts = self.probe(config["board"]["mcu"], provisioning.top_level(firmware))
            self.report(f"[1/{STEPS}] the board answers: MicroPython {facts.version} on {facts.machine}")
            drivers = self.ensure_drivers(facts, config["board"]["radio"]["chip"])
            self.report(f"[2/{STEPS}] radio drivers: {drivers}")
            copied = self.copy_firmware(stage, firmware, facts)
            forgotten = self.forget_other_device(facts, config)
            self.report(f"[3/{STEPS}] firmware: {copied}" + (f"; {forgotten}" if forgotten else ""))
            self._step("writing config.json", "fs", "cp", str(stage / provisioning.CONFIG_FILE), ":")
        self.report(f"[4/{STEPS}] config.json: {provisioning.summary(config)} (keys not shown)")
        try:
            self._step("resetting the board", "reset", timeout=RESET_TIMEOUT_S)
        except InstallError as error:
            started = "Everything is installed: press the board's reset button to start it."
            raise InstallError(f"{error}\n{started}") from None
        self.report(f"[5/{STEPS}] board reset: it starts the firmware")

    def probe(self, mcu: str, tops: Sequence[str]) -> BoardFacts:
        """Ask the board what it is and which files it holds under `tops`; InstallError if it does not answer
        as MicroPython does or is not the profile's microcontroller."""
        # A board whose firmware keeps crashing reboots under mpremote's feet: it may take a few tries.
        deadline = time.monotonic() + PROBE_PATIENCE_S
        while True:
            try:
                done = self._step("asking the board what it is", "exec", _probe_code(tops), timeout=PROBE_TIMEOUT_S)
                break
            except InstallError as error:
                if _NO_RAW_REPL not in str(error) or time.monotonic() > deadline:
                    raise
                self.report(f"[1/{STEPS}] the board does not let mpremote in yet (restarting?); trying again")
                time.sleep(PROBE_PAUSE_S)
        line = next((line for line in done.stdout.splitlines() if line.startswith(_PROBE_MARK)), None)
        if line is None:
            raise InstallError(
                f"the board on {self.port} answered, but not as MicroPython does; it printed:\n{done.stdout[-1000:]}\n"
                "Flash MicroPython onto it first (micropython.org/download), then run this again."
            )
        answer = json.loads(line[len(_PROBE_MARK) :])
        facts = BoardFacts(
            answer["version"],
            answer["machine"],
            answer["lora_error"],
            tuple(answer["modem_classes"]),
            tuple(answer["files"]),
            None if answer.get("identity") is None else tuple(answer["identity"]),
            answer.get("mpy", 0),
            dict(answer["files"]),
        )
        chip = facts.machine.rpartition(" with ")[2].upper().replace("-", "")
        expected = mcu.upper()
        if " with " in facts.machine and chip.startswith("ESP32") and chip != expected:
            raise InstallError(
                f"the board on {self.port} is an {chip} ({facts.machine}), and the chosen board profile is for an "
                f"{expected}: choose the right --board (`borne board profiles` lists them)"
            )
        return facts

    def ensure_drivers(self, facts: BoardFacts, chip: str) -> str:
        """Install lora-async and the chip's driver with mip if `import lora` fails on the board; say what was done."""
        modem_class = MODEM_CLASSES[chip]
        packages = [ASYNC_PACKAGE, DRIVER_PACKAGES[chip]]
        if facts.lora_error is None:
            if modem_class in facts.modem_classes:
                return f"lora is on the board, with {modem_class}"
            return (
                f"warning: lora is on the board but has no {modem_class}, so the firmware cannot start the radio: "
                f"`python -m mpremote connect {self.port} mip install {' '.join(packages)}`"
            )
        index = ["--index", self.mip_index] if self.mip_index else []
        self.report(f"[2/{STEPS}] radio drivers: `import lora` fails on the board; installing {' '.join(packages)}")
        done = self.runner(["connect", self.port, "mip", "install", *index, *packages], MIP_TIMEOUT_S)
        if done.returncode != 0:
            source = self.mip_index or "micropython-lib's index (micropython.org)"
            raise InstallError(
                f"mip could not install {' '.join(packages)} from {source}: {_last_line(done)}\n"
                "mip downloads on this computer, then copies to the board: check that this computer reaches "
                "the index (a proxy needs HTTPS_PROXY), or point --mip-index at a mirror or a local copy of "
                "the index, then run this again."
            )
        check = self._step("checking the drivers", "exec", f"import lora; print(hasattr(lora, '{modem_class}'))")
        if "True" not in check.stdout:
            raise InstallError(
                f"mip installed {' '.join(packages)}, but the board's lora still has no {modem_class}: "
                f"look at `python -m mpremote connect {self.port} fs ls :lib` and run this again"
            )
        return f"installed {' '.join(packages)} with mip"

    def copy_firmware(self, stage: Path, firmware: Sequence[str], facts: BoardFacts) -> str:
        """Copy the staged `firmware` files the board lacks or holds otherwise, and remove those an older
        firmware left (a module's .py beside its .mpy would be the one imported); say what was done."""
        if facts.mpy & 0xFF != provisioning.MPY_VERSION:
            raise InstallError(
                f"the board's MicroPython {facts.version} cannot load the firmware, compiled as .mpy version "
                f"{provisioning.MPY_VERSION}: flash MicroPython 1.19 or later onto it (micropython.org/download), "
                "then run this again."
            )
        changed = [path for path in firmware if facts.digests.get(path) != _digest(stage / path)]
        stale = sorted(set(facts.files) - set(firmware))
        compiled = sum(path.endswith(".mpy") for path in firmware)
        described = f"{compiled} modules as .mpy v{provisioning.MPY_VERSION}, {len(firmware) - compiled} as source"
        described += f"; {len(changed)} files copied, {len(firmware) - len(changed)} unchanged"
        if stale:
            described += f"; {len(stale)} files of an older firmware removed"
        if not changed and not stale:
            return described
        # Remove the stale files and make the folders the copies go in, then copy each file in place.
        folders = sorted({"/".join(path.split("/")[:n]) for path in changed for n in range(1, path.count("/") + 1)})
        prepare = (
            f"import os\nfor f in {stale!r}:\n    os.remove('/' + f)\n"
            f"for d in {folders!r}:\n    try:\n        os.mkdir('/' + d)\n    except OSError:\n        pass"
        )
        copies: list[str] = []
        for path in changed:
            copies += ["+", "fs", "cp", str(stage / path), f":{path}"]
        self._step("copying the firmware", "exec", prepare, *copies, timeout=COPY_TIMEOUT_S)
        return described

    def forget_other_device(self, facts: BoardFacts, config: Mapping[str, Any]) -> str | None:
        """If the board was another device (or its config.json is unreadable), erase that device's
        queued check-ins and counters, so none leaves under the new id; say what was done."""
        identity = (config["role"], config["site"], config.get("device_id"))
        if facts.identity == identity:
            return None  # the same device again: it keeps its queue and counters
        done = self._step(
            "forgetting the device the board was",
            "exec",
            f"import borne.identity\nprint('{_FORGOT_MARK}' + str(borne.identity.forget()))",
        )
        if facts.identity is None:
            return "no readable config.json on the board: any queued check-ins and counters it held are erased"
        role, site, device_id = facts.identity
        was = f"{role} {device_id} of site {site}" if device_id is not None else f"{role} of site {site}"
        removed = done.stdout.rpartition(_FORGOT_MARK)[2].strip() or "0"
        return f"the board was {was}: its queued check-ins ({removed} files) and counters are erased"

    def _step(self, what: str, *arguments: str, timeout: float = PROBE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        try:
            done = self.runner(["connect", self.port, *arguments], timeout)
        except subprocess.TimeoutExpired:
            raise InstallError(
                f"{what}: the board on {self.port} stopped answering for {timeout:.0f} s. Press its reset button "
                "and run this again; if it keeps happening, hold its button while resetting it (safe mode)."
            ) from None
        if done.returncode != 0:
            raise InstallError(f"{what}: {_last_line(done)}\n{_advice(done, self.port)}")
        return done


def _digest(path: Path) -> str:
    """A file's SHA-256 as the probe computes it on the board."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """mpremote's last word: its error, or else the last line it printed."""
    for output in (done.stderr, done.stdout):
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"mpremote exited with {done.returncode}"


def _advice(done: subprocess.CompletedProcess[str], port: str) -> str:
    """What to do about an mpremote failure, from what it printed."""
    output = done.stderr + done.stdout
    if "failed to access" in output or "no device found" in output or "No such file" in output:
        return (
            f"Check the cable and the port name (`python -m mpremote connect list` lists the boards), that no other "
            f"program holds {port} (a serial monitor, another mpremote), and that you may open it (group dialout)."
        )
    if _NO_RAW_REPL in output:
        return (
            "The board does not answer as MicroPython does: flash MicroPython onto it first, or press its reset "
            "button and run this again; if its firmware crashes at once, hold its button while resetting it."
        )
    return "Run this again; if it fails the same way, press the board's reset button first."
