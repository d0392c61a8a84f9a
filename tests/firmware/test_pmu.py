"""The T-Beam's power chip: the AXP192 (v1.0/1.1) or AXP2101 (v1.2) modelled at register level on the
I2C bus, its radio on a rail that is off until the firmware switches it on (borne/drivers/axp.py), and a
T-Beam node that finds its chip, powers its radio and sends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import DRIVER_HELPERS, board_with_firmware, require_vm
from tests.firmware.conftest import run_on as run
from tests.firmware.test_app import console_during

SDA, SCL, PMU = 21, 22, 0x34
TBEAM_SX1276 = {"sck": 5, "mosi": 27, "miso": 19, "cs": 18, "dio0": 26, "reset": 23}  # boards/tbeam_sx1276.json
RADIO_RAIL = {"axp192": "ldo2", "axp2101": "aldo2"}
RAILS = load_profile("tbeam_sx1276")["pmu"]
ENODEV = 19

SETUP = (
    DRIVER_HELPERS
    + f"""
from machine import I2C, SPI, Pin
from borne.drivers import axp
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}))
cs = Pin(18, Pin.OUT, value=1)
spi = SPI(1, baudrate=1000000, sck=Pin(5), mosi=Pin(27), miso=Pin(19))
def radio_version():
    b = bytearray((0x42, 0))  # RegVersion, read
    cs(0)
    spi.write_readinto(b, b)
    cs(1)
    return b[1]
"""
)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    for board in board_with_firmware(tmp_path_factory, "pmu_vm"):
        board.exec(SETUP)
        yield board


def wire_tbeam(board: VirtualBoard, pmu: str | None) -> None:
    """The T-Beam's radio, fed by the power chip `pmu` (or by a chip that is absent)."""
    with contextlib.suppress(ValueError):  # not wired yet
        board.unwire_i2c(PMU)
    if pmu is not None:
        board.wire_i2c(pmu, PMU, sda=SDA, scl=SCL)
    board.wire_spi("sx1276", **TBEAM_SX1276, supply=RADIO_RAIL[pmu or "axp192"])


@pytest.mark.parametrize("pmu", ["axp192", "axp2101"])
def test_the_radio_answers_only_once_the_firmware_switches_its_rail_on(vm: VirtualBoard, pmu: str) -> None:
    wire_tbeam(vm, pmu)
    assert run(vm, "radio_version()") == 0x00  # unpowered: MISO floats
    assert run(vm, f"axp.power_rails(i2c, {RAILS!r})") == pmu
    assert run(vm, "radio_version()") == 0x12  # the SX1276's RegVersion


@pytest.mark.parametrize("pmu", ["axp192", "axp2101"])
def test_the_radios_rail_goes_off_for_deep_sleep_and_on_again_at_the_next_power_up(vm: VirtualBoard, pmu: str) -> None:
    wire_tbeam(vm, pmu)
    run(vm, f"axp.power_rails(i2c, {RAILS!r})")
    assert run(vm, f"axp.power_rails_off(i2c, {RAILS!r})") == pmu
    assert run(vm, "radio_version()") == 0x00
    run(vm, f"axp.power_rails(i2c, {RAILS!r})")
    assert run(vm, "radio_version()") == 0x12


@pytest.mark.parametrize(
    ("pmu", "register", "shift", "code"),
    [
        ("axp192", 0x28, 4, 15),  # REG 28H bits 7:4, LDO2: 1.8 V + 15 x 100 mV
        ("axp2101", 0x93, 0, 28),  # REG 93H bits 4:0, ALDO2: 0.5 V + 28 x 100 mV
    ],
)
def test_the_radios_rail_is_set_to_3_3_volts(vm: VirtualBoard, pmu: str, register: int, shift: int, code: int) -> None:
    wire_tbeam(vm, pmu)
    run(vm, f"axp.power_rails(i2c, {RAILS!r})")
    assert run(vm, f"i2c.readfrom_mem({PMU}, {register}, 1)[0] >> {shift} & 0x1F") == code


def test_a_board_without_its_power_chip_says_so(vm: VirtualBoard) -> None:
    wire_tbeam(vm, None)
    assert run(vm, f"attempt(lambda: axp.power_rails(i2c, {RAILS!r}))")["errno"] == ENODEV


def test_a_power_chip_the_profile_names_no_rails_for_is_refused(vm: VirtualBoard) -> None:
    wire_tbeam(vm, "axp2101")
    code = "\ntry:\n    axp.power_rails(i2c, {'axp192': {'ldo2': 3300}})\nexcept ValueError as e:\n    print(e)\n"
    assert "an axp2101, for which its profile's pmu names no rails" in vm.exec(code)


@pytest.fixture
def tbeam_node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[VirtualBoard, RadioMedium]]:
    """A provisioned T-Beam SX1276 node carrying the power chip `request.param` (None: none answers)."""
    require_vm("T-Beam tests")
    options = NodeOptions(sensors=("bme280",), telemetry_s=60)
    config = build_config(
        load_profile("tbeam_sx1276"),
        "node",
        "test",
        device_id=7,
        secrets=secrets_from_master(TEST_MASTER_KEY, 7),
        options=options,
    )
    stage(config, tmp_path / "flash")
    with RadioMedium() as medium:
        board = VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium)
        wire_tbeam(board, request.param)  # before power-on, as on the board
        with board:
            yield board, medium


@pytest.mark.parametrize("tbeam_node", ["axp192", "axp2101"], indirect=True)
def test_a_t_beam_node_powers_its_radio_whichever_chip_it_carries_and_sends(tbeam_node) -> None:
    board, medium = tbeam_node
    printed = console_during(board, board.reset, 8, "crashed")
    deadline = time.monotonic() + 60  # its status frame comes 3 to 6 s after boot (the VM may be slow to boot)
    while medium.stats["sent"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "crashed" not in printed
    assert medium.stats["sent"] >= 1


@pytest.mark.parametrize("tbeam_node", [None], indirect=True)
def test_a_t_beam_whose_power_chip_does_not_answer_crashes_rather_than_run_without_a_radio(tbeam_node) -> None:
    board, _ = tbeam_node
    printed = console_during(board, board.reset, 20, "restarting")
    assert "borne: crashed; restarting" in printed
    assert "ENODEV" in printed
