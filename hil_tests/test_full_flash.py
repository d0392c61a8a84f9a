"""A door whose flash is full: it keeps reading badges and sending check-ins, and does not crash-loop.

The virtual flash is as small as an ESP32's (2 MiB of littlefs); a door that boots with it full
cannot write its check-in journal. Before, that was an OSError at boot, three crashes and safe
mode: no check-in at all. Now the queue goes on in RAM (lost only if the power goes too)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hil_tests.conftest import BADGE_KEY, require_site_tools
from hil_tests.rig import SIMULATOR
from payload_codec import badge_token
from simulator.virtual_site import NodeSpec, VirtualSite

DOOR = NodeSpec(101, "entrance", nfc="pn532", direction="in", status_s=60)
BOOT_S = 60
BLOCK = 4096
PARTITION_BLOCKS = 512  # flash.mjs: MicroPython's vfs partition, 2 MiB

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # filling the flash from outside is the simulator's


@pytest.fixture
def site(tmp_path) -> Iterator[VirtualSite]:
    require_site_tools()
    with VirtualSite(tmp_path, [DOOR], radio={"sf": 7}, record_mqtt=True) as site:
        yield site


def test_a_door_booting_with_a_full_flash_still_sends_its_check_ins(site):
    mqtt = site.mqtt
    assert mqtt is not None
    mqtt.wait_for(lambda: mqtt.on("/entrance/status"), BOOT_S, "the door's first status")
    board = site.boards["entrance"]
    site.cut_power("entrance")
    for journal in board.flash.glob("checkins.*"):
        journal.unlink()  # nothing was queued: the journal must be written anew at boot
    (board.flash / "photos.bin").write_bytes(bytes(PARTITION_BLOCKS * BLOCK))  # another program's files
    boots = board.boots
    site.restore_power("entrance")

    uids = [bytes([0x04, 0x66, 0x11, 0x22, 0x33, 0x44, i]) for i in range(3)]
    for uid in uids:
        site.present_badge("entrance", uid)
        time.sleep(0.8)
        site.remove_badge("entrance")
        time.sleep(0.7)
    tokens = {badge_token(BADGE_KEY, uid).hex() for uid in uids}

    def published() -> set[str]:
        return {checkin["badge_token"] for checkin in mqtt.on("/entrance/checkin")}

    mqtt.wait_for(lambda: tokens <= published(), BOOT_S, "the check-ins made with a full flash")
    assert board.boots == boots + 1  # one boot, for the power coming back: no crash, no safe mode
    assert not (board.flash / "crash.txt").exists()
