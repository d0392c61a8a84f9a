"""A site whose boards all carry an SX1262: a Heltec V3 bridge and a LilyGO T3-S3 door node, each on
our SX126x driver against the chip's command-level model, wired as their profiles say."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil_tests.conftest import checkins_of, present, rig_site
from hil_tests.rig import Site
from simulator.virtual_site import NodeSpec

DOOR = NodeSpec(101, "entrance", board="lilygo_t3s3", nfc="pn532", direction="in", sensors=("bme280",), telemetry_s=10)


pytestmark = pytest.mark.rig(nodes=[DOOR])


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from rig_site(request, tmp_path_factory, radio={"sf": 7}, bridge_board="heltec_v3")


def test_a_check_in_crosses_from_an_sx1262_node_to_an_sx1262_bridge(site):
    mqtt = site.mqtt
    assert mqtt is not None
    uid = bytes.fromhex("04a1b2c3")
    present(site, uid)
    mqtt.wait_for(lambda: checkins_of(site, uid), 60, "the check-in")
    (checkin,) = checkins_of(site, uid)
    assert checkin["direction"] == "in"


def test_the_sx1262_node_reports_its_telemetry_and_no_radio_error(site):
    mqtt = site.mqtt
    assert mqtt is not None
    mqtt.wait_for(lambda: mqtt.on("/entrance/telemetry") and mqtt.on("/entrance/status"), 60, "telemetry and status")
    assert mqtt.on("/entrance/status")[-1]["radio_errors"] == 0
