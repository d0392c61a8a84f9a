"""A battery node without a badge reader: it reports, deep-sleeps, wakes and reports again. Its SCD4x
measures once per wake (single shot): a CO2 value in every report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil_tests.conftest import rig_site
from hil_tests.rig import SIMULATOR, Site
from simulator.virtual_site import NodeSpec

SLEEPER = NodeSpec(
    301, "garden-shed", sensors=("bme280", "scd4x", "battery"), telemetry_s=10, status_s=60, deep_sleep=True
)
WAKES = 4
pytestmark = pytest.mark.rig(nodes=[SLEEPER])
CO2_PPM = 420  # the virtual site's air


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from rig_site(request, tmp_path_factory, radio={"sf": 7})


@pytest.mark.rig(needs=[SIMULATOR])  # the battery's exact voltage and the boot count are the simulator's
def test_a_battery_node_reports_between_deep_sleeps_without_wasting_counters(site):
    mqtt = site.mqtt
    assert site.simulated is not None
    mqtt.wait_for(lambda: len(mqtt.on("/garden-shed/telemetry")) >= WAKES, 30 + WAKES * 25, f"{WAKES} reports")
    telemetry = mqtt.on("/garden-shed/telemetry")
    assert all(abs(t["battery_mv"] - SLEEPER.battery_mv) <= 20 for t in telemetry)
    assert [t.get("co2_ppm") for t in telemetry] == [CO2_PPM] * len(telemetry)
    counters = sorted(int(m["event_id"].split(":")[1]) for m in telemetry + mqtt.on("/garden-shed/status"))
    assert counters == list(range(len(counters)))  # RTC memory carries the counter over each sleep
    causes = [s["reset_cause"] for s in mqtt.on("/garden-shed/status")]
    assert causes[0] == "power_on"
    assert site.simulated.boards["garden-shed"].boots >= WAKES  # a boot per report: each after the first is a wake
