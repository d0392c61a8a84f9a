"""The messages between the host and the VM: every kind parses back from its line; both sides know the same kinds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.virtual_board import messages
from simulator.virtual_board.messages import (
    CONTROLS,
    EVENTS,
    Ack,
    AdcVoltage,
    Air,
    DeepSleep,
    FlashFault,
    I2cChip,
    I2cChips,
    Message,
    PinLevel,
    PinOutput,
    RadioFrame,
    RadioIdle,
    RadioReceiving,
    RadioSettings,
    RadioTransmitting,
    SpiChip,
    SpiChips,
    WatchdogFed,
    WatchdogStarted,
    decode,
    encode,
)

VIRTUAL_BOARD = Path(messages.__file__).parent

pins = st.integers(0, 48)
levels = st.none() | st.sampled_from([0, 1])
json_scalars = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8)
states = st.dictionaries(
    st.text(min_size=1, max_size=8), json_scalars | st.dictionaries(st.text(max_size=4), json_scalars)
)
measures = st.none() | st.floats(-50, 2000, allow_nan=False)
i2c_chips = st.builds(
    I2cChip, st.sampled_from(["bme280", "scd4x", "sht4x", "pn532"]), pins, pins, st.integers(0, 127),
    st.booleans(), st.integers(0, 5), states,
)  # fmt: skip
spi_chips = st.builds(SpiChip, st.just("mfrc522"), pins, pins, pins, pins, st.booleans(), st.integers(0, 5), states)
settings = st.builds(
    RadioSettings, st.integers(150_000_000, 960_000_000), st.integers(5, 12), st.sampled_from([125_000, 250_000]),
    st.integers(5, 8), st.integers(6, 65535), st.booleans(), st.booleans(), st.integers(0, 255), st.booleans(),
    st.booleans(), st.integers(-17, 22),
)  # fmt: skip
stamps = st.integers(0, 2**63)

every_message = st.one_of(
    st.builds(PinLevel, pins, levels),
    st.builds(AdcVoltage, pins, st.integers(0, 4_000_000)),
    st.builds(I2cChips, st.lists(i2c_chips, max_size=3).map(tuple), st.builds(Air, measures, measures, measures)),
    st.builds(SpiChips, st.lists(spi_chips, max_size=3).map(tuple)),
    st.builds(RadioFrame, st.binary(max_size=255), st.integers(-150, 0), st.integers(-128, 127), st.booleans()),
    st.builds(FlashFault, st.booleans()),
    st.builds(Ack, st.integers(1, 2**40)),
    st.builds(WatchdogStarted, st.integers(1, 2**31)),
    st.builds(WatchdogFed),
    st.builds(DeepSleep, st.integers(0, 2**31)),
    st.builds(PinOutput, pins, levels),
    st.builds(RadioReceiving, stamps, settings),
    st.builds(RadioIdle, stamps),
    st.builds(RadioTransmitting, stamps, st.binary(max_size=255), settings),
)


@given(every_message)
def test_every_message_parses_back_from_its_line(message: Message) -> None:
    line = encode(message)
    assert "\n" not in line
    assert decode(line) == message


@given(every_message.filter(lambda message: type(message) in CONTROLS), st.integers(1, 2**40))
def test_a_control_line_names_its_type_and_carries_its_sequence_number(message: Message, seq: int) -> None:
    line = encode(message, seq)
    assert (json.loads(line)["type"], json.loads(line)["seq"]) == (message.type, seq)
    assert decode(line) == message


@pytest.mark.parametrize("line", ["", "[]", '{"seq": 1}', '{"type": "pin", "pin": 0, "level": 1}', "ack 3"])
def test_a_line_that_is_none_of_ours_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a virtual board message"):
        decode(line)


def test_mcu_mjs_applies_every_control_message_and_no_other() -> None:
    source = (VIRTUAL_BOARD / "mcu.mjs").read_text()
    table = re.search(r"^const controls = \{\n(.*?)^\};", source, re.DOTALL | re.MULTILINE)
    assert table is not None
    applied = set(re.findall(r"^  (\w+): ", table.group(1), re.MULTILINE))
    assert applied == {kind.type for kind in CONTROLS}


def test_mcu_mjs_emits_every_event_the_host_reads_and_no_other() -> None:
    emitted = set(re.findall(r'\bemit\("(\w+)"', (VIRTUAL_BOARD / "mcu.mjs").read_text()))
    assert emitted == {kind.type for kind in EVENTS}


def test_the_frozen_modules_register_only_for_control_messages() -> None:
    registered = {
        kind
        for module in (VIRTUAL_BOARD / "frozen").glob("*.py")
        for kind in re.findall(r'_board\.on_control\("(\w+)"', module.read_text())
    }
    assert registered == {"pin_level", "i2c_chips", "spi_chips", "radio_frame"}
    assert registered <= {kind.type for kind in CONTROLS}
