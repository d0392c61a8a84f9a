"""`borne board flash`: install the firmware and a configuration on a board with the real mpremote.

Each step is one mpremote command line, as an installer would type it, and one line of progress:
the board answers, the firmware's files (its radio drivers among them: nothing comes from the
network), config.json, a reset. A failed step raises InstallError, which says what to do next.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import provisioning

STEPS = 4
PROBE_TIMEOUT_S = 30
COPY_TIMEOUT_S = 180
RESET_TIMEOUT_S = 30
PROBE_PATIENCE_S = 30  # for a board that is restarting to let mpremote in
PROBE_PAUSE_S = 1
_PROBE_MARK = "BORNE-PROBE "
_FORGOT_MARK = "BORNE-FORGOT "
_NO_RAW_REPL = "could not enter raw repl"

# Runs on the board: what it is, which firmware files it holds under TOPS (the firmware's top-level
# files and package directories), and which device its config.json makes it.
_PROBE = """\
import sys, os, json
def walk(p, out):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return out
    if mode & 0x4000:
        for n in os.listdir(p):
            walk(p + '/' + n, out)
    else:
        out.append(p[1:])
    return out
files = []
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
    'files': files,
    'identity': identity,
}))
"""


def _probe_code(tops: Sequence[str]) -> str:
    tops = [top.rstrip("/") for top in tops]
    constants = f"TOPS = {tops!r}\nMARK = {_PROBE_MARK!r}\n"
    return constants + _PROBE


Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


class InstallError(Exception):
    """A step of the installation failed; the message says what happened and what to do next."""


@dataclass(frozen=True)
class BoardFacts:
    """What the board said about itself before anything was installed."""

    version: str
    machine: str
    files: tuple[str, ...]  # firmware files already on it (boot.py, main.py, borne/…)
    identity: tuple[str | None, str | None, int | None] | None  # role, site, device id of its config.json


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
    ) -> None:
        self.port = port
        self.report = report
        self.runner = runner

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
            copied = self.copy_firmware(stage, firmware, facts)
            forgotten = self.forget_other_device(facts, config)
            self.report(f"[2/{STEPS}] firmware: {copied}" + (f"; {forgotten}" if forgotten else ""))
            self._step("writing config.json", "fs", "cp", str(stage / provisioning.CONFIG_FILE), ":")
        self.report(f"[3/{STEPS}] config.json: {provisioning.summary(config)} (keys not shown)")
        try:
            self._step("resetting the board", "reset", timeout=RESET_TIMEOUT_S)
        except InstallError as error:
            started = "Everything is installed: press the board's reset button to start it."
            raise InstallError(f"{error}\n{started}") from None
        self.report(f"[4/{STEPS}] board reset: it starts the firmware")

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
            tuple(answer["files"]),
            None if answer.get("identity") is None else tuple(answer["identity"]),
        )
        chip = facts.machine.rpartition(" with ")[2].upper().replace("-", "")
        expected = mcu.upper()
        if " with " in facts.machine and chip.startswith("ESP32") and chip != expected:
            raise InstallError(
                f"the board on {self.port} is an {chip} ({facts.machine}), and the chosen board profile is for an "
                f"{expected}: choose the right --board (`borne board profiles` lists them)"
            )
        return facts

    def copy_firmware(self, stage: Path, firmware: Sequence[str], facts: BoardFacts) -> str:
        """Copy the staged `firmware` files and remove those an older firmware left; say what was done."""
        stale = sorted(set(facts.files) - set(firmware))
        removal = []
        if stale:
            removal = ["exec", f"import os\nfor f in {stale!r}:\n    os.remove('/' + f)"]
        tops = provisioning.top_level(firmware)
        self._step(
            "copying the firmware",
            *removal,
            "fs",
            "cp",
            "-r",
            *(str(stage / top.rstrip("/")) for top in tops),
            ":",
            timeout=COPY_TIMEOUT_S,
        )
        described = f"{len(firmware)} files in place: {', '.join(tops)}"
        return described + (f"; {len(stale)} files of an older firmware removed" if stale else "")

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
