"""The current model of `make bench`'s battery section, on cases worked out by hand."""

from __future__ import annotations

import pytest

from bench.battery import (
    BME280_SLEEP,
    BOARD_QUIESCENT,
    CELL_MAH,
    HOURS_PER_YEAR,
    MCU_CURRENTS,
    RADIO_CURRENTS,
    REPORT_S,
    STATUS_S,
    Asleep,
    Awake,
    charge,
)

NEVER_AWAKE = Awake(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
VEXT_OFF = Asleep(vext_off=True)


def test_a_board_that_never_wakes_draws_only_what_its_parts_draw_asleep() -> None:
    asleep_ma = (
        MCU_CURRENTS["esp32s3"]["deep_sleep"].ma
        + RADIO_CURRENTS["sx1262"]["sleep"].ma
        + BOARD_QUIESCENT["heltec_v3"].ma
        + BME280_SLEEP.ma
    )
    drawn = charge("heltec_v3", NEVER_AWAKE, asleep=VEXT_OFF)
    assert drawn.wake_uah == 0
    assert drawn.average_ua == pytest.approx(asleep_ma * 1000)
    assert drawn.years == pytest.approx(CELL_MAH / asleep_ma / HOURS_PER_YEAR)


def test_a_second_of_start_up_costs_a_second_at_the_active_current() -> None:
    awake = Awake(1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    active_ma = (
        MCU_CURRENTS["esp32"]["active"].ma + RADIO_CURRENTS["sx1276"]["sleep"].ma + BOARD_QUIESCENT["tbeam_sx1276"].ma
    )
    assert charge("tbeam_sx1276", awake).wake_uah == pytest.approx(1000 * active_ma / 3600)  # mA x ms = µC


def test_a_status_window_counts_once_per_status_interval() -> None:
    window = Awake(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, rx_window=1200)
    listening_ma = (
        MCU_CURRENTS["esp32"]["active"].ma + RADIO_CURRENTS["sx1276"]["rx"].ma + BOARD_QUIESCENT["heltec_v2"].ma
    )
    share = REPORT_S / STATUS_S
    assert charge("heltec_v2", window).wake_uah == pytest.approx(1200 * listening_ma * share / 3600)


def test_light_sleep_lowers_the_waits_and_nothing_else() -> None:
    working = Awake(300, 100, 20, 0, 0, 0, 0, 5, 5, 0, 0, 0)
    waiting = Awake(0, 0, 0, 9.3, 0, 160, 260, 0, 0, 800, 0, 600)
    assert charge("heltec_v3", working, light_sleep=True, asleep=VEXT_OFF) == charge(
        "heltec_v3", working, asleep=VEXT_OFF
    )
    lighter = charge("heltec_v3", waiting, light_sleep=True, asleep=VEXT_OFF)
    assert lighter.wake_uah < charge("heltec_v3", waiting, asleep=VEXT_OFF).wake_uah


def test_the_wait_the_firmware_spends_in_light_sleep_is_charged_at_the_light_sleep_current() -> None:
    awake_waiting = Awake(0, 0, 0, 0, 0, 0, 0, 0, 0, rx_wait=800, rx_wait_light=0, rx_window=0)
    asleep_waiting = Awake(0, 0, 0, 0, 0, 0, 0, 0, 0, rx_wait=800, rx_wait_light=800, rx_window=0)
    mcu = MCU_CURRENTS["esp32"]
    saved_ma = mcu["active"].ma - mcu["light_sleep"].ma
    saved_uah = charge("ttgo_lora32_v21", awake_waiting).wake_uah - charge("ttgo_lora32_v21", asleep_waiting).wake_uah
    assert saved_uah == pytest.approx(800 * saved_ma * REPORT_S / STATUS_S / 3600)


def test_a_board_figure_measured_with_vext_off_needs_the_firmware_to_hold_vext_off() -> None:
    with pytest.raises(ValueError, match="did not hold Vext off"):
        charge("heltec_v3", NEVER_AWAKE, asleep=Asleep(vext_off=False))


def test_a_radio_whose_rail_is_off_draws_nothing_asleep() -> None:
    rail_on = charge("tbeam_sx1262", NEVER_AWAKE).average_ua
    rail_off = charge("tbeam_sx1262", NEVER_AWAKE, asleep=Asleep(radio_rail_off=True)).average_ua
    assert rail_on - rail_off == pytest.approx(RADIO_CURRENTS["sx1262"]["sleep"].ma * 1000)


def test_a_receive_window_and_a_conversion_in_light_sleep_save_the_cpus_current_and_not_the_chips() -> None:
    awake = Awake(0, 0, 0, 9.3, 0, 0, 0, 0, 0, 0, 0, rx_window=300)
    asleep = Awake(0, 0, 0, 9.3, 0, 0, 0, 0, 0, 0, 0, rx_window=300, sensor_wait_light=9.3, rx_window_light=300)
    mcu = MCU_CURRENTS["esp32"]
    saved_ma = mcu["active"].ma - mcu["light_sleep"].ma
    saved_uah = charge("heltec_v2", awake).wake_uah - charge("heltec_v2", asleep).wake_uah
    assert saved_uah == pytest.approx((9.3 + 300 * REPORT_S / STATUS_S) * saved_ma / 3600)
    assert charge("heltec_v2", asleep).wake_uah == pytest.approx(charge("heltec_v2", awake, light_sleep=True).wake_uah)
