"""`make bench`'s battery section runs the real firmware through one wake of a battery node, on a board of
each radio chip: the wrappers that time its calls must fit the firmware and the virtual board they wrap
(they once read the SPI's bytes from the wrong argument, and the SX1262 board's wake failed)."""

from __future__ import annotations

import pytest

from bench.battery import measure_wake
from tests.firmware.conftest import require_vm


@pytest.mark.parametrize("board", ["heltec_v2", "heltec_v3"], ids=["sx1276", "sx1262"])
def test_a_battery_nodes_wake_is_measured_from_its_sensors_to_its_receive_window(board: str) -> None:
    require_vm("the bench's battery wake")
    wake = measure_wake(board, compiled=True)
    # Its telemetry and its first status (each measured, then sent), then the status's receive window.
    assert [name for name, *_ in wake.events] == ["sensors", "send", "send", "receive"]
    assert len(wake.airtime_us) == 2 and all(airtime > 0 for airtime in wake.airtime_us)
    assert wake.heap > 0
