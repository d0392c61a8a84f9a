"""A board as an installer meets it: blank (MicroPython alone), flashed over its serial port with
`borne board flash --port` (the real mpremote), its first frames verified by the gateway; and a board
flashed with another site's key, whose frames the gateway refuses and reports.

On the virtual rig the board is a virtual board served blank on a pty; on a bench, the rig file's
board marked `flashable = true`, which the suite erases first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.conftest import rig_site
from hil_tests.rig import Site
from simulator.virtual_site import NodeSpec

# Registered with a status every 60 s, which `borne board flash` takes from the registry: a status is not
# acknowledged, so one lost to a collision is followed by the next instead of by nothing for an hour.
SPARE = NodeSpec(301, "spare", blank=True, status_s=60)
FIRST_FRAMES_S = 90  # the status a node sends as it boots, on a loaded machine
A_STATUS_S = FIRST_FRAMES_S + 60  # the boot status, or if it collided, the next
pytestmark = pytest.mark.rig(nodes=[SPARE])


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from rig_site(request, tmp_path_factory, radio={"sf": 7})


def statuses(site: Site) -> list[dict]:
    return site.mqtt.on(f"/{site.topic_name('spare')}/status")


def refused(site: Site, device_id: int) -> list[dict]:
    """What the gateway reported refusing from `device_id`."""
    return [r for r in site.mqtt.on(f"/gateway/{site.gateway_name}/rejected") if r.get("device_id") == device_id]


def test_a_blank_board_flashed_over_its_serial_port_sends_frames_the_gateway_verifies(site):
    site.erase("spare")
    published = len(statuses(site))
    said = site.flash("spare")
    assert "[4/4] board reset" in said, said

    site.mqtt.wait_for(lambda: len(statuses(site)) > published, A_STATUS_S, "the flashed board's first status")
    config = site.board_config("spare")  # what the board holds, read over its serial port; it restarts after
    first = statuses(site)[published]
    assert (config["role"], config["device_id"], config["site"]) == ("node", first["device_id"], first["site"])
    epoch = config.get("key_epoch", 0)
    assert first["event_id"].split(":")[0] == f"{config['device_id']}" + (f"e{epoch}" if epoch else "")
    site.mqtt.wait_for(lambda: len(statuses(site)) > published + 1, A_STATUS_S, "its status after the restart")
    assert refused(site, config["device_id"]) == []


def test_a_board_flashed_with_another_sites_key_is_refused_and_reported(site, tmp_path: Path):
    other_site = tmp_path / "other-site-keys.toml"
    other_site.write_text(f'master_key = "{os.urandom(16).hex()}"\n', encoding="utf-8")
    other_site.chmod(0o600)
    # Flashed over what it holds: as the same device it keeps its counters, so its frames pass the
    # gateway's counter check and fail on their MIC.
    site.flash("spare", keys=other_site)
    published = len(statuses(site))  # counted once flashed: before, it sent statuses with the right key

    device_id = site.device_id("spare")
    site.mqtt.wait_for(
        lambda: any(r["reason"] == "bad_mic" for r in refused(site, device_id)), FIRST_FRAMES_S, "a refused frame"
    )
    assert len(statuses(site)) == published  # nothing it sent was taken for the registered device's
