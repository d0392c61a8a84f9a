"""`borne board flash`: install the firmware and a configuration on a board with the real mpremote.

Each step is one mpremote command line, as an installer would type it, and one line of progress:
the board answers, the firmware's files (its radio drivers among them: nothing comes from the
network), config.json, a reset. A failed step raises InstallError, which says what to do next.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
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

STEPS = 4
PROBE_TIMEOUT_S = 30
COPY_TIMEOUT_S = 180
RESET_TIMEOUT_S = 30
PROBE_PATIENCE_S = 30  # for a board that is restarting to let mpremote in
PROBE_PAUSE_S = 1
_PROBE_MARK = "BORNE-PROBE "
_FORGOT_MARK = "BORNE-FORGOT "
_NO_RAW_REPL = "could not enter raw repl"

# Runs on the board: what it is, which .mpy it reads, which firmware files it holds under TOPS (the
# firmware's top-level files and package directories) and each one's SHA-256, so that only what
# changed is copied, the device its config.json names, whether a node's counters are in NVS
# (firmware/borne/counter.py's namespace and bound key) and its unique id.
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
files = {}
for top in TOPS:
    walk('/' + top, files)
try:
    with open('/config.json') as f:
        c = json.load(f)
    identity = [c.get('role'), c.get('site'), c.get('device_id'), c.get('key_epoch', 0)]
except Exception:
    identity = None
try:
    import esp32
    esp32.NVS('borne').get_blob('up_bound', bytearray(4))
    counters = True
except Exception:
    counters = False
try:
    import machine, binascii
    uid = binascii.hexlify(machine.unique_id()).decode()
except Exception:
    uid = None
i = sys.implementation
print(MARK + json.dumps({
    'version': '.'.join(str(v) for v in i.version[:3]),
    'machine': getattr(i, '_machine', sys.platform),
    'mpy': getattr(i, '_mpy', 0),
    'files': files,
    'identity': identity,
    'counters': counters,
    'unique_id': uid,
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
    identity: tuple[str | None, str | None, int | None, int] | None  # role, site, device id, key epoch of config.json
    counters: bool = False  # a node's frame counters are in its NVS
    unique_id: str | None = None  # machine.unique_id() in hex: which board this is
    # sys.implementation._mpy: the .mpy version it reads in the low byte (py/persistentcode.h); 0 if it says none
    mpy: int = 0
    digests: Mapping[str, str] = field(default_factory=dict)  # SHA-256 (hex) of each of `files`

    def holds_counters_of(self, site: str, device_id: int, key_epoch: int) -> bool:
        """Whether the board holds the counters of node `device_id` of `site` in `key_epoch`."""
        return self.counters and self.identity == ("node", site, device_id, key_epoch)


def run_mpremote(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `python -m mpremote ARGUMENTS`, as an installer would type it."""
    return subprocess.run(
        [sys.executable, "-m", "mpremote", *arguments], capture_output=True, text=True, timeout=timeout
    )


# `borne board check`: the firmware's self-test (firmware/borne/selftest.py), run over the console.

SELFTEST_TIMEOUT_S = 90  # an SCD4x takes 5 s to its first sample; the rest is quick
_CHECK_MARK = "BORNE-CHECK "
# In three calls: importing the firmware's modules makes much of the test's garbage, and so does each half
# of the checks (selftest.run's parts); a virtual board's VM collects garbage only between calls, where a
# board collects whenever it must.
_SELFTEST_IMPORT = "import borne.node, borne.selftest"
_SELFTEST_PARTS = ("borne.selftest.run(0)", "borne.selftest.run(1)")
_NOT_BORNE = "no module named 'borne"

_I2C_CHIPS = {"bme280": "BME280", "scd4x": "SCD4x", "sht4x": "SHT4x", "pn532": "PN532"}
_EIO, _ETIMEDOUT = 5, 110


def _wiring(board: Mapping[str, Any]) -> str:
    """Where an installer reads the board's wiring: a command of the installed `borne`, and the guide."""
    return f"`borne board wiring {board.get('name')}`, and the installer's guide, section 4"


@dataclass(frozen=True)
class CheckResult:
    """One line of a board's check: what was checked, what was found, and what to do if it failed."""

    name: str
    ok: bool
    found: str
    advice: str = ""


@dataclass(frozen=True)
class BoardCheck:
    """What the board's self-test found; `config` is its configuration as read back, keys masked."""

    config: dict[str, Any] | None
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.ok for result in self.results)


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

    def install(
        self, config: Mapping[str, Any], firmware_dir: Path = provisioning.FIRMWARE_DIR, facts: BoardFacts | None = None
    ) -> None:
        """Every step, in order; InstallError at the first that fails. `facts`: the board's answer to
        `probe_for` when the caller needed it first (to choose the node's key epoch)."""
        self._require_mpremote()
        with tempfile.TemporaryDirectory(prefix="borne-flash-") as directory:  # created 0700
            stage = Path(directory)
            files = provisioning.stage(config, stage, firmware_dir)
            firmware = [path for path in files if path != provisioning.CONFIG_FILE]
            if facts is None:
                facts = self.probe_for(config["board"]["mcu"], firmware_dir)
            self.report(f"[1/{STEPS}] the board answers: MicroPython {facts.version} on {facts.machine}")
            copied = self.copy_firmware(stage, firmware, facts)
            forgotten = self.forget_other_device(facts, config)
            self.report(f"[2/{STEPS}] firmware: {copied}" + (f"; {forgotten}" if forgotten else ""))
            self._step("writing config.json", "fs", "cp", str(stage / provisioning.CONFIG_FILE), ":")
        self.report(f"[3/{STEPS}] config.json: {provisioning.summary(config)} (keys not shown)")
        try:
            self._step("resetting the board", "reset", timeout=RESET_TIMEOUT_S)
        except InstallError as error:
            raise InstallError(
                f"{error}\nEverything is installed: press the board's reset button to start it."
            ) from None
        self.report(f"[4/{STEPS}] board reset: it starts the firmware")

    def check(self) -> BoardCheck:
        """Stop the firmware, run the board's self-test, and start the firmware again; InstallError if the
        board does not run Borne or does not answer."""
        self._require_mpremote()
        port = self.port
        try:
            # mpremote's Ctrl-C and soft reset stop the firmware; `reset` starts it again after the test.
            done = self._patient_step(
                "",
                "running the self-test",
                "exec",
                _SELFTEST_IMPORT,
                *(argument for part in _SELFTEST_PARTS for argument in ("exec", part)),
                "reset",
                timeout=SELFTEST_TIMEOUT_S,
            )
        except InstallError as error:
            if _NOT_BORNE in str(error):
                raise _not_borne(port) from None
            raise
        lines = done.stdout.splitlines()
        records = [json.loads(line[len(_CHECK_MARK) :]) for line in lines if line.startswith(_CHECK_MARK)]
        if not records:
            raise InstallError(
                f"the board on {port} ran the self-test but printed no result; it printed:\n{done.stdout[-1000:]}\n"
                f"Flash it again with `borne board flash --port {port} …`, then check it again."
            )
        config = records[0].get("config")
        board = (config or {}).get("board", {})
        return BoardCheck(config, tuple(_check_result(record, board, port) for record in records))

    def _require_mpremote(self) -> None:
        if self.runner is run_mpremote and importlib.util.find_spec("mpremote") is None:
            raise InstallError("mpremote is missing: `pip install mpremote` into borne's environment, then run again")

    def probe_for(self, mcu: str, firmware_dir: Path = provisioning.FIRMWARE_DIR) -> BoardFacts:
        """`probe`, looking for the files of the firmware in `firmware_dir`."""
        if self.runner is run_mpremote and importlib.util.find_spec("mpremote") is None:
            raise InstallError("mpremote is missing: `pip install mpremote` into borne's environment, then run again")
        return self.probe(mcu, provisioning.top_level(provisioning.firmware_files(firmware_dir)))

    def probe(self, mcu: str, tops: Sequence[str]) -> BoardFacts:
        """Ask the board what it is and which files it holds under `tops`; InstallError if it does not answer
        as MicroPython does or is not the profile's microcontroller."""
        done = self._patient_step(
            f"[1/{STEPS}] ", "asking the board what it is", "exec", _probe_code(tops), timeout=PROBE_TIMEOUT_S
        )
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
            bool(answer.get("counters")),
            answer.get("unique_id"),
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
        queued check-ins and counters, so none leaves under the new id; if it was this device in
        another key epoch, erase its counters, which start at 0 under the new keys; say what was done."""
        identity = (config["role"], config["site"], config.get("device_id"))
        epoch = config.get("key_epoch", 0)
        if facts.identity is not None and facts.identity[:3] == identity:
            if config["role"] != "node" or facts.identity[3] == epoch:
                return None  # the same device again: it keeps its queue and counters
            self._step(
                "erasing the counters of the previous key epoch",
                "exec",
                "import borne.identity\nborne.identity.forget_counters()",
            )
            return f"its counters of key epoch {facts.identity[3]} are erased: it counts from 0 under epoch {epoch}"
        done = self._step(
            "forgetting the device the board was",
            "exec",
            f"import borne.identity\nprint('{_FORGOT_MARK}' + str(borne.identity.forget()))",
        )
        if facts.identity is None:
            return "no readable config.json on the board: any queued check-ins and counters it held are erased"
        role, site, device_id, _ = facts.identity
        was = f"{role} {device_id} of site {site}" if device_id is not None else f"{role} of site {site}"
        removed = done.stdout.rpartition(_FORGOT_MARK)[2].strip() or "0"
        return f"the board was {was}: its queued check-ins ({removed} files) and counters are erased"

    def _patient_step(
        self, prefix: str, what: str, *arguments: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """`_step`, tried again for a while if mpremote cannot get in: a board whose firmware keeps crashing
        reboots under mpremote's feet, until it stays in safe mode."""
        deadline = time.monotonic() + PROBE_PATIENCE_S
        while True:
            try:
                return self._step(what, *arguments, timeout=timeout)
            except InstallError as error:
                if _NO_RAW_REPL not in str(error) or time.monotonic() > deadline:
                    raise
                self.report(f"{prefix}the board does not let mpremote in yet (restarting?); trying again")
                time.sleep(PROBE_PAUSE_S)

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
    return _advice_on(done.stderr + done.stdout, port)


def _advice_on(output: str, port: str) -> str:
    """What to do about an mpremote failure, from its words (a command's output, or a transport error)."""
    if "failed to access" in output or "no device found" in output or "No such file" in output:
        return (
            f"Check the cable and the port name (`mpremote connect list` lists the boards), that no other "
            f"program holds {port} (a serial monitor, another mpremote), and that you may open it (group dialout). "
            "A board on the ESP32-S3's own USB (the T3-S3) has no port while it deep sleeps: press its reset button, "
            "then run this again within a few seconds."
        )
    if _NO_RAW_REPL in output:
        return (
            "The board does not answer as MicroPython does: flash MicroPython onto it first, or press its reset "
            "button and run this again; if its firmware crashes at once, hold its button while resetting it."
        )
    return "Run this again; if it fails the same way, press the board's reset button first."


# `borne board check`: the self-test's lines, as a table with advice.


def _check_result(record: Mapping[str, Any], board: Mapping[str, Any], port: str) -> CheckResult:
    """A self-test record as a line of the table, with the advice for a failure."""
    check, ok = record["check"], record["ok"]
    if check == "config":
        if not ok:
            return CheckResult("configuration", False, record["error"], f"flash the board again: {record['error']}")
        return CheckResult("configuration", True, provisioning.summary(record["config"]) + "; keys not shown")
    if check == "radio":
        return _radio_result(record, board)
    if check == "reader":
        return _reader_result(record, board)
    if check == "sensor":
        return _sensor_result(record, board)
    if check == "flash":
        free, needed = record["free_bytes"] // 1024, record["min_bytes"] // 1024
        found = f"{free} KiB free"
        if ok:
            return CheckResult("flash", True, found)
        return CheckResult(
            "flash",
            False,
            found,
            f"the check-in queue needs {needed} KiB: list the board's files "
            f"(`mpremote connect {port} fs ls`) and remove those that are not Borne's",
        )
    if check == "counters":
        return CheckResult("counters", True, _counters(record))
    return CheckResult(check, ok, json.dumps(record))  # a newer firmware's check: shown as it came


def _radio_result(record: Mapping[str, Any], board: Mapping[str, Any]) -> CheckResult:
    chip = record["chip"].upper()
    if record["ok"]:
        return CheckResult("radio", True, f"{chip} answers")
    radio = board.get("radio", {})
    pins = ", ".join(f"{name.upper()}=GPIO{radio[name]}" for name in ("sck", "mosi", "miso", "cs") if name in radio)
    return CheckResult(
        "radio",
        False,
        f"{chip} did not start ({record['error']})",
        f"the radio is on the board itself, and profile {board.get('name')} expects an {chip} on {pins}: "
        "check that the board is that one (`borne board profiles`) and flash it again with the right --board; "
        "on a T-Beam the PMU must power the radio (boards/README.md, 'Quirks')",
    )


def _reader_result(record: Mapping[str, Any], board: Mapping[str, Any]) -> CheckResult:
    reader = record["reader"]
    name = f"reader {reader}"
    if record["ok"]:
        return CheckResult(name, True, f"answers: {record['version']}")
    found = f"{reader.upper()} failed ({record['error']})"
    if reader == "pn532":
        where = f"at I2C address 0x{record.get('address', 0x24):02x}"
        return CheckResult(name, False, found, _i2c_advice("PN532", where, record, board, " and switches set to I2C"))
    spi = board.get("nfc_spi") or {}
    pins = ", ".join(f"{pin.upper()}=GPIO{spi[pin]}" for pin in ("sck", "mosi", "miso", "cs", "reset") if pin in spi)
    # Its driver's only check at start is VersionReg, which reads 0x00 or 0xFF when nothing drives MISO.
    advice = (
        f"the MFRC522 did not answer: check its wiring to {pins} (the module's SDA pin is CS), its 3.3 V and GND "
        f"(see {_wiring(board)})"
    )
    return CheckResult(name, False, found, advice)


def _sensor_result(record: Mapping[str, Any], board: Mapping[str, Any]) -> CheckResult:
    sensor = record["name"]
    name = f"sensor {sensor}"
    if "error" in record:
        found = f"failed ({record['error']})"
        if sensor in _I2C_CHIPS:
            where = f"at I2C address 0x{record['address']:02x}"
            return CheckResult(name, False, found, _i2c_advice(_I2C_CHIPS[sensor], where, record, board))
        return CheckResult(name, False, found, f"the board's profile has no {sensor} input: flash it without {sensor}")
    values = record["values"]
    found = ", ".join(f"{quantity} {value:g}" for quantity, value in values.items())
    if record["ok"]:
        return CheckResult(name, True, found)
    ranges = record["ranges"]
    outside = "; ".join(
        f"{quantity} {values[quantity]:g} is outside {ranges[quantity][0]}..{ranges[quantity][1]}"
        for quantity in record["out_of_range"]
    )
    if sensor == "battery":
        battery = board.get("battery") or {}
        advice = (
            f"{outside} (a Li-ion cell): check that a cell is connected, and the divider "
            f"(×{battery.get('ratio')}) on GPIO{battery.get('pin')}"
        )
    else:
        advice = (
            f"{_I2C_CHIPS[sensor]} reads {outside}, its datasheet's range: the sensor is damaged, or another chip "
            "answers at its address; replace it if a power cycle does not help"
        )
    return CheckResult(name, False, found, advice)


def _i2c_advice(chip: str, where: str, record: Mapping[str, Any], board: Mapping[str, Any], extra: str = "") -> str:
    i2c = board.get("i2c") or {}
    pins = f"SDA=GPIO{i2c.get('sda')}/SCL=GPIO{i2c.get('scl')}"
    errno = record.get("errno")
    if errno == _EIO:
        return (
            f"{chip} {where} answered with damaged data: shorten the wires to {pins}, or add 4.7 kΩ pull-ups "
            "from SDA and SCL to 3.3 V, then check again"
        )
    if errno == _ETIMEDOUT:
        return f"{chip} {where} did not finish a measurement: power-cycle the board; replace the {chip} if it stays so"
    return f"{chip} {where} did not answer: check its wiring to {pins}, its 3.3 V and GND{extra} (see {_wiring(board)})"


def _counters(record: Mapping[str, Any]) -> str:
    if "uplink_next" not in record:
        return "none (a bridge only relays)"
    last = record["downlink_last"]
    parts = [f"uplink from {record['uplink_next']}", f"last downlink {'none yet' if last is None else last}"]
    if "queued" in record:
        parts.append(f"{record['queued']} check-ins queued, {record['dropped']} dropped")
        parts.append(f"next check-in number {record['next_number']}")
    return ", ".join(parts)


def _not_borne(port: str) -> InstallError:
    return InstallError(
        f"the board on {port} runs MicroPython without Borne's firmware (or with one older than this command): "
        f"install it with `borne board flash --port {port} …`, then run this again"
    )


# `borne badge enroll`: badges read on a door board (firmware/borne/enrolment.py), as their tokens.

ENROL_POLL_S = 0.15  # as the firmware polls its reader: a tap lasts a few hundred ms
ENROL_READ_TIMEOUT_S = 1
ENROL_PROGRESS_S = 15  # a line of progress while no badge comes
_BADGE_MARK = "BORNE-BADGE "


@dataclass(frozen=True)
class EnrolledBadge:
    """A badge as the facility's directory knows it: its token (hex, as check-ins and MQTT carry it)."""

    token: str
    tag_type: str


def enroll_badges(
    port: str,
    *,
    on_badge: Callable[[EnrolledBadge], None],
    count: int | None = None,
    timeout_s: float = 120,
    report: Callable[[str], None] = print,
) -> list[EnrolledBadge]:
    """Stop the firmware on the door board at `port` and read badges on its reader, each once, until
    `count` of them or `timeout_s`; `on_badge` gets each as it comes. The board computes the tokens
    with its badge key: no UID reaches this computer. The firmware starts again at the end.

    One mpremote session in the raw REPL, with one short exec per poll: the board keeps its reader
    and the badges seen between them, and the console is free between polls."""
    from mpremote.transport import TransportError, TransportExecError
    from mpremote.transport_serial import SerialTransport

    try:
        # A read timeout, so that a board that went quiet (a reset) ends a read: on a pty, mpremote reads
        # without checking what is waiting, and would otherwise wait for ever.
        transport = SerialTransport(port, baudrate=115200, timeout=ENROL_READ_TIMEOUT_S)
    except TransportError as error:
        raise InstallError(f"{error}\n{_advice_on(str(error), port)}") from None
    badges: list[EnrolledBadge] = []
    reader = None  # its name, once the board reads badges
    try:
        _enter_raw_repl(transport)
        started = _enrolment_records(transport.exec("import borne.enrolment\nborne.enrolment.start()"))
        reader = _enrolment_ready(started, port)
        limit = f"after {count} badges or {timeout_s:g} s" if count else f"after {timeout_s:g} s"
        report(f"tap each badge on the {reader} reader; this stops {limit} (Ctrl-C stops it sooner)")
        deadline = time.monotonic() + timeout_s
        said = time.monotonic()
        while (count is None or len(badges) < count) and time.monotonic() < deadline:
            for record in _enrolment_records(transport.exec("borne.enrolment.poll()")):
                if "token" in record:
                    badge = EnrolledBadge(record["token"], record["tag_type"])
                    badges.append(badge)
                    on_badge(badge)
                    said = time.monotonic()
                elif "reader_error" in record:
                    report(f"warning: the reader misread a badge ({record['reader_error']}): hold it flat and still")
            if time.monotonic() - said >= ENROL_PROGRESS_S:
                report(f"waiting for badges: {len(badges)} so far, {max(0.0, deadline - time.monotonic()):.0f} s left")
                said = time.monotonic()
            time.sleep(ENROL_POLL_S)
    except TransportExecError as error:
        if _NOT_BORNE in error.error_output:
            raise _not_borne(port) from None
        failure = error.error_output.strip().splitlines()[-1]
        raise InstallError(f"the board failed during the enrolment: {failure}\n{_advice_on('', port)}") from None
    except TransportError as error:
        if reader is not None:
            raise InstallError(
                f"the board on {port} stopped answering during the enrolment ({error}): did it reset? "
                f"Badges read before: {len(badges)}; run this again for the others"
            ) from None
        raise InstallError(f"{error}\n{_advice_on(str(error), port)}") from None
    except KeyboardInterrupt:
        report("stopped")
    finally:
        _restart(transport)
    return badges


def _enrolment_records(output: bytes) -> list[dict[str, Any]]:
    lines = output.decode(errors="replace").splitlines()
    return [json.loads(line[len(_BADGE_MARK) :]) for line in lines if line.startswith(_BADGE_MARK)]


def _enrolment_ready(records: list[dict[str, Any]], port: str) -> str:
    """The reader's name once the board is ready to read badges; InstallError says why it is not."""
    if not records:
        raise _not_borne(port)  # a firmware without enrolment answers nothing
    record = records[0]
    error = record.get("error")
    if error is None:
        return record["reader"]
    if error == "no_reader":
        raise InstallError(
            f"the board on {port} has no badge reader configured: enrol badges on a door board "
            "(one flashed with --nfc pn532 or --nfc mfrc522)"
        )
    if error == "reader":
        raise InstallError(
            f"the board's {record['reader'].upper()} reader did not answer ({record['detail']}): "
            f"`borne board check --port {port}` says what to check"
        )
    raise InstallError(f"the board's configuration does not load: {record['detail']}")  # error "config"


def _enter_raw_repl(transport: Any) -> None:
    """Stop the firmware and get the raw REPL, as `mpremote exec` does; tried again for a while, as the
    installer's probe is, for a board whose firmware keeps crashing until it stays in safe mode."""
    from mpremote.transport import TransportError

    deadline = time.monotonic() + PROBE_PATIENCE_S
    while True:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # what the board said instead: not for the installer
                transport.enter_raw_repl(soft_reset=True)
            return
        except TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(PROBE_PAUSE_S)


def _restart(transport: Any) -> None:
    """Start the board's firmware again (a reset), and let the port go."""
    from mpremote.transport import TransportError

    with contextlib.suppress(TransportError, OSError):  # a board that went away: nothing to restart
        transport.exec_raw_no_follow("import machine\nmachine.reset()")
    transport.close()
