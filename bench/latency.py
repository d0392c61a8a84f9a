"""Badge to MQTT on the virtual rig: how long after a badge is presented its check-in is on the broker.

A door node (PN532, the real firmware in the real MicroPython VM), the bridge board, the real
gateway daemon and mosquitto: `VirtualSite`. Each visitor's badge is presented once the previous
check-in is published; the time runs from the badge at the reader to the message's arrival at an
MQTT subscriber. What the radio alone must take (the frame's time on air) and what the gateway
holds on purpose (its dedup window, to merge copies heard by several receivers) are taken out:
the rest is the reader's polling, the firmware, the serial link, verification, the SQLite commit
and the publish. The node's ACK wait comes after the publish, so it is not in the figure.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from gateway_daemon.config import parse_config
from payload_codec import Checkin, CheckinBatch, badge_token, build_frame, derive_badge_key, derive_device_keys
from payload_codec.airtime import time_on_air_ms
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_site import NodeSpec, VirtualSite

VISITORS = 30
SF = 7
PUBLISHED_WITHIN_S = 30
BETWEEN_VISITORS_S = 2.0  # the reader sees the badge gone, and the node's duty cycle has room
GOAL_P99_MS = 300  # beyond time on air and the dedup window (issue: HIL bench and soak)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def latencies_ms() -> list[float]:
    """Badge presented → check-in at an MQTT subscriber, in ms, for each of `VISITORS` badges."""
    badge_key = derive_badge_key(TEST_MASTER_KEY)
    door = NodeSpec(101, "entrance", nfc="pn532", direction="in")
    with (
        tempfile.TemporaryDirectory(prefix="borne-bench-") as folder,
        VirtualSite(Path(folder), [door], radio={"sf": SF}, record_mqtt=True) as site,
    ):
        assert site.mqtt is not None
        time.sleep(5)  # the node boots and sends its status first
        figures = []
        for number in range(VISITORS):
            uid = bytes([0x04, 0xBE, 0x7C]) + number.to_bytes(4, "big")
            token = badge_token(badge_key, uid).hex()
            presented = time.monotonic()
            site.present_badge("entrance", uid)
            figures.append((_published_at(site, token, presented) - presented) * 1000)
            site.remove_badge("entrance")
            time.sleep(BETWEEN_VISITORS_S)
    return figures


def _published_at(site: VirtualSite, token: str, presented: float) -> float:
    """When the check-in of badge `token` arrived at the site's MQTT recorder."""
    assert site.mqtt is not None
    while (arrived := site.mqtt.arrived("checkin", lambda message: message["badge_token"] == token)) is None:
        if time.monotonic() > presented + PUBLISHED_WITHIN_S:
            raise TimeoutError(f"badge {token} not published within {PUBLISHED_WITHIN_S} s")
        time.sleep(0.002)
    return arrived


def latency_table() -> str:
    total = latencies_ms()
    one = Checkin(badge_token=bytes(8), tag_type="mifare_classic", direction="in", uid_length=7, age_s=0)
    batch = CheckinBatch(first_number16=0, checkins=(one,))
    frame_size = len(build_frame(batch, 101, 1, derive_device_keys(TEST_MASTER_KEY, 101)))
    airtime = time_on_air_ms(frame_size, SF)
    dedup = parse_config("").gateway.dedup_window_ms
    beyond = [figure - airtime - dedup for figure in total]
    rows = [
        ("badge → MQTT", total),
        (f"beyond time on air ({airtime:.0f} ms) and dedup window ({dedup} ms)", beyond),
    ]
    lines = [
        f"## Badge to MQTT on the virtual rig ({VISITORS} badges, SF{SF}, a {frame_size}-byte check-in frame)",
        "",
        "| | p50 | p95 | p99 |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {statistics.median(values):.0f} ms | {_percentile(values, 0.95):.0f} ms "
            f"| {_percentile(values, 0.99):.0f} ms |"
            for name, values in rows
        ),
        "",
        f"Goal: p99 beyond time on air below {GOAL_P99_MS} ms; now {_percentile(beyond, 0.99):.0f} ms. The VM runs "
        "faster than an ESP32, and the reader's polling interval is part of the figure.",
    ]
    return "\n".join(lines)
