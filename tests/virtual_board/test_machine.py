"""`machine` on the virtual board: watchdog, RTC memory, deep sleep, pins and ADC driven by the host."""

from __future__ import annotations

import time

import pytest

from boards.profiles import load_profile
from simulator.virtual_board import VirtualBoard
from simulator.virtual_board.board import DEEPSLEEP_RESET, HARD_RESET, PWRON_RESET, WDT_RESET
from tests.virtual_board.conftest import wait_for

FEEDING_MAIN = """\
import asyncio, machine
async def main():
    wdt = machine.WDT(timeout=400)
    while True:
        wdt.feed()
        await asyncio.sleep_ms(100)
asyncio.run(main())
"""


def reset_cause(board: VirtualBoard) -> int:
    return int(board.exec("import machine; print(machine.reset_cause())"))


def test_the_reset_causes_have_esp32s_values(board: VirtualBoard) -> None:
    code = "import machine as m; print(m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET)"
    assert board.exec(code).split() == ["1", "2", "3", "4", "5"]


def test_a_watchdog_that_is_not_fed_resets_the_board(board: VirtualBoard) -> None:
    boots = board.boots
    board.exec("import machine; machine.WDT(timeout=300)")
    wait_for(lambda: board.boots > boots, timeout_s=5)
    assert reset_cause(board) == WDT_RESET


def test_a_watchdog_resets_a_board_stuck_in_a_busy_loop(board: VirtualBoard) -> None:
    with pytest.raises(TimeoutError):
        board.exec("import machine\nmachine.WDT(timeout=300)\nwhile True:\n    pass", timeout=2)
    assert reset_cause(board) == WDT_RESET


def test_a_fed_watchdog_does_not_reset_the_board(board: VirtualBoard) -> None:
    (board.flash / "main.py").write_text(FEEDING_MAIN)
    board.reset()
    boots = board.boots
    time.sleep(1.5)
    assert board.boots == boots
    assert reset_cause(board) == PWRON_RESET  # the EN button, as the ESP32 port reports it


def test_a_soft_reset_leaves_the_watchdog_running_as_on_an_esp32(board: VirtualBoard) -> None:
    board.exec("import machine; machine.WDT(timeout=1000)")
    board.exec("pass", soft_reset=True)
    wait_for(lambda: board.reset_cause == WDT_RESET, timeout_s=5)


def test_rtc_memory_survives_resets_but_not_a_power_cycle(board: VirtualBoard) -> None:
    read = "import machine; print(machine.RTC().memory())"
    board.exec("import machine; machine.RTC().memory(b'safe-mode:0')")
    board.exec("pass", soft_reset=True)
    assert board.exec(read).strip() == "b'safe-mode:0'"
    board.reset()
    assert board.exec(read).strip() == "b'safe-mode:0'"
    board.power_cycle()
    assert board.exec(read).strip() == "b''"
    assert reset_cause(board) == PWRON_RESET


def test_rtc_memory_holds_at_most_2048_bytes(board: VirtualBoard) -> None:
    code = "import machine\ntry:\n    machine.RTC().memory(bytes(2049))\nexcept ValueError as e:\n    print(e)"
    assert board.exec(code).strip() == "buffer too long"


def test_rtc_memory_survives_machine_reset(board: VirtualBoard) -> None:
    (board.flash / "main.py").write_text(
        "import machine\n"
        "if machine.reset_cause() != machine.HARD_RESET:\n"
        "    machine.RTC().memory(b'kept')\n"
        "    machine.reset()\n"
    )
    board.reset()
    wait_for(lambda: board.reset_cause == HARD_RESET)  # ESP_RST_SW, as the ESP32 port reports it
    assert board.exec("import machine; print(machine.RTC().memory())").strip() == "b'kept'"


def test_deepsleep_powers_down_then_wakes_the_board_with_its_cause(board: VirtualBoard) -> None:
    (board.flash / "main.py").write_text(
        "import machine\n"
        "with open('causes.txt', 'a') as f:\n"
        "    f.write('%d\\n' % machine.reset_cause())\n"
        "if machine.reset_cause() != machine.DEEPSLEEP_RESET:\n"
        "    machine.RTC().memory(b'before sleep')\n"
        "    machine.deepsleep(400)\n"
    )
    board.reset()
    wait_for(lambda: board.asleep)
    slept = time.monotonic()
    causes = board.flash / "causes.txt"
    wait_for(lambda: causes.read_text().count("\n") == 2)
    assert time.monotonic() - slept >= 0.3
    assert causes.read_text() == f"{PWRON_RESET}\n{DEEPSLEEP_RESET}\n"
    assert board.exec("import machine; print(machine.RTC().memory())").strip() == "b'before sleep'"


LIGHT_SLEEP = """
import asyncio, machine, time
ticks, slept = [], []
async def tick():
    while True:
        ticks.append(time.ticks_ms())
        await asyncio.sleep_ms(10)
async def sleep_lightly():
    await asyncio.sleep_ms(100)
    before, started = len(ticks), time.ticks_ms()
    machine.lightsleep(300)
    slept.append((before, len(ticks) - before, time.ticks_diff(time.ticks_ms(), started)))
ticking = asyncio.create_task(tick())
sleeping = asyncio.create_task(sleep_lightly())
"""


def test_lightsleep_stops_every_task_until_its_timer_wakes_the_chip(board: VirtualBoard) -> None:
    board.exec(LIGHT_SLEEP)
    wait_for(lambda: board.exec("print(len(slept))").strip() == "1")
    ticked_before, ticked_during, slept_ms = (int(n) for n in board.exec("print(*slept[0])").split())
    assert ticked_before > 0  # the other task ran until then
    assert ticked_during == 0
    assert slept_ms >= 300


PULLED_UP_BUTTON = "import machine\nbutton = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)\n"


def test_an_input_reads_the_level_the_host_drives(board: VirtualBoard) -> None:
    board.exec(PULLED_UP_BUTTON)
    levels = []
    for level in (None, 0, 1, None):
        board.set_pin(0, level)
        levels.append(board.exec("print(button.value())").strip())
    assert levels == ["1", "0", "1", "1"]  # undriven, the pull-up wins


def test_a_level_set_before_boot_is_read_by_boot_py(board: VirtualBoard) -> None:
    (board.flash / "boot.py").write_text(PULLED_UP_BUTTON + "held_at_boot = button.value() == 0\n")
    board.set_pin(0, 0)
    board.reset()
    assert board.exec("print(held_at_boot)").strip() == "True"


def test_an_irq_handler_runs_on_the_edges_it_asked_for(board: VirtualBoard) -> None:
    board.exec(
        PULLED_UP_BUTTON + "presses = []\nbutton.irq(lambda p: presses.append(p.value()), machine.Pin.IRQ_FALLING)"
    )
    for level in (0, 1, 0, 0, 1):
        board.set_pin(0, level)
    assert board.exec("print(presses)").strip() == "[0, 0]"


def test_an_error_in_an_irq_handler_is_printed_and_the_board_runs_on(board: VirtualBoard) -> None:
    board.exec(PULLED_UP_BUTTON + "button.irq(lambda p: 1 / 0)")
    boots = board.boots
    board.set_pin(0, 0)
    assert board.exec("print(button.value())").strip() == "0"
    assert board.boots == boots


def test_the_host_sees_the_level_of_an_output_pin(board: VirtualBoard) -> None:
    board.exec("import machine\nled = machine.Pin(25, machine.Pin.OUT, value=1)")
    assert board.pin_output(25) == 1
    board.exec("led.off()")
    assert board.pin_output(25) == 0
    board.exec("led.init(machine.Pin.IN)")
    assert board.pin_output(25) is None


def test_a_held_pad_keeps_its_output_until_its_hold_is_released(board: VirtualBoard) -> None:
    board.exec("import machine\nvext = machine.Pin(21, machine.Pin.OUT, value=1, hold=True)")
    board.exec("vext.value(0)")
    assert board.pin_output(21) == 1
    board.exec("vext.init(hold=False)")  # what was set meanwhile shows, as after gpio_hold_dis
    assert board.pin_output(21) == 0


def deep_sleep_after(board: VirtualBoard, setup: str) -> None:
    """Run `setup` from main.py at the next boot, then deep-sleep until a reset."""
    (board.flash / "main.py").write_text(f"import esp32, machine\n{setup}\nmachine.deepsleep()\n")
    board.reset()
    wait_for(lambda: board.asleep)


def test_an_output_that_is_not_held_floats_in_deep_sleep(board: VirtualBoard) -> None:
    deep_sleep_after(board, "led = machine.Pin(25, machine.Pin.OUT, value=1)\nesp32.gpio_deep_sleep_hold(True)")
    assert board.pin_output(25) is None


def test_a_held_output_keeps_its_level_in_deep_sleep_once_gpio_deep_sleep_hold_is_on(board: VirtualBoard) -> None:
    deep_sleep_after(
        board, "vext = machine.Pin(21, machine.Pin.OUT, value=1, hold=True)\nesp32.gpio_deep_sleep_hold(True)"
    )
    assert board.pin_output(21) == 1


def test_a_held_digital_pad_floats_in_deep_sleep_without_gpio_deep_sleep_hold(board: VirtualBoard) -> None:
    deep_sleep_after(board, "vext = machine.Pin(21, machine.Pin.OUT, value=1, hold=True)")
    assert board.pin_output(21) is None


def test_the_adc_reads_the_voltage_the_host_applies(board: VirtualBoard) -> None:
    board.set_adc(35, 1_950_000)
    code = (
        "import machine\nadc = machine.ADC(machine.Pin(35), atten=machine.ADC.ATTN_11DB)\n"
        "print(adc.read_uv(), adc.read_u16())"
    )
    assert board.exec(code).split() == ["1950000", str(1_950_000 * 65535 // 3_900_000)]


def test_the_adc_clips_to_the_range_of_its_attenuation(board: VirtualBoard) -> None:
    board.set_adc(34, 3_000_000)
    assert board.exec("import machine\nprint(machine.ADC(machine.Pin(34)).read_u16())").strip() == "65535"


def test_unique_id_and_freq_are_kept(board: VirtualBoard) -> None:
    printed = board.exec("import machine\nprint(machine.unique_id().hex(), machine.freq())").split()
    assert printed == [board.unique_id.hex(), "160000000"]


@pytest.mark.parametrize(("profile", "chip_id"), [("tbeam_sx1276", 0x03), ("heltec_v2", None)])
def test_a_board_gets_the_power_chip_its_profile_names_on_its_i2c_bus(
    board: VirtualBoard, profile: str, chip_id: int | None
) -> None:
    board.wire_power_chip(load_profile(profile))  # the T-Beam's names the AXP192 first
    found = board.exec(
        "from machine import I2C, Pin\n"
        "i2c = I2C(0, scl=Pin(22), sda=Pin(21))\n"
        "print(i2c.readfrom_mem(0x34, 3, 1)[0] if 0x34 in i2c.scan() else None)"
    )
    assert found.strip() == str(chip_id)


def test_an_i2c_transfer_to_a_chip_stretching_the_clock_past_the_timeout_raises_etimedout(board: VirtualBoard) -> None:
    board.wire_i2c("pn532", 0x24, sda=21, scl=22, stretch_ms=80)
    code = (
        "from machine import I2C, Pin\n"
        "for timeout in (50000, 100000):\n"
        "    try:\n"
        "        print(len(I2C(0, scl=Pin(22), sda=Pin(21), timeout=timeout).readfrom(0x24, 1)))\n"
        "    except OSError as e:\n"
        "        print(e.errno)"
    )
    assert board.exec(code).split() == ["116", "1"]  # the default 50 ms gives up; 100 ms waits it out
