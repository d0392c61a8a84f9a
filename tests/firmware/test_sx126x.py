"""The SX126x driver of firmware/borne/drivers, run by the real MicroPython VM against the command-level
model of the SX1262 (frozen/sx126x_chip.py) behind machine.SPI, with its BUSY and DIO1 lines, on the
radio medium.

The virtual board wires the SX1262 as the Heltec V3 does (SCK 9, MOSI 10, MISO 11, chip select 8,
BUSY 13, DIO1 14, reset 12, a 1.8 V TCXO on DIO3). The chip's state is read back over SPI by the
test's own commands, not the driver's; expected values come from the datasheet (DS rev 2.1 §13).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from payload_codec.airtime import time_on_air_ms
from simulator.virtual_board import RadioMedium, VirtualBoard
from simulator.virtual_board.board import SX1262_WIRING
from tests.firmware.conftest import deployed_radio_board
from tests.firmware.conftest import run_on as run
from tests.virtual_board.conftest import wait_for

CS, BUSY, DIO1, RESET = 8, 13, 14, 12
CHANNEL_HZ = 868_100_000
EU868 = {"freq_khz": 868100, "sf": 9, "bw": "125", "coding_rate": 5, "syncword": 0x12, "preamble_len": 8}
EIO, ETIMEDOUT, ECANCELED = 5, 110, 125
# The status byte (DS §13.5.1): chip mode in bits 6:4, command status in bits 3:1.
STDBY_RC, STDBY_XOSC, TX, RX = 0x2, 0x3, 0x6, 0x5
CMD_ERROR, EXEC_ERROR = 0x4, 0x5
XOSC_START_ERR, IMG_CALIB_ERR = 0x20, 0x10

SETUP = f"""
import asyncio, json, time
from machine import SPI, Pin
from borne.drivers.sx126x import SX126x
spi = SPI(1, baudrate=2_000_000, sck=Pin(9), mosi=Pin(10), miso=Pin(11))
cs = Pin({CS}, Pin.OUT, value=1)
busy = Pin({BUSY}, Pin.IN)
def ready():
    t = time.ticks_ms()
    while busy() and time.ticks_diff(time.ticks_ms(), t) < 50:
        pass
def command(*data):
    ready(); cs(0); spi.write(bytes(data)); cs(1)
def raw(*data):
    cs(0); spi.write(bytes(data)); cs(1)
def ask(opcode, n, *params):
    ready(); buf = bytearray(bytes((opcode,) + params) + bytes(1 + n))
    cs(0); spi.write_readinto(buf, buf); cs(1)
    return list(buf[1 + len(params):])
def status():
    s = ask(0xC0, 0)[0]
    return [s >> 4 & 7, s >> 1 & 7]
def errors():
    e = ask(0x17, 2)
    return e[1] << 8 | e[2]
def register(address):
    return ask(0x1D, 1, address >> 8, address & 0xFF)[1]
def radio(power=14, **cfg):
    modem = SX126x(spi, Pin({CS}), Pin({BUSY}), Pin({DIO1}), Pin({RESET}), tcxo_mv=1800, dio2_rf_switch=True)
    modem.configure(dict({EU868!r}, output_power=power, **cfg))
    return modem
results = []
async def receive(modem, timeout_ms):
    heard = await modem.recv(timeout_ms)
    results.append(heard and [bytes(modem.packet).hex(), modem.rssi, modem.snr])
async def transmit(modem, payload):
    started = time.ticks_ms()
    try:
        await modem.send(payload)
        results.append(time.ticks_diff(modem.sent_ms, started))
    except OSError as e:
        results.append(["errno", e.errno])
def attempt(call):
    try:
        return {{"ok": call()}}
    except OSError as e:
        return {{"errno": e.errno, "why": str(e)}}
def fresh():
    Pin({RESET}, Pin.OUT, value=0); time.sleep_us(200); Pin({RESET})(1); ready()
"""


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory, medium: RadioMedium) -> Iterator[VirtualBoard]:
    yield from deployed_radio_board(tmp_path_factory, "SX126x tests", "sx1262", medium, SETUP)


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """The board with its SX1262 powered, freshly wired and reset, no faults, no results yet."""
    with contextlib.suppress(ValueError):  # a test took it off
        vm.unwire_spi(CS)
    vm.wire_spi("sx1262", **SX1262_WIRING)
    vm.exec("results.clear()\nfresh()")
    return vm


def results(board: VirtualBoard, count: int = 1, timeout: float = 10) -> list:
    wait_for(lambda: len(run(board, "results")) >= count, timeout)
    return run(board, "results")


# The driver's settings.


def test_init_leaves_the_chip_in_stdby_rc_with_lora_on_868_1_mhz_calibrated_for_the_band(board) -> None:
    board.exec("modem = radio()")
    assert run(board, "status()") == [STDBY_RC, 0]
    assert run(board, "ask(0x11, 1)[1]") == 1  # GetPacketType: LoRa
    assert run(board, "errors()") == 0  # the TCXO's XOSC_START cleared, the image calibrated for 863-870 MHz
    assert run(board, "[register(0x0740), register(0x0741)]") == [0x14, 0x24]  # private sync word
    assert run(board, "register(0x08E7)") == 0x38  # SetPaConfig for the SX1262: OCP 140 mA
    assert run(board, "register(0x08D8) & 0x1E") == 0x1E  # DS §15.2's clamp fix
    assert run(board, "register(0x0736) & 0x04") == 0x04  # standard IQ (DS §15.4)


def test_a_chip_that_does_not_answer_is_enodev_at_init(board) -> None:
    board.silence_spi(CS)
    got = run(board, f"attempt(lambda: SX126x(spi, Pin({CS}), Pin({BUSY}), Pin({DIO1}), Pin({RESET})) and 1)")
    assert got["errno"] == 19


def test_busy_stuck_high_is_a_timeout_that_says_what_to_check(board) -> None:
    board.break_radio("busy_stuck")
    got = run(board, "attempt(lambda: radio() and 1)")
    assert got["errno"] == ETIMEDOUT
    assert "BUSY" in got["why"] and "power" in got["why"]


def test_a_tcxo_board_set_up_without_its_tcxo_reports_the_xosc_failing_to_start(board) -> None:
    # Set up without tcxo_mv, the chip runs on its RC oscillator: nothing fails until the XOSC must start.
    board.exec(
        f"modem = SX126x(spi, Pin({CS}), Pin({BUSY}), Pin({DIO1}), Pin({RESET}))\n"
        "asyncio.create_task(transmit(modem, b'x'))"
    )
    assert results(board) == [["errno", EIO]]
    assert run(board, "errors()") & XOSC_START_ERR


# Sending and receiving.


def test_send_ends_at_tx_done_after_the_frames_time_on_air(board, medium) -> None:
    heard = []
    medium.add_listener(lambda payload, *rest: heard.append((payload, rest[0], rest[1])), name="probe126x")
    board.exec("modem = radio()\nasyncio.create_task(transmit(modem, b'0123456789abc'))")
    took_ms = results(board)[0]
    airtime = time_on_air_ms(13, 9, 125_000, 5, 8)
    assert airtime - 2 <= took_ms <= airtime + 60
    wait_for(lambda: heard != [])
    assert heard[0] == (b"0123456789abc", CHANNEL_HZ, 9)
    assert run(board, "status()")[0] == STDBY_RC  # the fallback mode after TX-done
    assert run(board, "ask(0x12, 2)[1:]") == [0, 0]  # IRQs cleared


def test_a_received_frame_comes_with_its_rssi_and_snr(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 5000))")
    time.sleep(0.2)
    board.radio_receive(b"\x01\x02\x03", -97, 6.5)
    assert results(board) == [["010203", -97, 26]]


def test_a_frame_with_a_bad_crc_is_dropped_and_counted(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 5000))")
    time.sleep(0.2)
    board.radio_receive(b"\xde\xad", -90, 8, valid_crc=False)
    wait_for(lambda: run(board, "modem.crc_errors") == 1, 5)
    board.radio_receive(b"\xbe\xef", -90, 8)
    assert results(board) == [["beef", -90, 32]]


def test_recv_returns_none_at_its_timeout_and_standby_ends_a_pending_one(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 300))")
    assert results(board) == [None]
    board.exec("asyncio.create_task(receive(modem, None))")
    time.sleep(0.2)
    assert run(board, "status()")[0] == RX
    board.exec("modem.standby()")
    assert results(board, 2) == [None, None]
    assert run(board, "status()")[0] == STDBY_RC


def test_sleep_then_send_wakes_the_chip_first(board) -> None:
    board.exec("modem = radio()\nmodem.sleep()")
    assert run(board, "busy()") == 1  # BUSY stays high while the chip sleeps
    board.exec("asyncio.create_task(transmit(modem, b'x'))")
    assert isinstance(results(board)[0], int)
    board.exec("modem.sleep()\nmodem.configure({'sf': 8})")  # the TCXO's XOSC_START after a wake is cleared
    assert run(board, "errors()") == 0


# Faults: the driver says so.


def test_standby_during_a_send_cuts_it_short_with_ecanceled(board) -> None:
    board.exec("modem = radio(sf=12)\nasyncio.create_task(transmit(modem, b'a long frame'))")
    time.sleep(0.3)
    board.exec("modem.standby()")
    assert results(board) == [["errno", ECANCELED]]


def test_a_dio1_that_never_rises_is_found_dead_and_getirqstatus_polled_instead(board, medium) -> None:
    heard = []
    medium.add_listener(lambda payload, *_radio: heard.append(payload), name="sx126x dio1 probe")
    board.exec("modem = radio()")
    board.break_radio("dio1_dead")  # TxDone and RxDone reach GetIrqStatus, never the board's pin
    board.exec("asyncio.create_task(transmit(modem, b'unseen'))")
    assert isinstance(results(board)[0], int)  # its TX-done, from GetIrqStatus at the wait's end
    assert run(board, "modem.dio_dead") is True
    wait_for(lambda: b"unseen" in heard)
    board.exec("asyncio.create_task(receive(modem, 5000))")  # polled from the start
    time.sleep(0.2)
    board.radio_receive(b"\x01\x02", -97, 6.5)
    assert results(board, 2)[1] == ["0102", -97, 26]


def test_a_chip_that_stops_answering_during_a_send_is_etimedout_not_a_dead_dio1(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(transmit(modem, b'x'))")
    board.unwire_spi(CS)  # the chip goes during the send: nothing raises DIO1, MISO floats
    assert results(board, timeout=5) == [["errno", ETIMEDOUT]]
    assert run(board, "modem.dio_dead") is False


def test_an_oscillator_that_does_not_start_makes_send_an_op_error(board) -> None:
    board.exec("modem = radio()")
    board.break_radio("xosc_fails")
    board.exec("asyncio.create_task(transmit(modem, b'x'))")
    assert results(board) == [["errno", EIO]]


# What the datasheet forbids, done to the chip directly: it fails as the SX1262 does.


def test_a_command_sent_while_busy_is_high_is_lost(board) -> None:
    # Calibrate keeps BUSY high for 3.5 ms; SetPacketType sent at once, without waiting for BUSY (tried
    # again should a busy machine let those 3.5 ms pass before it goes).
    board.exec(
        "for attempt in range(5):\n"
        "    fresh(); command(0x89, 0x7F); seen = busy(); raw(0x8A, 0x01)\n"
        "    if seen:\n"
        "        break"
    )
    assert run(board, "seen") == 1
    assert run(board, "ask(0x11, 1)[1]") == 0  # still GFSK, the reset value: the command was lost


def test_set_tx_before_set_packet_type_is_an_exec_error(board) -> None:
    board.exec("command(0x97, 0x02, 0x00, 0x01, 0x40); command(0x83, 0, 0, 0)")
    assert run(board, "status()") == [STDBY_RC, EXEC_ERROR]


def test_an_unknown_opcode_or_a_wrong_parameter_count_is_a_cmd_error(board) -> None:
    board.exec("command(0x80)")  # SetStandby without its parameter
    assert run(board, "status()") == [STDBY_RC, CMD_ERROR]
    board.exec("command(0x55, 1)")
    assert run(board, "status()") == [STDBY_RC, CMD_ERROR]
    assert run(board, "status()") == [STDBY_RC, 0]  # reported once


def test_set_sleep_and_set_packet_type_outside_standby_are_exec_errors(board) -> None:
    board.exec("command(0x97, 0x02, 0x00, 0x01, 0x40); command(0x8A, 0x01); command(0x82, 0xFF, 0xFF, 0xFF)")
    assert run(board, "status()") == [RX, 0]
    board.exec("command(0x84, 0x04)")
    assert run(board, "status()") == [RX, EXEC_ERROR]  # still receiving: SetSleep is for standby
    board.exec("command(0x8A, 0x00)")
    assert run(board, "status()") == [RX, EXEC_ERROR]
    assert run(board, "ask(0x11, 1)[1]") == 1


def test_calibrate_outside_stdby_rc_is_an_exec_error(board) -> None:
    board.exec("command(0x97, 0x02, 0x00, 0x01, 0x40); command(0x80, 0x01)")
    assert run(board, "status()") == [STDBY_XOSC, 0]
    board.exec("command(0x89, 0x7F)")
    assert run(board, "status()") == [STDBY_XOSC, EXEC_ERROR]


def test_tx_on_a_tcxo_board_without_the_tcxo_fails_with_xosc_start(board) -> None:
    board.exec("command(0x8A, 0x01); command(0x83, 0, 0, 0)")
    assert run(board, "status()") == [STDBY_RC, EXEC_ERROR]
    assert run(board, "errors()") == XOSC_START_ERR


def test_tx_outside_the_calibrated_image_band_is_a_device_error(board, medium) -> None:
    # The power-on calibration is for 902-928 MHz (DS §9.2.1); 868.1 MHz needs CalibrateImage(0xD7, 0xDB).
    board.exec(
        "command(0x97, 0x02, 0x00, 0x01, 0x40); command(0x07, 0, 0); command(0x8A, 0x01)\n"
        "command(0x86, 0x36, 0x41, 0x99, 0x9A); command(0x83, 0, 0, 0)"
    )
    assert run(board, "errors()") == IMG_CALIB_ERR


def test_a_command_while_asleep_is_lost_and_wakes_the_chip(board) -> None:
    board.exec("command(0x8A, 0x01); command(0x84, 0x04)")  # warm sleep
    assert run(board, "busy()") == 1
    board.exec("raw(0x8A, 0x00)")  # SetPacketType GFSK: its NSS edge only wakes the chip
    assert run(board, "ask(0x11, 1)[1]") == 1  # still LoRa: the command was lost, the configuration kept


def test_a_cold_sleep_loses_the_configuration(board) -> None:
    board.exec("command(0x8A, 0x01); command(0x84, 0x00)")
    board.exec("raw(0xC0, 0)")
    assert run(board, "ask(0x11, 1)[1]") == 0
