"""A rig file is read as the bench owner wrote it, and a mistake in it says which key to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hil_tests.rig_file import RigFileError, load_rig_file

EXAMPLE = Path(__file__).resolve().parent / "bench.example.toml"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "bench.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_example_rig_file_describes_a_bench_with_a_bridge_a_concentrator_three_nodes_and_a_spare():
    rig = load_rig_file(EXAMPLE)
    assert rig.bridge is not None and rig.bridge.port == "/dev/ttyUSB0" and rig.bridge.power_switch
    assert [node.name for node in rig.nodes] == ["entrance", "side-door", "meeting-room", "spare"]
    assert rig.udp_port == 1700 and rig.gateway.name == "town-hall-pi" and rig.gateway.controllable
    assert [node.power_switch for node in rig.nodes] == [True, False, False, False]
    assert [node.flashable for node in rig.nodes] == [False, False, False, True]
    assert rig.site.keys == EXAMPLE.parent / "site-keys.toml" and rig.site.sf == 9
    assert rig.broker_control and rig.badge is not None and rig.badge.kind == "prompt"


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ('nfc = "pn532"', 'nfc = "pn532"\nreader = "pn532"', "unknown keys ['reader']"),
        ('power_on = "uhubctl -l 1-1 -p 2 -a on"', "", "needs both power_off and power_on"),
        ('presenter = "prompt"', 'presenter = "camera"', "presenter = 'camera': one of prompt, command"),
        ("device_id = 101\n", "", "a node needs its device_id"),
        ('start = "suite"', 'start = "running"\nstop_command = "true"', "needs both stop_command and start_command"),
        ('keys = "site-keys.toml"', "", "spare may be flashed (flashable = true): set keys"),
        ('start_command = "sudo systemctl start mosquitto"', "", "[broker]: restarting the broker needs both"),
        ('start = "suite"', 'start = "suite"\nreload_command = "true"', 'reload_command is for start = "running"'),
    ],
)
def test_a_mistake_in_the_rig_file_names_the_key_to_fix(tmp_path, old, new, said):
    with pytest.raises(RigFileError, match=re.escape(said)):
        load_rig_file(edited(tmp_path, old, new))
