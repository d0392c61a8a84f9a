# A Semtech SX1261/SX1262 LoRa transceiver on SPI, at the level of its commands (DS: the SX1261/2
# datasheet rev 2.1, § its sections; RM0453: ST's STM32WL reference manual, whose sub-GHz radio is the
# same IP, for the busy times of its Table 33). A transaction starts when chip select falls: an opcode,
# then its parameters; a read command answers the status byte, then its data (DS §8.3, §13).
#
# Modelled: BUSY, high while the chip executes a command (RM0453 Table 33's times; 10 us for the
# configuration commands, whose times the datasheet does not give), for 3.5 ms after a reset, through
# sleep and while it wakes (a falling NSS wakes it, DS §13.1.1); a transaction that starts while BUSY
# is high is lost, as on the chip (DS §8.3.1). The status byte (DS §13.5.1): the chip mode and the
# last command's status: CmdError (0x4) for an unknown opcode or a wrong number of parameters,
# ExecError (0x5) for a command the chip cannot execute in its state (SetTx, SetRx and the modem's
# parameters before SetPacketType(LoRa); SetPacketType, Calibrate and SetSleep outside standby,
# Calibrate and CalibrateImage outside STDBY_RC). Device errors (GetDeviceErrors, DS §13.6.1):
# XOSC_START when the XOSC must start on a board whose TCXO DIO3 was not told to power (the command
# then fails), and when SetDIO3AsTCXOCtrl is sent (DS §13.3.6); IMG_CALIB when TX or RX starts on a
# frequency outside the band the image was calibrated for (the chip itself only loses image
# rejection there: stricter). The modes STDBY_RC, STDBY_XOSC, FS, TX, RX, sleep (warm: the
# configuration is kept; cold: lost), with the fall back to STDBY_RC after TX-done, a packet in single
# RX, or a timeout (DS §13.1.4-13.1.5). The 256-byte buffer and its base addresses; the IRQ status,
# its mask and DIO1's mask (DS §13.3.1), DIO1 a level the board reads on its pin; TX-done after the
# frame's time on air; RX fed by the radio medium's frames, with GetPacketStatus's RSSI and SNR; the
# registers the drivers use (sync word, IQ polarity, TX modulation and clamp, OCP). An optional reset
# line (low holds the chip in reset, a rising edge resets it); no answer while unpowered.
#
# Faults the host sets in the chip's state: "busy_stuck" (BUSY high for good, as a chip that hangs),
# "xosc_fails" (its oscillator never starts: XOSC_START and ExecError on TX and RX), "dio1_dead" (DIO1
# never rises: an IRQ that never comes).
#
# Not modelled: GFSK, CAD, the RX duty cycle, retention lists, the PLL's lock times, GetStats, the
# instantaneous RSSI, calibration failures other than the above.
import json
import time
from binascii import hexlify

import spi_bus
from radio_chip import RadioChip, time_on_air_us

_SLEEP = 0
_STDBY_RC = 0x2
_STDBY_XOSC = 0x3
_FS = 0x4
_RX = 0x5
_TX = 0x6

_DATA_AVAILABLE = 0x2
_CMD_TIMEOUT = 0x3
_CMD_ERROR = 0x4
_EXEC_ERROR = 0x5
_TX_DONE_STATUS = 0x6

_IRQ_TX_DONE = 0x0001
_IRQ_RX_DONE = 0x0002
_IRQ_HEADER_VALID = 0x0010
_IRQ_CRC_ERR = 0x0040
_IRQ_TIMEOUT = 0x0200

_IMG_CALIB_ERR = 0x0010
_XOSC_START_ERR = 0x0020

# Write commands and their parameter counts (DS §13, Tables 13-1 to 13-5); None: any count.
_WRITES = {
    0x84: 1,  # SetSleep
    0x80: 1,  # SetStandby
    0xC1: 0,  # SetFs
    0x83: 3,  # SetTx
    0x82: 3,  # SetRx
    0x96: 1,  # SetRegulatorMode
    0x89: 1,  # Calibrate
    0x98: 2,  # CalibrateImage
    0x95: 4,  # SetPaConfig
    0x93: 1,  # SetRxTxFallbackMode
    0x0D: None,  # WriteRegister: address, data...
    0x0E: None,  # WriteBuffer: offset, data...
    0x08: 8,  # SetDioIrqParams
    0x02: 2,  # ClearIrqStatus
    0x9D: 1,  # SetDIO2AsRfSwitchCtrl
    0x97: 4,  # SetDIO3AsTCXOCtrl
    0x86: 4,  # SetRfFrequency
    0x8A: 1,  # SetPacketType
    0x8E: 2,  # SetTxParams
    0x8B: 4,  # SetModulationParams (LoRa)
    0x8C: 6,  # SetPacketParams (LoRa)
    0x8F: 2,  # SetBufferBaseAddress
    0xA0: 1,  # SetLoRaSymbNumTimeout
    0x9F: 1,  # StopTimerOnPreamble
    0x07: 2,  # ClearDeviceErrors
}
# Read commands: the bytes before the status (opcode included).
_READS = {0xC0: 1, 0x1D: 3, 0x1E: 2, 0x11: 1, 0x12: 1, 0x13: 1, 0x14: 1, 0x15: 1, 0x10: 1, 0x17: 1}
_NEEDS_LORA = (0x83, 0x82, 0x8B, 0x8C)  # SetTx, SetRx, the modem's parameters (DS §13.4.2)

# Busy times in us (RM0453 Table 33, typical): the rest 10 us.
_BUSY_US = {0x83: 126, 0x82: 83, 0xC1: 50, 0x89: 3500, 0x98: 3500}
_BUSY_RESET_US = 3500  # calibration after a reset or a cold wake (DS §9.2.1)
_BUSY_WARM_WAKE_US = 340

_BW_HZ = {0x00: 7800, 0x08: 10400, 0x01: 15600, 0x09: 20800, 0x02: 31250, 0x0A: 41700, 0x03: 62500}
_BW_HZ.update({0x04: 125000, 0x05: 250000, 0x06: 500000})
_TCXO_DEFAULT_BAND = (0xE1, 0xE9)  # the image is calibrated for 902-928 MHz at power-on (DS §9.2.1)

# Register reset values (DS §12, Table 12-1): sync word 0x1424, OCP 140 mA (SX1262).
_REGISTERS = {0x0740: 0x14, 0x0741: 0x24, 0x0736: 0x0D, 0x0889: 0x04, 0x08D8: 0x00, 0x08E7: 0x38, 0x08AC: 0x94}


class SX1262(RadioChip):
    max_baudrate = 16_000_000  # SPI clock up to 16 MHz (DS §8.2)

    def __init__(self, air):
        super().__init__(air)
        self.busy_pin = None
        self.dio1_pin = None
        self.reset_pin = None
        self.tcxo = False  # the board's reference is a TCXO powered from DIO3
        self.faults = ()
        self.held_in_reset = False
        self.powered = True
        self.busy_until = None  # ticks_us when BUSY falls; None: high until something else lowers it
        self.busy_level = -1  # what BUSY was last driven to; -1: not yet
        # One buffer for the command being clocked in, and the handlers by opcode, made once: the
        # firmware clocks every command and polls its reads, which allocate nothing on the chip.
        self.command = bytearray()
        self.handlers = {int(name[4:], 16): getattr(self, name) for name in dir(self) if name.startswith("cmd_")}
        self.ignoring = False
        self.reset()

    def reset(self):
        """Power-on or NRESET: the chip calibrates in STDBY_RC with BUSY high (DS §9.1)."""
        self.stop_timer()
        self.tell_idle()
        self.mode = _STDBY_RC
        self.warm = False  # the last SetSleep kept the configuration
        self.regulator = 0
        self.status = 0
        self.packet_type = None
        self.registers = dict(_REGISTERS)
        self.buffer = bytearray(256)
        self.tx_base = 0
        self.rx_base = 0
        self.rx_length = 0
        self.rx_start = 0
        self.packet_status = (0, 0, 0)
        self.frequency = 0
        self.image_band = _TCXO_DEFAULT_BAND
        self.tcxo_on = False
        self.dio2_rf_switch = False
        self.sf, self.bw, self.cr, self.ldro = 7, 0x04, 1, 0
        self.preamble, self.implicit, self.length, self.crc, self.invert_iq = 8, 0, 255, 1, 0
        self.power_dbm = 14
        self.irq_mask = 0
        self.dio1_mask = 0
        self.irqs = 0
        self.errors = 0
        self.rx_continuous = False
        self.busy_for(_BUSY_RESET_US)
        self.update_dio1()

    # Wiring and power.

    def configure(self, state):
        self.follow_power()
        for name in ("busy", "dio1", "reset"):
            old = getattr(self, name + "_pin")
            if old is not None and state.get(name) != old:
                spi_bus.drive(old, None)
            setattr(self, name + "_pin", state.get(name))
        self.tcxo = bool(state.get("tcxo"))
        self.faults = tuple(state.get("faults") or ())
        if self.reset_pin is not None:
            # NRESET has a pull-up inside the chip: left floating, it runs; the board's output overrides it.
            spi_bus.drive(self.reset_pin, 1 if self.powered else None)
        self.held_in_reset = self.reset_pin is not None and not spi_bus.level(self.reset_pin, 1)
        self.busy_level = -1  # drive BUSY again, as it is now
        self.settle()
        self.update_dio1()

    def unplug(self):
        self.stop_timer()
        self.tell_idle()
        for pin in (self.busy_pin, self.dio1_pin, self.reset_pin):
            if pin is not None:
                spi_bus.drive(pin, None)

    def line(self, pin, level):
        if pin != self.reset_pin:
            return
        if level and self.held_in_reset:
            self.held_in_reset = False
            self.reset()
        self.held_in_reset = not level
        if self.held_in_reset:
            self.stop_timer()
            self.tell_idle()
            self.settle()
            self.update_dio1()

    # BUSY.

    def busy_for(self, us):
        self.busy_until = time.ticks_add(time.ticks_us(), us)
        self.settle()

    def busy(self):
        if not self.powered or self.held_in_reset:
            return None  # released
        if "busy_stuck" in self.faults or self.mode == _SLEEP:
            return 1
        if self.busy_until is not None and time.ticks_diff(self.busy_until, time.ticks_us()) > 0:
            return 1
        self.busy_until = None
        return 0

    def settle(self):
        level = self.busy()
        if level != self.busy_level and self.busy_pin is not None:
            self.busy_level = level
            spi_bus.drive(self.busy_pin, level)

    # SPI transactions.

    def select(self):
        self.command[:] = b""  # emptied, its room kept
        self.ignoring = not self.powered or self.held_in_reset
        if self.ignoring:
            return
        if self.mode == _SLEEP:
            self.wake()
            self.ignoring = True  # what came with the waking edge is lost
        elif self.busy():
            self.ignoring = True  # BUSY high: the chip does not take the command (DS §8.3.1)

    def wake(self):
        warm = self.warm
        self.mode = _STDBY_RC
        if not warm:
            self.reset()
        else:
            self.busy_for(_BUSY_WARM_WAKE_US)
            if self.tcxo_on:
                self.errors |= _XOSC_START_ERR  # the TCXO starts again: as micropython-lib's sx126x.py sees it

    def exchange(self, byte):
        if self.ignoring or not self.powered or self.held_in_reset:
            return None
        self.command.append(byte)
        n = len(self.command)
        opcode = self.command[0]
        before = _READS.get(opcode)
        if before is None or n <= before:
            return self.status_byte()
        if n == before + 1:
            return self.status_byte()
        return self.read_byte(opcode, n - before - 2)

    def deselect(self):
        command = self.command
        if self.ignoring or not command or not self.powered or self.held_in_reset:
            return
        opcode = command[0]
        if opcode in _READS:
            self.after_read(opcode)
            self.busy_for(10)
            return
        params = command[1:]
        count = _WRITES.get(opcode, -1)
        if count == -1 or (count is not None and len(params) != count) or (count is None and len(params) < 2):
            self.status = _CMD_ERROR
            return
        self.status = 0
        if opcode in _NEEDS_LORA and self.packet_type != 1:
            self.status = _EXEC_ERROR
            return
        self.busy_for(_BUSY_US.get(opcode, 10))
        self.handlers[opcode](params)

    def status_byte(self):
        return (self.mode & 0x07) << 4 | (self.status & 0x07) << 1

    def read_byte(self, opcode, i):
        """Byte `i` of a read command's data."""
        c = self.command
        if opcode == 0x1D:  # ReadRegister
            return self.registers.get((c[1] << 8 | c[2]) + i, 0)
        if opcode == 0x1E:  # ReadBuffer
            return self.buffer[(c[1] + i) & 0xFF]
        if opcode == 0x11:  # GetPacketType
            return (self.packet_type or 0) if i == 0 else 0
        if opcode == 0x12:  # GetIrqStatus
            return self.irqs >> 8 if i == 0 else self.irqs & 0xFF if i == 1 else 0
        if opcode == 0x13:  # GetRxBufferStatus
            return self.rx_length if i == 0 else self.rx_start if i == 1 else 0
        if opcode == 0x14:  # GetPacketStatus
            return self.packet_status[i] if i < len(self.packet_status) else 0
        if opcode == 0x15:  # GetRssiInst
            return self.packet_status[0] if i == 0 else 0
        if opcode == 0x17:  # GetDeviceErrors
            return self.errors >> 8 if i == 0 else self.errors & 0xFF if i == 1 else 0
        return 0  # GetStats (0x10): zeros; past a read's data: zeros

    def after_read(self, opcode):
        # GetStatus reports the last command's status once; the other reads leave it (DS §13.5.1).
        if opcode == 0xC0:
            self.status = 0

    # Commands (DS §13).

    def standby_only(self, rc=False):
        if self.mode not in ((_STDBY_RC,) if rc else (_STDBY_RC, _STDBY_XOSC)):
            self.status = _EXEC_ERROR
            return False
        return True

    def start_xosc(self):
        """The XOSC must run (STDBY_XOSC, FS, TX, RX): on a TCXO board, only once DIO3 powers it."""
        if (self.tcxo and not self.tcxo_on) or "xosc_fails" in self.faults:
            self.errors |= _XOSC_START_ERR
            self.status = _EXEC_ERROR
            return False
        return True

    def cmd_84(self, p):  # SetSleep
        if not self.standby_only():
            return
        self.stop_timer()
        self.tell_idle()
        self.warm = bool(p[0] & 0x04)
        self.mode = _SLEEP
        self.settle()

    def cmd_80(self, p):  # SetStandby
        self.stop_timer()
        self.tell_idle()
        if p[0] and not self.start_xosc():
            self.mode = _STDBY_RC
            return
        self.mode = _STDBY_XOSC if p[0] else _STDBY_RC
        self.busy_for(31 if p[0] else 10)

    def cmd_c1(self, p):  # SetFs
        if self.start_xosc():
            self.mode = _FS

    def cmd_83(self, p):  # SetTx
        self.stop_timer()
        if not self.start_xosc():
            return
        self.check_image()
        self.mode = _TX
        payload = bytes(self.buffer[(self.tx_base + i) & 0xFF] for i in range(self.length))
        self.tell_transmitting(hexlify(payload).decode(), self.settings())
        airtime = self.time_on_air_us(self.length)
        timeout = (p[0] << 16 | p[1] << 8 | p[2]) * 15625 // 1000  # steps of 15.625 us
        if timeout and timeout < airtime:
            self.start_timer(timeout, self.timed_out)
        else:
            self.start_timer(airtime, self.tx_done)

    def cmd_82(self, p):  # SetRx
        self.stop_timer()
        if not self.start_xosc():
            return
        self.check_image()
        self.mode = _RX
        timeout = p[0] << 16 | p[1] << 8 | p[2]
        self.rx_continuous = timeout == 0xFFFFFF
        self.tell_receiving(self.settings())
        if timeout and not self.rx_continuous:
            self.start_timer(timeout * 15625 // 1000, self.timed_out)

    def cmd_96(self, p):  # SetRegulatorMode
        self.regulator = p[0]

    def cmd_89(self, p):  # Calibrate: in STDBY_RC only
        if self.standby_only(rc=True) and p[0] & 0x40:
            self.image_band = _TCXO_DEFAULT_BAND

    def cmd_98(self, p):  # CalibrateImage
        if self.standby_only(rc=True):
            self.image_band = (p[0], p[1])

    def cmd_95(self, p):  # SetPaConfig: the OCP follows deviceSel, 60 mA (SX1261) or 140 mA (DS §13.1.14)
        self.registers[0x08E7] = 0x18 if p[2] else 0x38

    def cmd_93(self, p):  # SetRxTxFallbackMode
        pass

    def cmd_0d(self, p):  # WriteRegister
        address = p[0] << 8 | p[1]
        for i, value in enumerate(p[2:]):
            self.registers[address + i] = value

    def cmd_0e(self, p):  # WriteBuffer
        for i, value in enumerate(p[1:]):
            self.buffer[(p[0] + i) & 0xFF] = value

    def cmd_08(self, p):  # SetDioIrqParams
        self.irq_mask = p[0] << 8 | p[1]
        self.dio1_mask = p[2] << 8 | p[3]
        self.update_dio1()

    def cmd_02(self, p):  # ClearIrqStatus
        self.irqs &= ~(p[0] << 8 | p[1])
        self.update_dio1()

    def cmd_9d(self, p):  # SetDIO2AsRfSwitchCtrl
        self.dio2_rf_switch = bool(p[0])

    def cmd_97(self, p):  # SetDIO3AsTCXOCtrl: in STDBY_RC; the XOSC's first start fails (DS §13.3.6)
        if self.standby_only(rc=True):
            self.tcxo_on = True
            self.errors |= _XOSC_START_ERR

    def cmd_86(self, p):  # SetRfFrequency
        self.frequency = p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]

    def cmd_8a(self, p):  # SetPacketType: in standby (DS §13.4.2)
        if self.standby_only():
            self.packet_type = p[0]

    def cmd_8e(self, p):  # SetTxParams
        self.power_dbm = p[0] - 256 if p[0] > 127 else p[0]

    def cmd_8b(self, p):  # SetModulationParams
        if p[1] not in _BW_HZ or not 5 <= p[0] <= 12 or not 1 <= p[2] <= 4:
            self.status = _EXEC_ERROR
            return
        self.sf, self.bw, self.cr, self.ldro = p[0], p[1], p[2], p[3] & 1

    def cmd_8c(self, p):  # SetPacketParams
        self.preamble = p[0] << 8 | p[1]
        self.implicit, self.length, self.crc, self.invert_iq = p[2] & 1, p[3], p[4] & 1, p[5] & 1

    def cmd_8f(self, p):  # SetBufferBaseAddress
        self.tx_base, self.rx_base = p[0], p[1]

    def cmd_a0(self, p):  # SetLoRaSymbNumTimeout
        pass

    def cmd_9f(self, p):  # StopTimerOnPreamble
        pass

    def cmd_07(self, p):  # ClearDeviceErrors
        self.errors = 0

    def check_image(self):
        f1, f2 = self.image_band
        mhz = self.frequency * 32 // (1 << 25)
        if not f1 * 4 <= mhz <= f2 * 4:
            self.errors |= _IMG_CALIB_ERR

    # IRQs, the radio and the medium.

    def raise_irq(self, bits):
        self.irqs |= bits & self.irq_mask
        self.update_dio1()

    def update_dio1(self):
        if self.dio1_pin is None:
            return
        if not self.powered or self.held_in_reset:
            spi_bus.drive(self.dio1_pin, None)
            return
        high = self.irqs & self.dio1_mask and "dio1_dead" not in self.faults
        spi_bus.drive(self.dio1_pin, 1 if high else 0)

    def tx_done(self):
        self.timer = -1
        self.mode = _STDBY_RC  # the fallback mode (DS §13.1.4)
        self.status = _TX_DONE_STATUS
        self.tell_idle()
        self.raise_irq(_IRQ_TX_DONE)

    def timed_out(self):
        self.timer = -1
        self.mode = _STDBY_RC
        self.status = _CMD_TIMEOUT
        self.tell_idle()
        self.raise_irq(_IRQ_TIMEOUT)

    def hear(self, payload, rssi_dbm, snr_x4, crc_ok):
        if not self.powered or self.held_in_reset or self.mode != _RX:
            return
        for i, byte in enumerate(payload):
            self.buffer[(self.rx_base + i) & 0xFF] = byte
        self.rx_start = self.rx_base
        self.rx_length = len(payload)
        # RssiPkt = -2 x RSSI; SnrPkt = SNR x 4, two's complement (DS §13.5.3).
        rssi = min(max(-2 * int(rssi_dbm), 0), 255)
        self.packet_status = (rssi, snr_x4 & 0xFF, rssi)
        self.status = _DATA_AVAILABLE
        if not self.rx_continuous:
            self.stop_timer()
            self.mode = _STDBY_RC
            self.tell_idle()
        self.raise_irq(_IRQ_HEADER_VALID | _IRQ_RX_DONE | (0 if crc_ok else _IRQ_CRC_ERR))

    def time_on_air_us(self, length):
        return time_on_air_us(
            length, self.sf, _BW_HZ[self.bw], self.cr + 4, self.preamble, self.crc, self.implicit, self.ldro
        )

    def settings(self):
        """What the chip's parameters say about the channel, as messages.py's RadioSettings."""
        sync = self.registers.get(0x0740, 0) << 8 | self.registers.get(0x0741, 0)
        return json.dumps(
            {
                # f = RfFreq x 32 MHz / 2**25 (DS §13.4.1); the medium compares channels in whole kHz.
                "freq_hz": (self.frequency * 15625 + 8_192_000) // 16_384_000 * 1000,
                "sf": self.sf,
                "bw_hz": _BW_HZ[self.bw],
                "coding_rate": self.cr + 4,
                "preamble_len": self.preamble,
                "crc_en": bool(self.crc),
                "implicit_header": bool(self.implicit),
                "syncword": (sync >> 8 & 0xF0) | (sync >> 4 & 0x0F),  # 0xY4Z4 is the SX127x's 0xYZ
                "invert_iq_rx": bool(self.invert_iq),
                "invert_iq_tx": bool(self.invert_iq),
                "output_power": self.power_dbm,
            }
        )


class SX1261(SX1262):
    """The same command set; its low-power PA is what SetPaConfig's deviceSel 1 picks."""
