"""A battery node without a badge reader: it reports, deep-sleeps, wakes and reports again. Its SCD4x
measures once per wake (single shot): a CO2 value in every report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil_tests.conftest import running_site
from simulator.virtual_site import NodeSpec, VirtualSite

SLEEPER = NodeSpec(
    301, "garden-shed", sensors=("bme280", "scd4x", "battery"), telemetry_s=10, status_s=60, deep_sleep=True
)
WAKES = 4
CO2_PPM = 420  # the virtual site's air


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualSite]:
    yield from running_site(tmp_path_factory, "battery_site", [SLEEPER], radio={"sf": 7})


def test_a_battery_node_reports_between_deep_sleeps_without_wasting_counters(site):
    mqtt = site.mqtt
    assert mqtt is not None
    mqtt.wait_for(lambda: len(mqtt.on("/garden-shed/telemetry")) >= WAKES, 30 + WAKES * 25, f"{WAKES} reports")
    telemetry = mqtt.on("/garden-shed/telemetry")
    assert all(abs(t["battery_mv"] - SLEEPER.battery_mv) <= 20 for t in telemetry)
    assert [t.get("co2_ppm") for t in telemetry] == [CO2_PPM] * len(telemetry)
    counters = sorted(int(m["event_id"].split(":")[1]) for m in telemetry + mqtt.on("/garden-shed/status"))
    assert counters == list(range(len(counters)))  # RTC memory carries the counter over each sleep
    causes = [s["reset_cause"] for s in mqtt.on("/garden-shed/status")]
    assert causes[0] == "power_on"
    assert site.boards["garden-shed"].boots >= WAKES  # a boot per report: each after the first is a wake
