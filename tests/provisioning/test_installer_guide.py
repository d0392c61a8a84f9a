"""The installer's guides, `docs/installer.en.md` and `docs/installer.fr.md`, held to the code.

Their wiring tables are the profiles' (`boards.profiles.wiring`), and every message of their
troubleshooting tables is one that a command prints when provoked here, the way an installer
provokes it."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from boards.profiles import load_profile, profile_names, wiring
from borne.cli import main
from tests.provisioning.conftest import NODE_ID, READER_ID, SITE, Site

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = [DOCS / "installer.en.md", DOCS / "installer.fr.md"]
TROUBLESHOOTING = {"installer.en.md": "## When something goes wrong", "installer.fr.md": "## Quand ça ne va pas"}


def borne(*arguments: str | Path) -> str:
    """What `borne ARGUMENTS` prints on stderr, run in this process."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        main([str(argument) for argument in arguments])
    return errors.getvalue()


def flash(site: Site, *options: str | Path, port: str = "/dev/ttyUSB0") -> str:
    """`borne board flash` of the site's registered node onto `port`, with `options` added."""
    return borne(
        "board", "flash", "--port", port, "--board", "heltec_v2", "--role", "node",
        "--keys", site.keys, "--registry", site.registry, *options,
    )  # fmt: skip


def site_init_twice(site: Site, tmp_path: Path) -> str:
    borne("site", "init", SITE, "--dir", tmp_path / "site")
    return borne("site", "init", SITE, "--dir", tmp_path / "site")


def key_file_readable_by_others(site: Site, tmp_path: Path) -> str:
    os.chmod(site.keys, 0o644)
    return flash(site, "--device", str(NODE_ID), "--dry-run")


def key_file_of_another_site(site: Site, tmp_path: Path) -> str:
    other = tmp_path / "other-keys.toml"
    other.write_text(f'master_key = "{"ab" * 16}"\n', encoding="utf-8")
    os.chmod(other, 0o600)
    return borne(
        "board", "flash", "--port", "/dev/ttyUSB0", "--board", "heltec_v2", "--role", "node",
        "--device", str(NODE_ID), "--keys", other, "--registry", site.registry, "--dry-run",
    )  # fmt: skip


def device_added_twice(site: Site, tmp_path: Path) -> str:
    return borne(
        "device", "add", str(NODE_ID), "--name", "again", "--site", SITE, "--keys", site.keys,
        "--registry", site.registry,
    )  # fmt: skip


def sensor_named_by_its_field(site: Site, tmp_path: Path) -> str:
    return borne(
        "device", "add", "300", "--name", "hall", "--site", SITE, "--keys", site.keys,
        "--registry", site.registry, "--sensors", "temperature_c",
    )  # fmt: skip


def gateway_without_its_configuration(site: Site, tmp_path: Path) -> str:
    return borne("gateway", "status", "--config", tmp_path / "gateway.toml")


def gateway_configuration_not_toml(site: Site, tmp_path: Path) -> str:
    (tmp_path / "gateway.toml").write_text("[gateway\n", encoding="utf-8")
    return borne("gateway", "status", "--config", tmp_path / "gateway.toml")


def key_file_with(tmp_path: Path, text: str) -> Path:
    keys = tmp_path / "other-keys.toml"
    keys.write_text(text, encoding="utf-8")
    os.chmod(keys, 0o600)
    return keys


def flash_with_keys(site: Site, keys: Path) -> str:
    return borne(
        "board", "flash", "--port", "/dev/ttyUSB0", "--board", "heltec_v2", "--role", "node",
        "--device", str(NODE_ID), "--keys", keys, "--registry", site.registry, "--dry-run",
    )  # fmt: skip


def gateway_configured(tmp_path: Path, text: str) -> str:
    (tmp_path / "gateway.toml").write_text(text, encoding="utf-8")
    return borne("gateway", "status", "--config", tmp_path / "gateway.toml")


# Each message of the guides' troubleshooting tables, and how an installer comes to read it.
PROVOKED: dict[str, Callable[[Site, Path], str]] = {
    "never overwrites a site's files": site_init_twice,
    "use 1-63 of a-z, 0-9, - and _": lambda site, tmp: borne("site", "init", "Town Hall", "--dir", tmp),
    "no such key file; give the site key file with --keys": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec_v2",
        "--role",
        "node",
        "--device",
        str(NODE_ID),
        "--keys",
        tmp / "missing.toml",
        "--registry",
        site.registry,
        "--dry-run",
    ),
    "is readable by others: `chmod 600": key_file_readable_by_others,
    "register it first with `borne device add": lambda site, tmp: flash(site, "--device", "999", "--dry-run"),
    "the gateway would refuse its frames": key_file_of_another_site,
    "is already registered; remove it first": device_added_twice,
    "name the chips wired to the board": sensor_named_by_its_field,
    "unknown board": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec",
        "--role",
        "bridge",
        "--site",
        SITE,
    ),
    "a node needs its device id": lambda site, tmp: flash(site, "--dry-run"),
    "deep sleep is for battery nodes without a badge reader": lambda site, tmp: flash(
        site, "--device", str(READER_ID), "--nfc", "pn532", "--deep-sleep", "--dry-run"
    ),
    "a check-in direction needs a badge reader": lambda site, tmp: flash(
        site, "--device", str(NODE_ID), "--direction", "in", "--dry-run"
    ),
    "the same on every board of the site": lambda site, tmp: flash(
        site, "--device", str(NODE_ID), "--sf", "13", "--dry-run"
    ),
    "Check the cable and the port name": lambda site, tmp: flash(
        site, "--device", str(NODE_ID), port=str(tmp / "ttyUSB9")
    ),
    "a bridge carries no keys": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec_v3",
        "--role",
        "bridge",
        "--site",
        SITE,
        "--keys",
        site.keys,
        "--dry-run",
    ),
    "`borne gateway config --example >": gateway_without_its_configuration,
    "not valid TOML": gateway_configuration_not_toml,
    "known ones are": lambda site, tmp: flash(site, "--device", str(NODE_ID), "--sensors", "bme680", "--dry-run"),
    "drop it from --sensors": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec_v3",
        "--role",
        "node",
        "--device",
        str(NODE_ID),
        "--keys",
        site.keys,
        "--registry",
        site.registry,
        "--sensors",
        "battery",
        "--dry-run",
    ),
    "--register needs the node's --name and --site": lambda site, tmp: flash(
        site, "--device", "300", "--register", "--dry-run"
    ),
    "a bridge is not in the device registry": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec_v3",
        "--role",
        "bridge",
        "--site",
        SITE,
        "--register",
        "--dry-run",
    ),
    "no such registry; give the site's device registry with --registry": lambda site, tmp: borne(
        "board",
        "flash",
        "--port",
        "/dev/ttyUSB0",
        "--board",
        "heltec_v2",
        "--role",
        "node",
        "--device",
        str(NODE_ID),
        "--keys",
        site.keys,
        "--registry",
        tmp / "missing.toml",
        "--dry-run",
    ),
    "must be 32 hex digits": lambda site, tmp: flash_with_keys(site, key_file_with(tmp, 'master_key = "0011"\n')),
    "cannot read it as TOML": lambda site, tmp: flash_with_keys(site, key_file_with(tmp, "master_key = \n")),
    "Home Assistant expects that": lambda site, tmp: flash(
        site, "--device", str(NODE_ID), "--telemetry-s", "60", "--dry-run"
    ),
    "is not registered in": lambda site, tmp: borne("device", "remove", "999", "--registry", site.registry),
    "unknown key": lambda site, tmp: gateway_configured(tmp, "[gateway]\nport = 1\n"),
    "unknown section(s)": lambda site, tmp: gateway_configured(tmp, "[gatway]\n"),
    "max_counter_gap must be from 1 to 32768": lambda site, tmp: gateway_configured(
        tmp, "[gateway]\nmax_counter_gap = 0\n"
    ),
    "cannot ride out a broker outage": lambda site, tmp: gateway_configured(tmp, "[gateway]\nmax_outbox_events = 10\n"),
}

# Messages that need a board, a badge or a gateway's state: the test named provokes each and asserts it.
PROVOKED_BY = {
    "runs MicroPython without Borne's firmware": "provisioning/test_board_check.py::"
    "test_a_board_without_borne_is_told_to_be_flashed_first",
    "did not answer: check its wiring to": "provisioning/test_board_check.py::"
    "test_a_board_without_its_sensor_fails_the_check_with_where_to_wire_it",
    "the check-in queue needs": "provisioning/test_board_check.py::"
    "test_a_flash_too_full_for_the_check_in_queue_is_told_to_remove_files",
    "has no badge reader configured": "provisioning/test_board_check.py::"
    "test_enroll_on_a_board_without_a_working_reader_says_what_to_do",
    "reader did not answer": "provisioning/test_board_check.py::"
    "test_enroll_on_a_board_without_a_working_reader_says_what_to_do",
    "stopped answering during the enrolment": "provisioning/test_board_check.py::"
    "test_a_board_that_resets_during_the_enrolment_says_how_many_badges_were_read",
    "would be heard by no receiver": "gateway/test_device_config.py::"
    "test_a_spreading_factor_no_receiver_listens_on_is_refused_naming_the_bridge",
    "whose legal limit is": "gateway/test_device_config.py::"
    "test_power_is_capped_at_the_legal_erp_of_the_uplinks_sub_band",
    "has not been heard by this gateway": "gateway/test_device_config.py::"
    "test_radio_changes_wait_until_the_device_was_heard",
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


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_the_guides_tables_of_messages_are_what_the_commands_print(guide: Path) -> None:
    table = _table_rows(_section(guide, TROUBLESHOOTING[guide.name]))
    listed = {re.sub(r"^(`+) ?(.*?) ?\1$", r"\2", row[0]) for row in table}
    assert listed == set(PROVOKED) | set(PROVOKED_BY), "each message in the table is provoked, each provoked one listed"


@pytest.mark.parametrize("message", PROVOKED)
def test_each_message_of_the_guides_is_printed_when_provoked(message: str, site: Site, tmp_path: Path) -> None:
    printed = PROVOKED[message](site, tmp_path)
    assert message in printed, printed


@pytest.mark.parametrize("message", PROVOKED_BY)
def test_each_message_of_the_guides_that_needs_a_board_is_asserted_by_the_test_that_provokes_it(message: str) -> None:
    path, name = PROVOKED_BY[message].split("::")
    source = (Path(__file__).resolve().parents[1] / path).read_text(encoding="utf-8")
    assert f"def {name}(" in source
    body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
    assert message in body


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
