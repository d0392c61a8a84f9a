"""`make bench`'s bytes allocated per LoRa frame, by the firmware's `Radio` and our drivers in the real
MicroPython VM (bench/radio_heap.py): a frame sent or received allocates nothing, also when the chip's
DIO line is dead and its IRQ flags are polled over SPI, and the meter that counts them reads nothing
where nothing is allocated."""

from __future__ import annotations

import pytest

from bench.radio_heap import measure
from tests.firmware.conftest import require_vm


@pytest.fixture(
    scope="module",
    params=[("sx1276", False), ("sx1262", False), ("sx1276", True), ("sx1262", True)],
    ids=["sx1276", "sx1262", "sx1276 DIO0 dead", "sx1262 DIO1 dead"],
)
def figures(request: pytest.FixtureRequest) -> dict[str, list[int]]:
    """A chip's figures; with its DIO line dead, the drivers poll its IRQ flags over SPI."""
    require_vm("the bench's radio heap figures")
    chip, dio_dead = request.param
    return measure(chip, dio_dead)


def test_the_meter_counts_nothing_for_a_task_that_only_sleeps(figures) -> None:
    assert figures["slept"][0] == 0


def test_a_frame_sent_allocates_nothing(figures) -> None:
    firmware, _, missed = figures["sent"]
    assert missed == 0
    assert (firmware, figures["coroutines"][0]) == (0, 0)


def test_a_frame_received_allocates_nothing(figures) -> None:
    firmware, _, missed = figures["received"]
    assert missed == 0
    assert (firmware, figures["coroutines"][1]) == (0, 0)
