"""The SX127x driver of firmware/borne/drivers, run by the real MicroPython VM against the register-level
model of the SX1276 (frozen/sx127x_chip.py) behind machine.SPI, on the radio medium.

The virtual board wires the SX1276 as every SX1276 board profile does (SCK 5, MOSI 27, MISO 19, chip
select 18, DIO0 26, reset 14). Registers are read back over SPI by the test's own code, not the
driver's; expected values come from the datasheet (register table, DS rev 4 pp.108-114).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from payload_codec.airtime import time_on_air_ms
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import deployed_radio_board
from tests.firmware.conftest import run_on as run
from tests.virtual_board.conftest import wait_for

CS, DIO0, RESET = 18, 26, 14
CHANNEL_HZ = 868_100_000
EU868 = {"freq_khz": 868100, "sf": 9, "bw": "125", "coding_rate": 5, "syncword": 0x12, "preamble_len": 8}
ENODEV, ETIMEDOUT = 19, 110

SETUP = f"""
import asyncio, json, time
from machine import SPI, Pin
from borne.drivers.sx127x import SX127x
spi = SPI(1, baudrate=2_000_000, sck=Pin(5), mosi=Pin(27), miso=Pin(19))
cs = Pin({CS}, Pin.OUT, value=1)
def peek(register):
    buf = bytearray((register, 0))
    cs(0); spi.write_readinto(buf, buf); cs(1)
    return buf[1]
def poke(register, value):
    cs(0); spi.write(bytes((register | 0x80, value))); cs(1)
def radio(power=14, **cfg):
    modem = SX127x(spi, Pin({CS}), Pin({DIO0}), Pin({RESET}))
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
        return {{"errno": e.errno}}
"""


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory, medium: RadioMedium) -> Iterator[VirtualBoard]:
    yield from deployed_radio_board(tmp_path_factory, "SX127x tests", "sx1276", medium, SETUP)


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """The board with its SX1276 powered and freshly wired (reset values), no results yet."""
    with contextlib.suppress(ValueError):  # a test took it off
        vm.unwire_spi(CS)
    vm.wire_spi("sx1276", cs=CS, sck=5, mosi=27, miso=19, dio0=DIO0, reset=RESET)
    vm.exec("results.clear()")
    return vm


def registers(board: VirtualBoard, *addresses: int) -> list[int]:
    return run(board, f"[peek(a) for a in {list(addresses)}]")


def results(board: VirtualBoard, count: int = 1, timeout: float = 10) -> list:
    wait_for(lambda: len(run(board, "results")) >= count, timeout)
    return run(board, "results")


# The driver's settings, register by register.


def test_init_puts_the_chip_in_lora_standby_on_868_1_mhz_with_the_eu868_modem_settings(board) -> None:
    board.exec("modem = radio()")
    op_mode, frf_msb, frf_mid, frf_lsb = registers(board, 0x01, 0x06, 0x07, 0x08)
    assert op_mode == 0x81  # LongRangeMode, HF page, Standby
    assert (frf_msb, frf_mid, frf_lsb) == (0xD9, 0x06, 0x66)  # 868.1 MHz / 61.035 Hz, rounded
    # BW125 (0111), CR 4/5 (001), explicit header; SF9, CRC on; AGC on, no LowDataRateOptimize at 4.1 ms.
    assert registers(board, 0x1D, 0x1E, 0x26) == [0x72, 0x94, 0x04]
    assert registers(board, 0x39, 0x20, 0x21) == [0x12, 0x00, 0x08]  # private sync word, 8 symbols
    assert registers(board, 0x33, 0x3B) == [0x27, 0x1D]  # I/Q normal both ways, as the firmware uses
    assert registers(board, 0x0C, 0x37) == [0x23, 0x0A]  # LNA G1 with HF boost; detection threshold
    assert registers(board, 0x31)[0] & 0x87 == 0x03  # DetectionOptimize SF7-12; AutomaticIFOn off (errata 2.3)
    assert registers(board, 0x0E, 0x0F, 0x11) == [0x00, 0x00, 0x00]  # whole FIFO each way, no IRQ masked


def test_14_dbm_is_pa_boost_without_the_20_dbm_dac_and_the_default_current_limit(board) -> None:
    board.exec("modem = radio(14)")
    # PA_BOOST: Pout = 17 - (15 - OutputPower) -> OutputPower 12; OCP on at 100 mA (trim 11).
    assert registers(board, 0x09, 0x4D, 0x0B) == [0xFC, 0x84, 0x2B]


def test_20_dbm_turns_the_pa_dac_on_and_raises_the_current_limit_to_140_ma(board) -> None:
    board.exec("modem = radio(20)")
    # PaDac 0x87: Pout = OutputPower + 5 -> 15; OcpTrim 17: -30 + 10 * 17 = 140 mA.
    assert registers(board, 0x09, 0x4D, 0x0B) == [0xFF, 0x87, 0x31]


def test_low_data_rate_optimize_is_on_when_a_symbol_lasts_more_than_16_ms(board) -> None:
    board.exec("modem = radio(sf=11)")
    assert registers(board, 0x1E, 0x26) == [0xB4, 0x0C]  # SF11 at 125 kHz: 16.4 ms symbols
    board.exec("modem.configure({'sf': 10})")
    assert registers(board, 0x1E, 0x26) == [0xA4, 0x04]


def test_a_chip_that_does_not_answer_is_enodev_at_init(board) -> None:
    board.silence_spi(CS)
    assert run(board, f"attempt(lambda: SX127x(spi, Pin({CS}), Pin({DIO0}), Pin({RESET})) and 1)") == {"errno": ENODEV}


def test_the_driver_resets_the_chip_through_its_reset_line(board) -> None:
    board.exec("poke(0x0A, 0x05)")  # RegPaRamp, which the driver leaves alone
    assert registers(board, 0x0A) == [0x05]
    board.exec("modem = radio()")
    assert registers(board, 0x0A) == [0x09]  # its reset value


def test_a_chip_held_in_reset_by_its_line_does_not_answer(board) -> None:
    board.exec(f"reset = Pin({RESET}, Pin.OUT, value=0)")
    assert registers(board, 0x42) == [0x00]
    board.exec("reset(1)")
    assert registers(board, 0x42, 0x01) == [0x12, 0x09]  # RegVersion; reset value: FSK Standby


# Sending and receiving.


def test_send_ends_at_tx_done_after_the_frames_time_on_air(board, medium) -> None:
    heard = []
    medium.add_listener(lambda payload, *rest: heard.append((payload, rest[0], rest[1])), name="probe")
    board.exec("modem = radio()\nasyncio.create_task(transmit(modem, b'0123456789abc'))")
    took_ms = results(board)[0]
    airtime = time_on_air_ms(13, 9, 125_000, 5, 8)
    assert airtime - 2 <= took_ms <= airtime + 60
    wait_for(lambda: heard != [])
    assert heard[0] == (b"0123456789abc", CHANNEL_HZ, 9)
    assert registers(board, 0x01, 0x12) == [0x81, 0x00]  # back in standby by itself, TxDone cleared


def test_a_received_frame_comes_with_its_rssi_and_snr(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 5000))")
    time.sleep(0.2)
    board.radio_receive(b"\x01\x02\x03", -97, 6.5)
    assert results(board) == [["010203", -97, 26]]


def test_a_weak_frames_strength_takes_its_negative_snr_into_account(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 5000))")
    time.sleep(0.2)
    board.radio_receive(b"\xaa", -118, -9.0)
    assert results(board) == [["aa", -118, -36]]


def test_a_frame_with_a_bad_crc_is_dropped_and_counted(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 5000))")
    time.sleep(0.2)
    board.radio_receive(b"\xde\xad", -90, 8, valid_crc=False)
    wait_for(lambda: run(board, "modem.crc_errors") == 1, 5)  # frames on air are a time on air apart
    board.radio_receive(b"\xbe\xef", -90, 8)
    assert results(board) == [["beef", -90, 32]]
    assert run(board, "modem.crc_errors") == 1


def test_recv_returns_none_at_its_timeout_and_standby_ends_a_pending_one(board) -> None:
    board.exec("modem = radio()\nasyncio.create_task(receive(modem, 300))")
    assert results(board) == [None]
    board.exec("asyncio.create_task(receive(modem, None))")
    time.sleep(0.2)
    board.exec("modem.standby()")
    assert results(board, 2) == [None, None]
    assert registers(board, 0x01) == [0x81]


def test_a_send_without_tx_done_is_etimedout(board) -> None:
    board.exec("modem = radio()")
    board.unwire_spi(CS)  # the chip goes: nothing raises DIO0 any more, and RegIrqFlags says nothing
    board.exec("asyncio.create_task(transmit(modem, b'x'))")
    assert results(board, timeout=5) == [["errno", ETIMEDOUT]]
    assert run(board, "modem.dio_dead") is False


def test_a_send_whose_task_was_cancelled_leaves_the_next_send_whole(board, medium) -> None:
    # A send is one generator resumed frame after frame (borne/reused.py): one that its task left
    # half-way, on the air, must not be what the next send resumes.
    heard = []
    medium.add_listener(lambda payload, *rest: heard.append(payload), name="probe")
    board.exec("modem = radio()\nsending = asyncio.create_task(transmit(modem, b'0123456789abc'))")
    time.sleep(0.05)
    board.exec("sending.cancel()\nasyncio.create_task(transmit(modem, b'xy'))")
    [took_ms] = results(board)
    assert isinstance(took_ms, int), took_ms  # not an errno
    airtime = time_on_air_ms(2, 9, 125_000, 5, 8)
    assert airtime - 2 <= took_ms <= airtime + 60
    wait_for(lambda: b"xy" in heard)
    assert run(board, "sending.done()") is True


def test_a_wait_that_standby_ended_ends_though_the_next_operations_wait_has_begun(board) -> None:
    # standby() during a recv, then a send at once (a bridge's transmission): the recv's wait, asleep
    # until its next look, must end then, not wait on as the send's and take the send's IRQ.
    board.exec(
        "from borne.drivers.dio import DioWait\n"
        "line = Pin(25, Pin.IN)\n"
        "dio = DioWait(line, lambda: 0)\n"
        "async def waits(name):\n"
        "    results.append([name, await dio.wait(None)])\n"
        "asyncio.create_task(waits('recv'))"
    )
    time.sleep(0.1)
    board.exec("dio.cancel()\ndio.arm()\nasyncio.create_task(waits('send'))")
    assert results(board) == [["recv", None]]  # while the send's wait goes on
    board.exec("dio.irq(line)")
    assert results(board, 2) == [["recv", None], ["send", True]]


def test_a_dio0_that_never_rises_is_found_dead_and_reg_irq_flags_polled_instead(board, medium) -> None:
    heard = []
    medium.add_listener(lambda payload, *_radio: heard.append(payload), name="sx127x dio0 probe")
    board.exec("modem = radio()")
    board.break_radio("dio0_dead")  # TxDone and RxDone reach RegIrqFlags, never the board's pin
    board.exec("asyncio.create_task(transmit(modem, b'unseen'))")
    assert isinstance(results(board)[0], int)  # its TX-done, from RegIrqFlags at the wait's end
    assert run(board, "modem.dio_dead") is True
    wait_for(lambda: b"unseen" in heard)
    assert registers(board, 0x01, 0x12) == [0x81, 0x00]  # back in standby, TxDone cleared
    board.exec("asyncio.create_task(receive(modem, 5000))")  # polled from the start
    time.sleep(0.2)
    board.radio_receive(b"\x01\x02\x03", -97, 6.5)
    assert results(board, 2)[1] == ["010203", -97, 26]


# What the datasheet forbids, done to the chip directly: it behaves as the SX1276 does.


def test_long_range_mode_written_outside_sleep_is_ignored(board) -> None:
    board.exec("poke(0x01, 0x81)")  # from FSK Standby (the reset state)
    assert registers(board, 0x01) == [0x01]  # Standby, but still FSK
    board.exec("poke(0x01, 0x00); poke(0x01, 0x80); poke(0x01, 0x81)")
    assert registers(board, 0x01) == [0x81]


def test_lora_registers_written_in_fsk_mode_land_in_the_fsk_page(board) -> None:
    board.exec("poke(0x39, 0x34)")  # RegSyncWord's address in FSK mode is another register
    board.exec("poke(0x01, 0x00); poke(0x01, 0x80)")
    assert registers(board, 0x39) == [0x12]


def test_the_fifo_is_not_written_in_sleep_and_is_lost_there(board) -> None:
    board.exec("poke(0x01, 0x00); poke(0x01, 0x81); poke(0x0D, 0); poke(0x00, 0x55); poke(0x0D, 0)")
    assert registers(board, 0x00) == [0x55]  # in Standby, the FIFO keeps what it was given
    board.exec("poke(0x01, 0x80); poke(0x0D, 0); poke(0x00, 0x66)")  # in Sleep: ignored
    board.exec("poke(0x01, 0x81); poke(0x0D, 0)")
    assert registers(board, 0x00) == [0x00]


def test_tx_requested_from_sleep_sends_nothing_and_never_raises_tx_done(board, medium) -> None:
    sent = medium.stats["sent"]
    board.exec("poke(0x01, 0x00); poke(0x01, 0x80); poke(0x40, 0x40); poke(0x22, 4)")
    assert registers(board, 0x01, 0x22) == [0x80, 4]
    board.exec("poke(0x01, 0x83)")
    time.sleep(0.3)
    assert registers(board, 0x12) == [0x00]
    assert run(board, f"Pin({DIO0}).value()") == 0
    assert medium.stats["sent"] == sent


def test_irq_flags_clear_only_where_1_is_written_and_dio0_follows_its_mapping(board) -> None:
    board.exec(
        "poke(0x01, 0x00); poke(0x01, 0x80); poke(0x01, 0x81); poke(0x40, 0x40); poke(0x22, 1)\n"
        "poke(0x0D, 0x80); poke(0x00, 0x42); poke(0x01, 0x83)"
    )
    wait_for(lambda: registers(board, 0x12) == [0x08])
    assert run(board, f"Pin({DIO0}).value()") == 1
    board.exec("poke(0x12, 0x00)")
    assert registers(board, 0x12) == [0x08]
    board.exec("poke(0x40, 0x00)")  # DIO0 = RxDone now: low, the flag stays
    assert run(board, f"Pin({DIO0}).value()") == 0
    board.exec("poke(0x12, 0x08)")
    assert registers(board, 0x12) == [0x00]


def test_a_dio0_rising_edge_runs_the_pins_irq_handler(board) -> None:
    board.exec(
        f"edges = []\nPin({DIO0}, Pin.IN).irq(lambda p: edges.append(p.value()), Pin.IRQ_RISING)\n"
        "poke(0x01, 0x00); poke(0x01, 0x80); poke(0x01, 0x81); poke(0x40, 0x40); poke(0x22, 1); poke(0x01, 0x83)"
    )
    wait_for(lambda: run(board, "edges") != [], 5)
    assert run(board, "edges") == [1]


def test_tx_with_a_payload_length_of_0_sends_nothing_and_never_raises_tx_done(board, medium) -> None:
    sent = medium.stats["sent"]
    board.exec(
        "poke(0x01, 0x00); poke(0x01, 0x80); poke(0x01, 0x81); poke(0x40, 0x40); poke(0x22, 0); poke(0x01, 0x83)"
    )
    time.sleep(0.3)
    assert registers(board, 0x01, 0x12) == [0x83, 0x00]  # left in TX, which never ends
    assert medium.stats["sent"] == sent


def test_rx_single_raises_rx_timeout_after_its_symbols_and_returns_to_standby(board) -> None:
    # SF7 at 125 kHz: 1.024 ms symbols; RegSymbTimeout 100 -> about 102 ms.
    board.exec("poke(0x01, 0x00); poke(0x01, 0x80); poke(0x01, 0x81); poke(0x1E, 0x74); poke(0x1F, 100)")
    board.exec("poke(0x01, 0x86)")
    assert registers(board, 0x01) == [0x86]
    wait_for(lambda: registers(board, 0x12) == [0x80], 3)
    assert registers(board, 0x01) == [0x81]
