"""Config downlinks: what `borne device configure` may ask of a node, and what it refuses.

The values are held to the wire contract by payload_codec itself (the ranges of CONFIG_FIELDS,
which provisioning checks a new board against too). On top of the contract, two rules of the
site: a spreading factor that no receiver hearing the node listens on would strand it, and the
power must stay within the legal ERP of the sub-band the node transmits in.

A change is queued in the gateway's state (`GatewayState.queue_config`); the pipeline sends it in
the receive window after the node's next status and forgets it once a status shows it applied.
"""

from __future__ import annotations

import dataclasses
import math

from payload_codec import CodecError, Config, config_digest, decode_body, encode_body
from payload_codec.airtime import sub_band

from .state import GatewayState, PendingConfig, Receiver

# Receivers not heard from a device for this long no longer count as hearing it.
RECEIVER_MEMORY_S = 7 * 86400
# ERP is referred to a half-wave dipole (2.15 dBi). The boards ship with a whip or a small
# dipole of about that gain, so the assumed antenna gain cancels it: the conducted power
# allowed equals the sub-band's ERP limit. A higher-gain antenna needs a lower setting.
DIPOLE_GAIN_DBI = 2.15
ASSUMED_ANTENNA_GAIN_DBI = 2.15


class ConfigRefused(Exception):
    """A config change the gateway will not queue; the message says why and what to do."""


def max_tx_power_dbm(frequency_hz: int) -> int | None:
    """The highest conducted power (dBm) legal at this frequency with the assumed antenna; None
    outside EU868's sub-bands."""
    band = sub_band(frequency_hz)
    if band is None:
        return None
    return math.floor(round(band.max_erp_dbm + DIPOLE_GAIN_DBI - ASSUMED_ANTENNA_GAIN_DBI, 2))  # 2.15 - 2.15 is not 0.0


def pending_changes(pending: PendingConfig) -> Config:
    """The config a pending row holds."""
    config = decode_body("config", pending.body)
    if isinstance(config, CodecError):  # written by this module only: a broken row is a bug
        raise RuntimeError(f"pending config of device {pending.device_id} is unreadable: {config}")
    assert isinstance(config, Config)
    return config


def queue_config(state: GatewayState, device_id: int, changes: Config, now: float) -> Config:
    """Queue `changes` for the device, merged over a config still pending for it (the newer value
    wins); return what will be sent. ConfigRefused says why a change cannot be queued."""
    pending = state.pending_config(device_id)
    if pending is not None:
        before = pending_changes(pending)
        merged = {
            field.name: getattr(changes, field.name)
            if getattr(changes, field.name) is not None
            else getattr(before, field.name)
            for field in dataclasses.fields(Config)
        }
        merged["reboot"] = changes.reboot or before.reboot
        changes = Config(**merged)
    try:
        body = encode_body(changes)
    except CodecError as error:
        raise ConfigRefused(f"device {device_id}: {error.detail}") from None
    check_site_rules(device_id, changes, state.receivers(device_id, since=now - RECEIVER_MEMORY_S))
    state.queue_config(device_id, body, now)
    return changes


def check_site_rules(device_id: int, config: Config, receivers: list[Receiver]) -> None:
    """Refuse a spreading factor that would strand the device and a power above the legal ERP."""
    if config.spreading_factor is None and config.tx_power_dbm is None:
        return
    if not receivers:
        raise ConfigRefused(
            f"device {device_id} has not been heard by this gateway in the last {RECEIVER_MEMORY_S // 86400} days, so "
            "it cannot tell which receivers would hear it at another spreading factor or in which sub-band it "
            "transmits: wait for its next frame (`borne gateway status` lists it), then configure it again"
        )
    sf = config.spreading_factor
    if sf is not None and all(r.single_sf is not None and r.single_sf != sf for r in receivers):
        heard = ", ".join(f"{r.name} (listens on SF{r.single_sf} only)" for r in receivers)
        raise ConfigRefused(
            f"device {device_id} at SF{sf} would be heard by no receiver: it is heard only by {heard}. Change the "
            "spreading factor of the whole site at once (re-flash the bridge with the nodes), or add a "
            "concentrator, which hears every spreading factor"
        )
    power = config.tx_power_dbm
    if power is not None:
        frequency_hz = receivers[0].frequency_hz
        limit = max_tx_power_dbm(frequency_hz)
        if limit is not None and power > limit:
            band = sub_band(frequency_hz)
            assert band is not None
            raise ConfigRefused(
                f"device {device_id} transmits at {frequency_hz / 1e6:.3f} MHz, in sub-band {band.name}, whose legal "
                f"limit is {band.max_erp_dbm} dBm ERP: {power} dBm is above it with an antenna of "
                f"{ASSUMED_ANTENNA_GAIN_DBI} dBi; use --power {limit} or less (less still with a higher-gain antenna)"
            )


def applied(pending: PendingConfig, status_digest: int) -> bool:
    """Whether a status whose `config_digest` is `status_digest` shows the pending config applied."""
    return status_digest == config_digest(pending.body)
