"""The radio on the virtual board (our SX127x driver on the SX1276 model, our SX126x driver on the SX1262
model), and the radio medium that carries its frames."""

from __future__ import annotations

import ast
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boards import provisioning
from payload_codec.airtime import time_on_air_ms
from simulator.virtual_board import BoardExecError, RadioMedium, VirtualBoard
from simulator.virtual_board.board import SX1262_WIRING, SX1276_WIRING
from tests.virtual_board.conftest import wait_for

CHANNEL_HZ = 868_100_000
DEFAULT_SNR_X4 = 32  # the medium's default link: -90 dBm, 8 dB

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
RADIO_DRIVERS = ("borne/__init__.py", "borne/airtime.py", "borne/contract.py", "borne/drivers/__init__.py")
RADIO_DRIVERS += ("borne/drivers/dio.py", "borne/drivers/sx127x.py", "borne/drivers/sx126x.py", "borne/reused.py")

# What firmware does on a Heltec V2 (SX1276: our driver, against the chip's register-level model) or
# a Heltec V3 (SX1262: our driver, against the chip's command-level model); then helpers that record
# what happens.
MODEMS = {
    "sx1276": "SX127x(SPI(1, baudrate=2_000_000, sck=Pin(5), mosi=Pin(27), miso=Pin(19)), Pin(18), Pin({dio}), "
    "Pin(14))",
    "sx1262": "SX126x(SPI(1, baudrate=2_000_000, sck=Pin(9), mosi=Pin(10), miso=Pin(11)), Pin(8), Pin(13), Pin({dio}), "
    "Pin(12), tcxo_mv=1800, dio2_rf_switch=True)",
}
WIRING = {"sx1276": SX1276_WIRING, "sx1262": SX1262_WIRING}
DIO = {"sx1276": "dio0", "sx1262": "dio1"}  # the line that carries the chip's IRQ
IMPORTS = {"sx1276": "from borne.drivers.sx127x import SX127x", "sx1262": "from borne.drivers.sx126x import SX126x"}
HELPERS = """\
import asyncio, time
from machine import SPI, Pin
heard = []  # what recv() heard: (payload, rssi, snr), or None
sent = []  # how long each send() took, in ms

async def listen(timeout_ms):
    heard.append((bytes(modem.packet), modem.rssi, modem.snr) if await modem.recv(timeout_ms) else None)

async def listen_continuously():  # recv() again after each frame, in RX continuous mode each time
    while await modem.recv(None):
        heard.append((bytes(modem.packet), modem.rssi, modem.snr))
    heard.append("stopped")

async def send(payload):
    started = time.ticks_ms()
    await modem.send(payload)
    sent.append(time.ticks_diff(time.ticks_ms(), started))
"""


def start_modem(board: VirtualBoard, chip: str = "sx1276", dio: int | None = None, **lora_cfg: object) -> None:
    settings = {"freq_khz": CHANNEL_HZ // 1000, "sf": 7, "bw": "125", "coding_rate": 5, **lora_cfg}
    modem = MODEMS[chip].format(dio=WIRING[chip][DIO[chip]] if dio is None else dio)
    board.exec(f"{IMPORTS[chip]}\n{HELPERS}modem = {modem}\nmodem.configure({settings!r})")


def with_radio_drivers(flash: Path) -> Path:
    """The flash directory of a board, holding our radio drivers as the installer puts them there (.mpy)."""
    for name in RADIO_DRIVERS:
        target = flash / provisioning.board_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(provisioning.compile_module(FIRMWARE / name, name))
    return flash


def listen(board: VirtualBoard, medium: RadioMedium, timeout_ms: int | None = 2000) -> None:
    """Start a recv() on the board; return once the medium knows it listens."""
    board.exec(f"asyncio.create_task(listen({timeout_ms}))")
    wait_for(lambda: medium.listening(board) is not None)


def send(board: VirtualBoard, payload: bytes) -> None:
    board.exec(f"asyncio.create_task(send({payload!r}))")


def heard(board: VirtualBoard) -> list:
    return ast.literal_eval(board.exec("print(heard)"))


def sent(board: VirtualBoard) -> list[int]:
    return ast.literal_eval(board.exec("print(sent)"))


@pytest.fixture
def medium() -> Iterator[RadioMedium]:
    with RadioMedium(random.Random(1)) as medium:
        yield medium


@pytest.fixture
def boards(board_tools: None, tmp_path: Path, medium: RadioMedium) -> Iterator[Callable[..., VirtualBoard]]:
    """Make a board on the medium, its modem constructed with `lora_cfg` (868.1 MHz, SF7 by default)."""
    with contextlib.ExitStack() as stack:

        def make(
            name: str, chip: str = "sx1276", *, dio: int | None = None, mcu: str = "esp32", **lora_cfg: object
        ) -> VirtualBoard:
            """`dio`: the GPIO of the chip's IRQ line, if not the usual one."""
            flash = with_radio_drivers(tmp_path / name)
            wiring = None if dio is None else {**WIRING[chip], DIO[chip]: dio}
            board = VirtualBoard(
                tmp_path / f"tty{name}", flash, radio=chip, medium=medium, radio_wiring=wiring, mcu=mcu
            )
            stack.enter_context(board)
            start_modem(board, chip, dio, **lora_cfg)
            return board

        yield make


def test_a_board_receives_another_boards_frame_with_the_links_rssi_and_snr(boards, medium) -> None:
    sender, receiver = boards("a"), boards("b")
    medium.set_link(sender, receiver, rssi_dbm=-71, snr_db=6.5)
    listen(receiver, medium)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [(b"hello", -71, 26)]


# A node that deep-sleeps between reports listens in light sleep: machine.lightsleep() recorded, as
# (ms asked, ms slept).
SLEEPING_LIGHTLY = """
import machine
slept = []
_lightsleep = machine.lightsleep
def lightsleep(ms=None):
    started = time.ticks_ms()
    _lightsleep(ms)
    slept.append((ms, time.ticks_diff(time.ticks_ms(), started)))
machine.lightsleep = lightsleep
modem.light_sleep = True
"""


@pytest.mark.parametrize("chip", ["sx1276", "sx1262"])
def test_a_sleeping_node_listens_in_light_sleep_and_its_irq_line_wakes_it_for_a_frame(boards, medium, chip) -> None:
    board = boards("a", chip)
    board.exec(SLEEPING_LIGHTLY)
    listen(board, medium, timeout_ms=4000)
    time.sleep(0.5)
    medium.transmit(b"woke", CHANNEL_HZ, 7)
    wait_for(lambda: heard(board) != [], timeout_s=3)  # long before the receive's 4 s
    assert heard(board) == [(b"woke", -90, DEFAULT_SNR_X4)]
    ((asked, slept),) = ast.literal_eval(board.exec("print(slept)"))
    assert asked > 3500 and 400 < slept < 3000  # asleep from the start of the receive to the frame's end
    # The wake left the line's pad an RTC IO: the driver made it a digital GPIO again, whose IRQ an
    # awake receive takes (no poll of the chip's flags, no line found dead).
    board.exec("modem.light_sleep = False")
    listen(board, medium)
    medium.transmit(b"awake", CHANNEL_HZ, 7)
    wait_for(lambda: len(heard(board)) == 2)
    assert heard(board)[1][0] == b"awake"
    assert board.exec("print(modem._dio.polled, modem.dio_dead)").split() == ["False", "False"]


def test_a_sleeping_node_whose_irq_line_cannot_wake_the_cpu_listens_awake(boards, medium) -> None:
    board = boards("a", "sx1262", dio=33, mcu="esp32s3")  # as a LilyGO T3-S3: GPIO 33 is no RTC GPIO of an S3
    board.exec(SLEEPING_LIGHTLY)
    listen(board, medium, timeout_ms=4000)
    medium.transmit(b"heard", CHANNEL_HZ, 7)
    wait_for(lambda: heard(board) != [])
    assert heard(board)[0][0] == b"heard"
    assert board.exec("print(slept)").strip() == "[]"


def test_a_sleeping_node_whose_irq_pin_reads_high_without_an_irq_listens_awake_until_its_deadline(
    boards, medium
) -> None:
    # A wrong pin in the profile, held high (a pull-up, a strapping pin): light sleep would end at once, and
    # the level said an IRQ the chip never raised, again and again, with nothing else let to run.
    board = boards("a", dio=22)  # the chip's DIO0 goes to GPIO 22; the modem is told GPIO 2, held high
    board.set_pin(2, 1)
    start_modem(board, dio=2)
    board.exec(SLEEPING_LIGHTLY)
    listen(board, medium, timeout_ms=800)
    wait_for(lambda: heard(board) != [])
    assert heard(board) == [None]
    assert board.exec("print(slept)").strip() == "[]"


def test_a_sleeping_node_whose_irq_line_is_dead_polls_the_chip_awake(boards, medium) -> None:
    # A line that never rises cannot wake the CPU: asleep, the frame would be found only at the deadline.
    board = boards("a")
    board.break_radio("dio0_dead")
    listen(board, medium, timeout_ms=4000)
    medium.transmit(b"first", CHANNEL_HZ, 7)
    wait_for(lambda: heard(board) != [])
    assert board.exec("print(modem.dio_dead)").strip() == "True"  # found dead by that receive
    board.exec(SLEEPING_LIGHTLY)
    listen(board, medium, timeout_ms=4000)
    medium.transmit(b"second", CHANNEL_HZ, 7)
    wait_for(lambda: len(heard(board)) == 2, timeout_s=3)
    assert heard(board)[1][0] == b"second"
    assert board.exec("print(slept)").strip() == "[]"


def test_a_sleeping_node_that_hears_nothing_sleeps_through_its_receive(boards, medium) -> None:
    board = boards("a")
    board.exec(SLEEPING_LIGHTLY)
    listen(board, medium, timeout_ms=600)
    wait_for(lambda: heard(board) != [])
    assert heard(board) == [None]
    ((asked, slept),) = ast.literal_eval(board.exec("print(slept)"))
    assert asked <= 600 <= slept + 5


def test_an_sx1262_and_an_sx1276_with_the_same_private_sync_word_hear_each_other(boards, medium) -> None:
    sender, receiver = boards("a", "sx1262", syncword=0x1424), boards("b", "sx1276", syncword=0x12)
    listen(receiver, medium)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [(b"hello", -90, DEFAULT_SNR_X4)]


def test_a_board_on_another_frequency_hears_nothing(boards, medium) -> None:
    sender, receiver = boards("a"), boards("b", freq_khz=868_300)
    listen(receiver, medium, timeout_ms=1000)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [None]


def test_a_board_on_another_spreading_factor_hears_nothing(boards, medium) -> None:
    sender, receiver = boards("a", sf=7), boards("b", sf=8)
    listen(receiver, medium, timeout_ms=1000)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [None]


def test_recv_returns_none_when_its_timeout_passes(boards) -> None:
    board = boards("a")
    board.exec("asyncio.create_task(listen(300))")
    started = time.monotonic()
    wait_for(lambda: heard(board) != [])
    assert heard(board) == [None]
    assert time.monotonic() - started >= 0.3


def test_standby_makes_a_pending_recv_return_none(boards, medium) -> None:
    board = boards("a")
    listen(board, medium, timeout_ms=None)
    board.exec("modem.standby()")
    wait_for(lambda: heard(board) != [])
    assert heard(board) == [None]
    assert medium.listening(board) is None


def test_recv_continuous_yields_every_frame_until_standby(boards, medium) -> None:
    board = boards("a")
    board.exec("asyncio.create_task(listen_continuously())")
    wait_for(lambda: medium.listening(board) is not None)
    medium.transmit(b"one", CHANNEL_HZ, 7)
    wait_for(lambda: len(heard(board)) == 1)
    medium.transmit(b"two", CHANNEL_HZ, 7)
    wait_for(lambda: len(heard(board)) == 2)
    board.exec("modem.standby()")
    wait_for(lambda: len(heard(board)) == 3)
    assert [entry if entry == "stopped" else entry[0] for entry in heard(board)] == [b"one", b"two", "stopped"]


@pytest.mark.parametrize(
    ("chip", "sf", "bw", "payload_size"),
    [("sx1276", 9, 125, 20), ("sx1262", 7, 125, 20), ("sx1262", 9, 125, 20), ("sx1262", 10, 250, 11)],
)
def test_send_returns_when_the_frames_time_on_air_has_passed(
    boards, chip: str, sf: int, bw: int, payload_size: int
) -> None:
    board = boards("a", chip, sf=sf, bw=str(bw), preamble_len=12)
    send(board, bytes(payload_size))
    wait_for(lambda: sent(board) != [])
    time_on_air = time_on_air_ms(payload_size, sf, bw * 1000, 5, 12)
    assert time_on_air <= sent(board)[0] + 1 < time_on_air + 500


@pytest.mark.parametrize("chip", ["sx1276", "sx1262"])
def test_a_board_does_not_hear_a_frame_while_it_transmits(boards, medium, chip: str) -> None:
    board = boards("a", chip, sf=10)
    listen(board, medium, timeout_ms=5000)
    send(board, bytes(20))  # about 400 ms on air
    wait_for(lambda: medium.stats["sent"] == 1)
    medium.transmit(b"missed", CHANNEL_HZ, 10)
    wait_for(lambda: sent(board) != [])
    assert medium.stats["delivered"] == 0
    assert heard(board) == [None]  # our drivers' send ends the recv


@pytest.mark.parametrize("chip", ["sx1276", "sx1262"])
def test_a_send_ends_a_pending_recv_on_the_half_duplex_chip(boards, medium, chip: str) -> None:
    board = boards("a", chip)
    listen(board, medium, timeout_ms=5000)
    send(board, b"uplink")
    wait_for(lambda: sent(board) != [])
    assert heard(board) == [None]
    assert medium.listening(board) is None


def test_two_overlapping_frames_of_equal_strength_are_both_lost(boards, medium) -> None:
    sender, receiver = boards("a", sf=10), boards("c", sf=10)
    listen(receiver, medium, timeout_ms=1500)
    send(sender, bytes(20))  # about 400 ms on air
    wait_for(lambda: medium.stats["sent"] == 1)
    medium.transmit(b"intruder", CHANNEL_HZ, 10, sender="intruder")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [None]
    assert medium.stats["collided"] == 2


def test_the_medium_keeps_each_senders_frames_with_their_fate_at_each_receiver(boards, medium) -> None:
    # What the soak shows of a door whose check-ins were lost: did it send, and what became of its frames.
    sender, receiver = boards("a", sf=10), boards("c", sf=10)
    medium.keep_transmissions()
    listen(receiver, medium, timeout_ms=1500)
    send(sender, bytes(20))
    wait_for(lambda: medium.stats["sent"] == 1)
    medium.transmit(b"intruder", CHANNEL_HZ, 10, sender="intruder")
    wait_for(lambda: len(medium.transmissions(sender)) == 1)
    [frame] = medium.transmissions(sender)
    assert frame.fates == {receiver: "garbled"}  # the receiver had locked on it: a CRC error
    assert frame.airtime_s == pytest.approx(time_on_air_ms(20, 10) / 1000, rel=0.01)
    assert abs(frame.at - time.time()) < 30
    assert medium.transmissions("intruder")[0].fates == {receiver: "collided"}
    listen(receiver, medium, timeout_ms=1500)
    send(sender, bytes(20))
    wait_for(lambda: len(medium.transmissions(sender)) == 2)
    assert medium.transmissions(sender)[1].fates == {receiver: "delivered"}


def test_a_frame_10_db_stronger_than_the_one_it_overlaps_is_received(boards, medium) -> None:
    sender, receiver = boards("a", sf=10), boards("c", sf=10)
    medium.set_link(sender, receiver, rssi_dbm=-60)
    medium.set_link("intruder", receiver, rssi_dbm=-70)
    listen(receiver, medium, timeout_ms=1500)
    send(sender, b"strong")
    wait_for(lambda: medium.stats["sent"] == 1)
    medium.transmit(b"weak", CHANNEL_HZ, 10, sender="intruder")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [(b"strong", -60, DEFAULT_SNR_X4)]
    wait_for(lambda: medium.stats["collided"] == 1)  # the weak one, once its fate is decided


def test_a_board_locked_on_the_first_of_two_colliding_frames_counts_a_crc_error(boards, medium) -> None:
    sender, receiver = boards("a", sf=10), boards("c", sf=10)
    listen(receiver, medium, timeout_ms=1500)
    send(sender, bytes(20))
    wait_for(lambda: medium.stats["sent"] == 1)
    medium.transmit(b"intruder", CHANNEL_HZ, 10, sender="intruder")
    wait_for(lambda: heard(receiver) != [])
    assert receiver.exec("print(modem.crc_errors)").strip() == "1"


def test_a_link_with_total_loss_delivers_nothing(boards, medium) -> None:
    sender, receiver = boards("a"), boards("b")
    medium.set_link(sender, receiver, loss=1.0)
    listen(receiver, medium, timeout_ms=1000)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [None]
    assert medium.stats["lost"] == 1


def test_a_frame_below_its_spreading_factors_demodulation_floor_is_lost(boards, medium) -> None:
    sender, receiver = boards("a", sf=7), boards("b", sf=7)
    medium.set_link(sender, receiver, snr_db=-10)  # SF7 needs -7.5 dB
    listen(receiver, medium, timeout_ms=1000)
    send(sender, b"hello")
    wait_for(lambda: heard(receiver) != [])
    assert heard(receiver) == [None]


def test_a_concentrator_listener_hears_every_spreading_factor(boards, medium) -> None:
    frames: list[tuple[bytes, int, int]] = []
    medium.add_listener(lambda payload, frequency_hz, sf, bw_hz, rssi, snr, end: frames.append((payload, sf, bw_hz)))
    board = boards("a", sf=7)
    send(board, b"seven")
    wait_for(lambda: len(frames) == 1)
    board.exec("modem.configure({'sf': 9})")
    send(board, b"nine")
    wait_for(lambda: len(frames) == 2)
    assert frames == [(b"seven", 7, 125_000), (b"nine", 9, 125_000)]


def test_a_host_transmission_reaches_a_listening_board(boards, medium) -> None:
    board = boards("a")
    listen(board, medium)
    medium.transmit(b"downlink", CHANNEL_HZ, 7, power_dbm=20)  # 6 dB over the links' reference
    wait_for(lambda: heard(board) != [])
    assert heard(board) == [(b"downlink", -84, (8 + 6) * 4)]


def test_each_senders_time_on_air_is_summed_whatever_became_of_its_frames(medium) -> None:
    medium.transmit(bytes(22), CHANNEL_HZ, 7, sender="a")
    medium.transmit(bytes(22), CHANNEL_HZ, 7, sender="b")  # over a's frame: both collide, both spent air
    medium.transmit(bytes(40), CHANNEL_HZ, 9, sender="a")
    assert medium.time_on_air_s("a") == pytest.approx((time_on_air_ms(22, 7) + time_on_air_ms(40, 9)) / 1000)
    assert medium.time_on_air_s("b") == pytest.approx(time_on_air_ms(22, 7) / 1000)
    assert medium.time_on_air_s("c") == 0


def test_a_channel_outside_the_sx1262s_image_calibration_bands_is_a_value_error(boards) -> None:
    board = boards("a", "sx1262")
    code = "try:\n    modem.configure({'freq_khz': 600000})\nexcept ValueError as e:\n    print(e)"
    assert "no image calibration band" in board.exec(code)


@pytest.mark.parametrize(
    ("radio", "chip", "error"),
    [
        ("sx1276", "sx1262", r"OSError: \[Errno 19\]"),  # BUSY floats low, the status byte reads 0: no SX126x
        ("sx1262", "sx1276", r"OSError: \[Errno 19\]"),  # RegVersion reads MISO floating low: no SX127x
        (None, "sx1276", r"OSError: \[Errno 19\]"),
        (None, "sx1262", r"OSError: \[Errno 19\]"),
    ],
)
def test_the_driver_of_a_chip_the_board_lacks_raises_as_on_a_board(
    board_tools: None, tmp_path: Path, radio: str | None, chip: str, error: str
) -> None:
    board = VirtualBoard(tmp_path / "tty", with_radio_drivers(tmp_path / "flash"), radio=radio)
    with board, pytest.raises(BoardExecError, match=error):
        start_modem(board, chip)
