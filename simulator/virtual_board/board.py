"""A virtual ESP32 board: the microcontroller (`mcu.mjs`, the real MicroPython VM under Node) and the
parts around it, each with one job:

- `console.py`: the USB serial port, a pty that mpremote, pyserial or a terminal reach by a path like
  a real board's `/dev/ttyUSB0`, the bytes pumped between it and the VM's console, the raw REPL;
- `power.py`: power on and off, resets and their causes, the watchdog, deep sleep, and the boot of
  the next VM after each reset (a fresh one over the same flash: new Python state, same files);
- `peripherals.py`: what is wired to the pins (input levels, ADC voltages, the I2C and SPI chips)
  and the antenna on a radio medium;
- `mcu.py`: one run of the VM and its control pipe, whose messages are in `messages.py`.

`VirtualBoard` composes them, and one thread of its own pumps the console and acts on what the VM
reports.
"""

from __future__ import annotations

import os
import selectors
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from simulator.virtual_board.console import BoardExecError, Console
from simulator.virtual_board.mcu import (
    CONSOLES,
    EXIT_DEEPSLEEP,
    EXIT_MACHINE_RESET,
    EXIT_NOT_INSTALLED,
    EXIT_SOFT_REBOOT_FRIENDLY,
    EXIT_SOFT_REBOOT_RAW,
    MCU,
    MCUS,
    NPM_PROJECT,
    VM_NAME,
    ControlLink,
    Mcu,
    Silicon,
    VirtualBoardError,
    check_vm_installed,
    install_vm,
    vm_cache,
    vm_entry,
)
from simulator.virtual_board.messages import Ack
from simulator.virtual_board.peripherals import Antenna, Peripherals
from simulator.virtual_board.power import (
    DEEPSLEEP_RESET,
    HARD_RESET,
    NVS_FILE,
    PWRON_RESET,
    RTC_MEMORY_FILE,
    SOFT_RESET,
    WDT_RESET,
    Power,
)

if TYPE_CHECKING:
    from simulator.virtual_board.medium import RadioMedium

__all__ = [
    "DEEPSLEEP_RESET",
    "EXIT_DEEPSLEEP",
    "EXIT_MACHINE_RESET",
    "EXIT_NOT_INSTALLED",
    "EXIT_SOFT_REBOOT_FRIENDLY",
    "EXIT_SOFT_REBOOT_RAW",
    "HARD_RESET",
    "MCU",
    "NPM_PROJECT",
    "NVS_FILE",
    "PWRON_RESET",
    "RADIO_FAULTS",
    "RTC_MEMORY_FILE",
    "SOFT_RESET",
    "SX1262_WIRING",
    "SX1276_WIRING",
    "VM_NAME",
    "WDT_RESET",
    "BoardExecError",
    "VirtualBoard",
    "VirtualBoardError",
    "check_vm_installed",
    "install_vm",
    "radio_wiring",
    "vm_cache",
    "vm_entry",
]

_POLL_S = 0.05


# Where the SX1276 sits: the SPI lines, chip select and DIO0 that every SX1276 board profile shares
# (boards/heltec_v2.json, ttgo_lora32_v21.json, tbeam_sx1276.json), and heltec_v2's reset line.
SX1276_WIRING = {"sck": 5, "mosi": 27, "miso": 19, "cs": 18, "dio0": 26, "reset": 14}
# Where the SX1262 sits on a Heltec V3 (boards/heltec_v3.json), with its TCXO powered from DIO3.
SX1262_WIRING = {"sck": 9, "mosi": 10, "miso": 11, "cs": 8, "busy": 13, "dio1": 14, "reset": 12, "tcxo": True}
DEFAULT_WIRING = {"sx1276": SX1276_WIRING, "sx1262": SX1262_WIRING}
RADIO_FAULTS = {"sx1276": ("dio0_dead",), "sx1262": ("busy_stuck", "xosc_fails", "dio1_dead")}  # by chip


def radio_wiring(board_radio: Mapping[str, Any]) -> dict[str, Any]:
    """The wiring of a board profile's radio (its "radio" section), as `VirtualBoard(radio_wiring=...)` takes it."""
    lines = (
        ("sck", "mosi", "miso", "cs", "reset", "dio0")
        if board_radio["chip"] == "sx1276"
        else ("sck", "mosi", "miso", "cs", "reset", "busy", "dio1")
    )
    wiring = {line: board_radio[line] for line in lines if board_radio.get(line) is not None}
    if board_radio.get("dio3_tcxo_mv"):
        wiring["tcxo"] = True
    return wiring


PMU_ADDRESS = 0x34  # the AXP192's and the AXP2101's (frozen/axp_chip.py)
PN532_ADDRESS = 0x24
BME280_ADDRESS = 0x76
SCD4X_ADDRESS = 0x62
SHT4X_ADDRESS = 0x44
I2C_SENSORS = {"bme280": BME280_ADDRESS, "scd4x": SCD4X_ADDRESS, "sht4x": SHT4X_ADDRESS}


class VirtualBoard:
    """A virtual ESP32 running MicroPython, reached over a pty at `port`, its flash kept in `flash`.

    Use it as a context manager (or call `start()` and `close()`):

        with VirtualBoard("/tmp/ttyBORNE0", tmp_path / "flash") as board:
            subprocess.run(["mpremote", "connect", "/tmp/ttyBORNE0", "fs", "ls"], check=True)
            board.set_pin(0, 0)  # press the button on GPIO0
            print(board.exec("import machine; print(machine.Pin(0).value())"))

    `state` (default: beside `flash`, named `<flash>.state`) holds the NVS partition and, while the
    board has power, its RTC memory.

    `radio` is the board's LoRa chip: "sx1276", "sx1262" or None; a board on a `medium` (a
    `RadioMedium` shared with other boards) has an SX1276 unless told. An SX1276 is the register-level
    model of `frozen/sx127x_chip.py`, an SX1262 the command-level model of `frozen/sx126x_chip.py`,
    wired as `radio_wiring` says (a profile's: `radio_wiring(profile["radio"])`), by default as
    `SX1276_WIRING` or `SX1262_WIRING` (`wire_spi` rewires it).

    `mcu` is the profile's MCU, "esp32" (the default) or "esp32s3": the firmware gets that chip's Python
    heap (112 or 128 KiB, `mcu.mjs` says why) and a MemoryError beyond it. "none" leaves the VM's heap
    unlimited: only for test harnesses that hold hundreds of cases at once, never for a firmware's run.

    `console` is the profile's console: "uart" (the default: UART0 behind a USB-UART bridge chip), whose
    receive buffer loses what main.py has no room for, or "usb" (an ESP32-S3's native USB), which holds
    the rest back until main.py reads it (`mcu.mjs` says how each treats input, `console.py` output).
    """

    def __init__(
        self,
        port: str | os.PathLike[str],
        flash: str | os.PathLike[str],
        *,
        state: str | os.PathLike[str] | None = None,
        unique_id: bytes = b"\x24\x0a\xc4\x00\x00\x01",
        node: str = "node",
        radio: str | None = None,
        medium: RadioMedium | None = None,
        radio_wiring: Mapping[str, Any] | None = None,
        mcu: str = "esp32",
        console: str = "uart",
    ) -> None:
        self.port = Path(port)
        self.flash = Path(flash)
        self.state = Path(state) if state is not None else self.flash.with_name(self.flash.name + ".state")
        self.unique_id = unique_id
        self.node = node
        if radio is None and medium is not None:
            radio = "sx1276"
        if radio not in (None, "sx1276", "sx1262"):
            raise ValueError(f"radio {radio!r}: the virtual board has an 'sx1276', an 'sx1262' or None")
        self.radio = radio
        self.medium = medium
        if console not in CONSOLES:
            raise ValueError(f"console {console!r}: the virtual board's console is {' or '.join(map(repr, CONSOLES))}")
        if mcu == "esp32" and console == "usb":
            raise ValueError("console 'usb' needs an ESP32-S3 (mcu='esp32s3'): an ESP32 has no USB of its own")
        link = ControlLink(str(self.port))
        self.console = Console(self.port, console)
        self.peripherals = Peripherals(link, Antenna(self, medium, link))
        if mcu not in (*MCUS, "none"):
            raise ValueError(f"mcu {mcu!r}: the virtual board is an {' or an '.join(map(repr, MCUS))} (or 'none')")
        self.mcu = mcu
        silicon = Silicon(self.flash, self.state, unique_id, node, None if mcu == "none" else mcu, console)
        self.power = Power(
            silicon, link, self.peripherals.world, self.console.show, self.console.replug, self.console.unplug
        )
        self._link = link
        self.radio_wiring = dict(radio_wiring or DEFAULT_WIRING.get(radio or "", {}))
        if radio is not None:
            self.peripherals.wire_spi(radio, **self.radio_wiring)
        self._pump: threading.Thread | None = None

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def boots(self) -> int:
        """VMs started so far: each reset adds one."""
        return self.power.boots

    @property
    def reset_cause(self) -> int:
        """What `machine.reset_cause()` returns on the VM booted last (set as it starts, before boot.py)."""
        return self.power.reset_cause

    @property
    def asleep(self) -> bool:
        """True while the board is in deep sleep."""
        return self.power.asleep

    def start(self) -> None:
        """Power the board on: create the port and boot MicroPython (boot.py, then main.py)."""
        self.console.open()  # first: a port that is taken is the likeliest mistake
        try:
            check_vm_installed(self.node)
            self.flash.mkdir(parents=True, exist_ok=True)
            self.state.mkdir(parents=True, exist_ok=True)
            self.power.power_on()
        except BaseException:
            self.console.close()
            raise
        self._pump = threading.Thread(target=self._run, name=f"virtual board {self.port}", daemon=True)
        self._pump.start()

    def close(self) -> None:
        """Power the board off and remove its port."""
        self.power.on = False  # the pump stops
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        self.power.power_off()
        self.console.close()

    def reset(self) -> None:
        """Press the reset (EN) button: a fresh VM boots over the same flash, with PWRON_RESET as its cause
        (what the ESP32 port reports for EN: `power.py`).

        RTC memory and committed NVS values are kept; returns once the new VM is started."""
        self.power.reset()

    def power_cycle(self, off_s: float = 0.0) -> None:
        """Cut the power for `off_s` seconds and restore it: RAM, RTC memory, uncommitted NVS writes and
        the watchdog are lost; files and committed NVS values are kept; the board boots with PWRON_RESET."""
        self.power.power_cycle(off_s)

    def exec(self, code: str, timeout: float = 30, *, soft_reset: bool = False) -> str:
        """Run `code` through the board's raw REPL, as `mpremote exec` does, and return what it printed.

        With `soft_reset`, the board soft-resets first (fresh Python state, boot.py runs, main.py
        does not), as mpremote does unless told `resume`. Raises BoardExecError, carrying the
        traceback, if the code raised; TimeoutError if it did not finish within `timeout` seconds.
        Leaves the board in the friendly REPL. Nobody else may have the port open meanwhile."""
        return self.console.exec(code, timeout, soft_reset=soft_reset)

    def set_pin(self, pin: int, level: int | None) -> None:
        """Drive GPIO `pin` from outside the board: high (1), low (0), or not at all (None).

        What a `Pin` configured as an input then reads; its IRQ handler has run when this returns
        (unless the VM is busy, rebooting or asleep: it reads the level when it next can)."""
        self.peripherals.set_pin(pin, level)

    def set_adc(self, pin: int, microvolts: int) -> None:
        """Apply `microvolts` to ADC pin `pin`: what `ADC(Pin(pin)).read_uv()` then returns."""
        self.peripherals.set_adc(pin, microvolts)

    def pin_output(self, pin: int) -> int | None:
        """The level the board drives on GPIO `pin` (a `Pin` in OUT mode), or None if it drives none."""
        return self.peripherals.pin_output(pin)

    def times_driven(self, pin: int, level: int) -> int:
        """How many times the board has driven GPIO `pin` to `level` from another level (or from none),
        over all its boots: a flash of an LED that `pin_output` would miss between two looks is counted."""
        return self.peripherals.times_driven(pin, level)

    def wait_driven(self, pin: int, level: int, times: int, timeout: float) -> bool:
        """Wait until `times_driven(pin, level)` reaches `times`; False if it has not within `timeout` s."""
        return self.peripherals.wait_driven(pin, level, times, timeout)

    def wire_i2c(self, kind: str, address: int, *, sda: int, scl: int, **state: object) -> None:
        """Wire a chip to the I2C lines on GPIOs `sda` and `scl`: `kind` is "bme280", "scd4x", "sht4x",
        "pn532", or a power chip, "axp192" or "axp2101" (at 0x34; an SPI chip wired with
        `supply="ldo2"`, say, answers only while that rail is on).

        `state` is the model's, e.g. `interval_ms=0` for an SCD4x that measures without waiting 5 s."""
        self.peripherals.wire_i2c(kind, address, sda=sda, scl=scl, **state)

    def wire_power_chip(self, board_profile: Mapping[str, Any]) -> None:
        """Wire the power chip a board profile (config.json's "board") names, if any: the first of its
        chips, at 0x34 on the profile's I2C bus, as a T-Beam carries one. Call it before power-on: the
        firmware sets the chip up at boot, and crashes if none answers."""
        pmu = board_profile.get("pmu")
        if pmu:
            i2c = board_profile["i2c"]
            self.wire_i2c(next(iter(pmu)), PMU_ADDRESS, sda=i2c["sda"], scl=i2c["scl"])

    def wire_parts(self, board_profile: Mapping[str, Any], sensors: Iterable[str] = (), nfc: str | None = None) -> None:
        """Wire what a node's configuration names to the places its board profile gives: its power chip,
        its I2C sensors (`sensors`, as `borne board flash --sensors` names them) and its badge reader,
        "pn532" on the I2C bus or "mfrc522" on the profile's `nfc_spi`. Call it before power-on."""
        self.wire_power_chip(board_profile)
        on_i2c = [(sensor, I2C_SENSORS[sensor]) for sensor in sensors if sensor in I2C_SENSORS]
        on_i2c += [("pn532", PN532_ADDRESS)] if nfc == "pn532" else []
        if on_i2c:
            i2c = board_profile.get("i2c")
            if i2c is None:
                names = ", ".join(kind for kind, _ in on_i2c)
                raise VirtualBoardError(f"the board profile has no I2C bus for the {names} wired to it")
            for kind, address in on_i2c:
                self.wire_i2c(kind, address, sda=i2c["sda"], scl=i2c["scl"])
        if nfc == "mfrc522":
            spi = board_profile["nfc_spi"]
            self.wire_spi(
                "mfrc522", cs=spi["cs"], sck=spi["sck"], mosi=spi["mosi"], miso=spi["miso"], reset=spi["reset"]
            )

    def unwire_i2c(self, address: int) -> None:
        """Take the chip at `address` off its I2C lines."""
        self.peripherals.unwire_i2c(address)

    def set_air(
        self,
        *,
        temperature_c: float | None = None,
        humidity_pct: float | None = None,
        pressure_hpa: float | None = None,
        co2_ppm: int | None = None,
    ) -> None:
        """Set what the board's environmental sensors measure; None leaves a quantity as it is."""
        self.peripherals.set_air(
            temperature_c=temperature_c, humidity_pct=humidity_pct, pressure_hpa=pressure_hpa, co2_ppm=co2_ppm
        )

    def silence_i2c(self, address: int, silent: bool = True) -> None:
        """Make the chip at `address` stop answering (no ACK, as when unpowered or unplugged), or answer again."""
        self.peripherals.change_chip(address, None, lambda chip: {"answering": not silent})

    def wire_spi(self, kind: str, *, cs: int, sck: int, mosi: int, miso: int, **state: object) -> None:
        """Wire a chip to the SPI lines on GPIOs `sck`, `mosi`, `miso`, selected by GPIO `cs` low: `kind`
        is "mfrc522".

        `state` is the model's: `reset=GPIO` for the MFRC522's NRSTPD line (held low, the chip is
        powered down; unwired, it is always on), `version=0x91` for another VersionReg."""
        self.peripherals.wire_spi(kind, cs=cs, sck=sck, mosi=mosi, miso=miso, **state)

    def unwire_spi(self, cs: int) -> None:
        """Take the chip selected by GPIO `cs` off its SPI lines."""
        self.peripherals.unwire_spi(cs)

    def refuse_flash_writes(self, refuse: bool = True) -> None:
        """Make the flash refuse every write with OSError(EIO), as a worn or failing one does (reads
        still work), or accept them again; it stays so through resets and power cycles."""
        self.peripherals.refuse_flash_writes(refuse)

    def silence_spi(self, cs: int, silent: bool = True) -> None:
        """Unpower the SPI chip selected by GPIO `cs` (it hears nothing, MISO floats), or power it again:
        then it starts from its reset state, as a chip plugged back in does."""
        self.peripherals.change_chip(None, cs, lambda chip: {"answering": not silent})

    def break_radio(self, *faults: str) -> None:
        """Give the radio chip faults among its `RADIO_FAULTS`: an SX1262's "busy_stuck" (it hangs with
        BUSY high), "xosc_fails" (its oscillator never starts), "dio1_dead" (its IRQ never reaches the
        pin); an SX1276's "dio0_dead" (the same, on DIO0); none mends it."""
        known = RADIO_FAULTS.get(self.radio or "", ())
        unknown = set(faults) - set(known)
        if unknown:
            raise ValueError(f"radio faults {sorted(unknown)}: the {self.radio} model has {', '.join(known)}")
        cs = self.radio_wiring["cs"]
        self.peripherals.change_chip(None, cs, lambda chip: {"state": {**chip.state, "faults": list(faults)}})

    def present_badge(
        self, uid: bytes, tag_type: str = "mifare_classic", *, address: int = 0x24, cs: int | None = None
    ) -> None:
        """Hold a badge (UID of 4, 7 or 10 bytes; a tag type of payload_codec's TAG_TYPES) at the reader:
        the PN532 at I2C `address`, or, given `cs`, the SPI reader (MFRC522) that GPIO `cs` selects."""
        if len(uid) not in (4, 7, 10):  # ISO/IEC 14443-3 §6.5.4: single, double or triple size
            raise ValueError(f"a badge's UID has 4, 7 or 10 bytes, not {len(uid)} ({uid.hex()})")
        badge = {"uid": uid.hex(), "tag_type": tag_type}
        self.peripherals.change_chip(address, cs, lambda chip: {"state": {**chip.state, "badge": badge}})

    def remove_badge(self, *, address: int = 0x24, cs: int | None = None) -> None:
        """Take the badge away from the reader that `present_badge` names the same way."""
        self.peripherals.change_chip(address, cs, lambda chip: {"state": {**chip.state, "badge": None}})

    def corrupt_next_answer(self, address: int | None = None, *, cs: int | None = None) -> None:
        """Damage the next answer of the I2C chip at `address` (PN532 frame DCS, SCD4x and SHT4x CRC), or
        of the SPI chip that GPIO `cs` selects (MFRC522: the badge's next UID or SAK, which its BCC or
        CRC_A then gives away)."""
        self.peripherals.change_chip(address, cs, lambda chip: {"corrupt": chip.corrupt + 1})

    def radio_receive(self, payload: bytes, rssi_dbm: float, snr_db: float, *, valid_crc: bool = True) -> None:
        """Bring a LoRa frame to the board's antenna: its modem takes it if it is receiving (not
        sending). A bad CRC counts in the modem's `crc_errors` instead. The medium calls this."""
        self.peripherals.antenna.receive(payload, rssi_dbm, snr_db, valid_crc=valid_crc)

    def _handle_events(self) -> None:
        """Act on what the running VM said: acks, the watchdog, deep sleep, output pins, the radio."""
        mcu = self.power.mcu
        if mcu is None:
            return
        for event in mcu.read_events():
            if isinstance(event, Ack):
                self._link.acknowledged(event.seq)
            elif not self.power.handle(event):
                self.peripherals.handle(event)

    def _pump_events(self, events: int, mcu: Mcu | None) -> bool:
        self._handle_events()
        return True

    def _run(self) -> None:
        """Pump bytes between the port and the VM's console until closed; reboot the VM when it must."""
        with selectors.DefaultSelector() as selector:
            while self.power.on:
                if self.power.serve_requests() or self.power.run_timers(self._handle_events):
                    self.console.drop_input()  # what arrived during the reboot is lost, as on a UART
                mcu = self.power.mcu
                self.console.watch(selector, mcu)
                if mcu is not None:
                    selector.register(mcu.events, selectors.EVENT_READ, self._pump_events)
                ready = selector.select(_POLL_S)
                for key in list(selector.get_map().values()):
                    selector.unregister(key.fileobj)
                for key, events in ready:
                    pump: Callable[[int, Mcu | None], bool] = key.data
                    if not pump(events, mcu):
                        assert mcu is not None
                        exit_code = mcu.process.wait()
                        self._handle_events()  # what it said before it ended
                        self.power.reboot_after(exit_code)
                        self.console.drop_input()
                        break
                if self.power.mcu is None:
                    self.console.drop_input()  # a sleeping chip hears nothing
