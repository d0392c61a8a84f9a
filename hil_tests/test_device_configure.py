"""`borne device configure` on the virtual rig: a room node's report interval changed over the air.

The real gateway queues the change in its state, keeps it across a restart, sends it in the
receive window after the node's next status; the real firmware applies it, keeps it in its
config.json and shows it in its next status; its telemetry then comes at the new pace.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from boards.registry import Registry
from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from payload_codec import Config, config_digest, encode_body
from simulator.virtual_site import NodeSpec, VirtualSite

ROOM = NodeSpec(401, "classroom", sensors=("bme280",), telemetry_s=40, status_s=60)
RADIO = {"sf": 7}  # the bridge board listens on SF7 only
FASTER_S = 10
BOOT_S = 60  # the site's VMs boot on a shared 2-core machine
STATUS_S = 2 * 66  # a status period and its jitter, twice: the one after a lost window too


# The scenario reads the gateway's state file and restarts it from the simulator.
pytestmark = pytest.mark.rig(needs=[SIMULATOR])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualSite]:
    require_site_tools()
    with VirtualSite(tmp_path_factory.mktemp("configure_site"), [ROOM], radio=RADIO, record_mqtt=True) as site:
        yield site


def borne(site: VirtualSite, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `borne` command against the site's gateway configuration, as an operator does."""
    command = [sys.executable, "-m", "borne", *args, "--config", str(site.config_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def statuses(site: VirtualSite) -> list[dict]:
    assert site.mqtt is not None
    return site.mqtt.on(f"/{ROOM.name}/status")


def heard_at(messages: list[dict]) -> list[float]:
    return [message["receptions"][0]["received_at"] for message in messages]


def test_a_report_interval_changed_over_the_air_shows_in_the_next_status_and_the_telemetry_pace(site):
    mqtt = site.mqtt
    assert mqtt is not None
    mqtt.wait_for(lambda: statuses(site), BOOT_S, "the node's first status")
    assert statuses(site)[0]["config_digest"] == 0

    def telemetry() -> list[dict]:
        return mqtt.on(f"/{ROOM.name}/telemetry")

    # Two reports at the old pace first: the change may go out 10 s after the first status (the boot
    # status's second), before the second report.
    mqtt.wait_for(lambda: len(telemetry()) >= 2, ROOM.telemetry_s * 1.1 + 10, "two reports at the old pace")
    queued = borne(site, "device", "configure", str(ROOM.device_id), "--report-interval", str(FASTER_S))
    assert queued.returncode == 0, queued.stderr
    assert Registry.load(site.registry_file).devices[ROOM.device_id].report_interval_s == FASTER_S  # Home Assistant's
    pending = borne(site, "gateway", "status")
    assert f"report_interval_s {FASTER_S}" in pending.stdout and "tries 0" in pending.stdout

    site.stop_gateway()  # the pending config is in the state file, not in the daemon's memory
    site.start_gateway()
    assert f"report_interval_s {FASTER_S}" in borne(site, "gateway", "status").stdout

    digest = config_digest(encode_body(Config(report_interval_s=FASTER_S)))
    mqtt.wait_for(lambda: any(s["config_digest"] == digest for s in statuses(site)), STATUS_S, "a status showing it")
    applied_at = next(s for s in statuses(site) if s["config_digest"] == digest)["receptions"][0]["received_at"]
    assert "config downlinks pending: none" in borne(site, "gateway", "status").stdout
    board_config = json.loads((site.work / "boards" / ROOM.name / "flash" / "config.json").read_text())
    assert board_config["intervals"]["telemetry_s"] == FASTER_S and board_config["config_digest"] == digest

    # The sleep under way when the config came ends first: up to one old interval, then the new pace.
    wait_s = ROOM.telemetry_s * 1.1 + 4 * FASTER_S * 1.1 + 10
    mqtt.wait_for(lambda: sum(t > applied_at for t in heard_at(telemetry())) >= 4, wait_s, "faster telemetry")
    times = heard_at(telemetry())
    before = [b - a for a, b in itertools.pairwise(times) if b < applied_at]
    after = [b - a for a, b in itertools.pairwise(times) if a > applied_at]
    # Each interval varies by 10 % at random: 36-44 s before, 9-11 s after. Halfway between tells them apart.
    assert before and all(gap > (ROOM.telemetry_s + FASTER_S) / 2 for gap in before)
    assert after and all(gap < (ROOM.telemetry_s + FASTER_S) / 2 for gap in after)


def test_a_spreading_factor_only_a_missing_receiver_would_hear_is_refused_with_the_reason(site):
    assert site.mqtt is not None
    site.mqtt.wait_for(lambda: statuses(site), BOOT_S, "the node's first frame")
    refused = borne(site, "device", "configure", str(ROOM.device_id), "--sf", "9")
    assert refused.returncode == 2
    assert "SF9 would be heard by no receiver" in refused.stderr and "listens on SF7 only" in refused.stderr
    assert borne(site, "device", "configure", str(ROOM.device_id), "--sf", "7").returncode == 0


def test_power_above_the_sub_bands_legal_erp_is_refused_with_the_highest_allowed(site):
    assert site.mqtt is not None
    site.mqtt.wait_for(lambda: statuses(site), BOOT_S, "the node's first frame")
    refused = borne(site, "device", "configure", str(ROOM.device_id), "--power", "20")
    assert refused.returncode == 2
    assert "sub-band g1" in refused.stderr and "use --power 14 or less" in refused.stderr
