"""The configuration file and the device registry: defaults, clear errors, keys kept private."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from boards.registry import UNRECORDED_BOARD, Registry, RegistryError
from gateway_daemon.config import EXAMPLE, ConfigError, load_config, parse_config

from .site import write_registry


def test_the_example_is_the_defaults():
    assert parse_config("") == parse_config(EXAMPLE)
    assert parse_config("").mqtt.port == 1883


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mqtt]\nhots = 'x'\n", "unknown key mqtt.hots"),
        ("[udp]\nenabled = 1\n", "udp.enabled must be true or false"),
        ("[radios]\n", "unknown section(s) radios"),
        ("[gateway]\nmax_counter_gap = 0\n", "max_counter_gap"),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_config_errors_say_what_to_fix(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(text)


def test_a_dedup_window_that_would_make_every_ack_late_is_refused():
    # An ACK waits for its frame's window to close: past ack_delay_ms − 100 it reaches the
    # concentrator too late (lora_pkt_fwd answers TOO_LATE).
    assert parse_config("[gateway]\ndedup_window_ms = 900\n").gateway.dedup_window_ms == 900
    with pytest.raises(ConfigError, match=r"dedup_window_ms must be from 0 to 900 \(radio.ack_delay_ms − 100\)"):
        parse_config("[gateway]\ndedup_window_ms = 1000\n")
    with pytest.raises(ConfigError, match="from 0 to 1900"):
        parse_config("[gateway]\ndedup_window_ms = 2000\n[radio]\nack_delay_ms = 2000\n")
    with pytest.raises(ConfigError, match="from 0 to 900"):
        parse_config("[gateway]\ndedup_window_ms = -1\n")


def test_a_ca_file_that_is_not_there_or_no_certificate_is_named_at_start(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text(f'[mqtt]\ntls = true\nca_file = "{tmp_path / "ca.pem"}"\n')
    with pytest.raises(ConfigError, match=r"mqtt.ca_file .*ca.pem: no such file; give the certificate"):
        load_config(config)
    (tmp_path / "ca.pem").write_text("junk\n")
    with pytest.raises(ConfigError, match=r"ca.pem: not a certificate the gateway can read \(.*NO_CERTIFICATE"):
        load_config(config)


def test_registry_round_trips_and_is_private(tmp_path):
    path = tmp_path / "devices.toml"
    written = write_registry(path, device_ids=(1, 2))
    assert Registry.load(path).devices == written.devices
    assert os.stat(path).st_mode & 0o077 == 0


def test_a_device_keeps_its_key_epoch_and_board_through_a_save(tmp_path):
    path = tmp_path / "devices.toml"
    registry = write_registry(path, key_epoch=3)
    registry.devices[258] = replace(registry.devices[258], flashed_on="240ac4000002")
    registry.save(path)
    device = Registry.load(path).devices[258]
    assert (device.key_epoch, device.flashed_on) == (3, "240ac4000002")


def test_an_entry_from_before_key_epochs_is_epoch_0_flashed_on_an_unrecorded_board(tmp_path):
    path = tmp_path / "devices.toml"
    write_registry(path)
    path.write_text(path.read_text().replace("key_epoch = 0\n", ""))
    device = Registry.load(path).devices[258]
    assert (device.key_epoch, device.flashed_on) == (0, UNRECORDED_BOARD)
    Registry.load(path).save(path)  # migrated: the file now says so
    assert "key_epoch = 0" in path.read_text() and f'flashed_on = "{UNRECORDED_BOARD}"' in path.read_text()


def test_a_registered_device_never_flashed_has_no_board(tmp_path):
    path = tmp_path / "devices.toml"
    write_registry(path)
    assert Registry.load(path).devices[258].flashed_on is None


def test_registry_refuses_a_key_epoch_that_is_not_a_32_bit_number(tmp_path):
    path = tmp_path / "devices.toml"
    write_registry(path)
    path.write_text(path.read_text().replace("key_epoch = 0", "key_epoch = -1"))
    with pytest.raises(RegistryError, match="key_epoch must be a whole number"):
        Registry.load(path)


def test_registry_refuses_a_name_that_cannot_be_a_topic_level(tmp_path):
    path = tmp_path / "devices.toml"
    write_registry(path)
    path.write_text(path.read_text().replace('name = "door-258"', 'name = "door/258"'))
    with pytest.raises(RegistryError, match="MQTT topic level"):
        Registry.load(path)


def test_device_list_never_prints_a_key_in_full(tmp_path):
    path = tmp_path / "devices.toml"
    registry = write_registry(path)
    listing = subprocess.run(
        [sys.executable, "-m", "borne", "device", "list", "--registry", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    key = registry.devices[258].keys.mic_key.hex()
    assert key[:4] in listing and key not in listing


def test_json_logs_are_one_object_a_line():
    import json
    import logging

    from gateway_daemon.logs import JsonLines

    record = logging.LogRecord(
        "gateway_daemon.pipeline", logging.WARNING, __file__, 1, "ACK to %s failed", (258,), None
    )
    line = JsonLines().format(record)
    assert json.loads(line) | {"time": "t"} == {
        "time": "t",
        "level": "warning",
        "logger": "gateway_daemon.pipeline",
        "message": "ACK to 258 failed",
    }


@pytest.mark.parametrize("journal", [False, True], ids=["to a file", "to the journal"])
def test_plain_log_lines_begin_with_the_time_unless_the_journal_stamps_them(tmp_path, monkeypatch, journal):
    import logging
    import re

    from gateway_daemon import logs

    with (tmp_path / "gateway.log").open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        stream = os.fstat(stderr.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stream.st_dev}:{stream.st_ino}" if journal else "8:12345")
        logs.configure("INFO", json_lines=False)
        logging.getLogger("gateway_daemon.pipeline").warning("ACK to %s failed", 258)
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)  # not the closed file for the next test
    line = (tmp_path / "gateway.log").read_text().rstrip("\n")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.fullmatch(("" if journal else stamp) + "WARNING gateway_daemon.pipeline: ACK to 258 failed", line), line
