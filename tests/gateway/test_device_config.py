"""Config downlinks: queued in the state, sent after a status, kept until a status shows them applied."""

from __future__ import annotations

import time

import pytest

from boards.registry import Registry
from gateway_daemon.device_config import (
    ConfigRefused,
    check_site_rules,
    max_tx_power_dbm,
    pending_changes,
    queue_config,
)
from gateway_daemon.state import GatewayState, Receiver
from payload_codec import DOWN, Config, Status, build_frame, config_digest, encode_body, open_frame
from payload_codec.vectorgen import DEVICE_ID

from .site import Site
from .test_gateway import KEYS, checkin

FASTER = Config(report_interval_s=30)
BRIDGE_SF9 = Receiver("bridge:/dev/ttyUSB0", 9, 868_100_000, 0.0)
CONCENTRATOR = Receiver("udp:0016c001ff10a235", None, 868_100_000, 0.0)


def status(counter: int, digest: int = 0) -> bytes:
    return build_frame(Status(firmware="1.0.0", uptime_s=60, config_digest=digest), DEVICE_ID, counter, KEYS)


def downlinks(site: Site) -> list:
    return [open_frame(sent.frame, KEYS, None, DOWN).message for sent in site.radio.sent]


async def test_a_pending_config_goes_out_after_a_status_and_is_forgotten_once_a_status_shows_it(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        queue_config(site.gateway.state, DEVICE_ID, FASTER, time.time())
        site.radio.hear(status(1))
        await site.settle()
        assert downlinks(site) == [FASTER]
        assert site.gateway.state.pending_config(DEVICE_ID).tries == 1
        site.radio.hear(status(2, config_digest(encode_body(FASTER))))
        await site.settle()
        assert site.gateway.state.pending_config(DEVICE_ID) is None
        assert len(site.radio.sent) == 1  # nothing more to send once applied


async def test_a_config_is_sent_again_after_each_status_that_does_not_show_it(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        queue_config(site.gateway.state, DEVICE_ID, FASTER, time.time())
        for counter in (1, 2, 3):
            site.radio.hear(status(counter))
            await site.settle()
        assert downlinks(site) == [FASTER] * 3
        assert site.gateway.state.pending_config(DEVICE_ID).tries == 3


async def test_a_checkin_window_carries_its_ack_and_no_config(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        queue_config(site.gateway.state, DEVICE_ID, FASTER, time.time())
        site.radio.hear(checkin(1))
        await site.settle()
        assert [type(message).__name__ for message in downlinks(site)] == ["Ack"]
        assert site.gateway.state.pending_config(DEVICE_ID).tries == 0


def test_a_second_change_merges_into_the_pending_one_the_newer_value_winning(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    queue_config(state, DEVICE_ID, Config(report_interval_s=30, badge_retap_s=5), 1.0)
    queue_config(state, DEVICE_ID, Config(report_interval_s=60, reboot=True), 2.0)
    assert pending_changes(state.pending_config(DEVICE_ID)) == Config(
        report_interval_s=60, badge_retap_s=5, reboot=True
    )


def test_a_pending_config_is_in_the_state_file_for_a_second_process(tmp_path):
    queue_config(GatewayState(tmp_path / "state.db"), DEVICE_ID, FASTER, 1.0)
    assert pending_changes(GatewayState(tmp_path / "state.db").pending_config(DEVICE_ID)) == FASTER


def test_values_outside_the_contract_are_refused_with_its_range(tmp_path):
    with pytest.raises(ConfigRefused, match="report_interval_s must be from 10"):
        queue_config(GatewayState(tmp_path / "state.db"), DEVICE_ID, Config(report_interval_s=5), 1.0)


def test_a_spreading_factor_no_receiver_listens_on_is_refused_naming_the_bridge():
    with pytest.raises(
        ConfigRefused, match=r"SF10 would be heard by no receiver.*bridge:/dev/ttyUSB0 \(listens on SF9"
    ):
        check_site_rules(DEVICE_ID, Config(spreading_factor=10), [BRIDGE_SF9])


def test_a_concentrator_hearing_the_node_allows_any_spreading_factor():
    check_site_rules(DEVICE_ID, Config(spreading_factor=12), [BRIDGE_SF9, CONCENTRATOR])


def test_power_is_capped_at_the_legal_erp_of_the_uplinks_sub_band():
    assert max_tx_power_dbm(868_100_000) == 14  # g1: 25 mW ERP, with a 2.15 dBi antenna
    assert max_tx_power_dbm(869_525_000) == 27  # g3: 500 mW ERP
    check_site_rules(DEVICE_ID, Config(tx_power_dbm=14), [BRIDGE_SF9])
    with pytest.raises(ConfigRefused, match=r"sub-band g1, whose legal limit is 14 dBm ERP.*use --power 14 or less"):
        check_site_rules(DEVICE_ID, Config(tx_power_dbm=15), [BRIDGE_SF9])


def test_radio_changes_wait_until_the_device_was_heard():
    with pytest.raises(ConfigRefused, match="has not been heard by this gateway"):
        check_site_rules(DEVICE_ID, Config(spreading_factor=9), [])


def test_a_registry_without_status_interval_reads_the_firmware_default(tmp_path):
    registry_file = tmp_path / "devices.toml"
    registry_file.write_text(
        '[devices.7]\nname = "door"\nsite = "s"\nfacility = ""\n'
        f'mic_key = "{KEYS.mic_key.hex()}"\nenc_key = "{KEYS.enc_key.hex()}"\n',
        encoding="utf-8",
    )
    registry = Registry.load(registry_file)
    assert registry.get(7).status_interval_s == 3600
    registry.save(registry_file)
    assert "status_interval_s = 3600" in registry_file.read_text(encoding="utf-8")
