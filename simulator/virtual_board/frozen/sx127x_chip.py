# A Semtech SX1276 LoRa transceiver on SPI, at the level of its registers (DS: its datasheet, rev 4;
# § sections, p. pages). A transaction starts when chip select falls; its first byte is wnr (1 write,
# 0 read) and the address; each following byte writes or reads that register and the address goes on
# to the next one, but for RegFifo (0x00), which goes through the FIFO at RegFifoAddrPtr (DS §4.3).
#
# Modelled: the register file with its reset values, FSK and LoRa pages (0x0D-0x3F are another
# register in FSK mode); RegOpMode's modes and their rules: LongRangeMode changes in Sleep only (a
# write elsewhere leaves the bit as it was, DS register table), the FIFO is neither read nor written in Sleep
# and is lost there, TX starts from Standby with a payload length of 1 or more (from Sleep, or with 0,
# nothing is sent and no TxDone comes: stricter than the chip may be), and the automatic returns to
# Standby after TxDone, RxSingle's RxDone or RxTimeout (DS §4.1.6-4.1.7); the 256-byte FIFO and its
# pointers; RegIrqFlags (write 1 to clear) with RegIrqFlagsMask; DIO0 as RegDioMapping1 maps it
# (RxDone, TxDone, CadDone), a level the board reads on its pin; TxDone after the frame's time on air
# computed from the registers; RX fed by the radio medium's frames (the medium hears what the
# registers say on entering RX), with RegPktRssiValue and RegPktSnrValue from its RSSI and SNR by the
# HF port's formula; RegVersion; an optional reset line (low holds the chip in reset, a rising edge
# resets it; left floating, the chip's pull-up keeps it high); no answer while unpowered. Not
# modelled: FSK/OOK, CAD, FHSS, the PLL and its lock times, RegRssiValue, frequency errors, the LF
# port's RSSI offset.
import json
from binascii import hexlify

import spi_bus
from radio_chip import RadioChip, time_on_air_us

_FIFO = 0x00
_OP_MODE = 0x01
_FRF_MSB = 0x06
_PA_CONFIG = 0x09
_FIFO_ADDR_PTR = 0x0D
_FIFO_TX_BASE = 0x0E
_FIFO_RX_BASE = 0x0F
_FIFO_RX_CURRENT = 0x10
_IRQ_FLAGS_MASK = 0x11
_IRQ_FLAGS = 0x12
_RX_NB_BYTES = 0x13
_MODEM_STAT = 0x18
_PKT_SNR = 0x19
_PKT_RSSI = 0x1A
_HOP_CHANNEL = 0x1C
_MODEM_CONFIG1 = 0x1D
_MODEM_CONFIG2 = 0x1E
_SYMB_TIMEOUT_LSB = 0x1F
_PREAMBLE_MSB = 0x20
_PAYLOAD_LENGTH = 0x22
_FIFO_RX_BYTE_ADDR = 0x25
_MODEM_CONFIG3 = 0x26
_INVERT_IQ = 0x33
_SYNC_WORD = 0x39
_DIO_MAPPING1 = 0x40
_VERSION = 0x42
_PA_DAC = 0x4D

_LONG_RANGE = 0x80
_SLEEP = 0
_STANDBY = 1
_TX = 3
_RX_CONTINUOUS = 5
_RX_SINGLE = 6

_RX_TIMEOUT = 0x80
_RX_DONE = 0x40
_PAYLOAD_CRC_ERROR = 0x20
_VALID_HEADER = 0x10
_TX_DONE = 0x08
_CAD_DONE = 0x04
_DIO0_FLAGS = (_RX_DONE, _TX_DONE, _CAD_DONE, 0)  # RegDioMapping1 bits 7:6 in LoRa mode (DS Table 18)

_BW_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)
_RSSI_OFFSET_HF = 157  # packet strength = -157 + PacketRssi (+ SNR / 4 if negative), DS §5.5.5

# Reset values (DS pp.94, 111-112; the LoRa page) of the registers shared by both modes and of the
# LoRa page; the others read 0x00.
_RESET = {
    _OP_MODE: 0x09,  # FSK mode, LF page, Standby
    _FRF_MSB: 0x6C,
    0x07: 0x80,
    _PA_CONFIG: 0x4F,
    0x0A: 0x09,  # RegPaRamp
    0x0B: 0x2B,  # RegOcp: on, 100 mA
    0x0C: 0x20,  # RegLna
    _FIFO_TX_BASE: 0x80,
    _MODEM_STAT: 0x10,
    _MODEM_CONFIG1: 0x72,
    _MODEM_CONFIG2: 0x70,
    _SYMB_TIMEOUT_LSB: 0x64,
    0x21: 0x08,  # RegPreambleLsb
    _PAYLOAD_LENGTH: 0x01,
    0x23: 0xFF,  # RegMaxPayloadLength
    _MODEM_CONFIG3: 0x04,
    0x31: 0xC3,  # RegDetectOptimize
    _INVERT_IQ: 0x27,
    0x36: 0x03,
    0x37: 0x0A,  # RegDetectionThreshold
    _SYNC_WORD: 0x12,
    0x3B: 0x1D,  # RegInvertIQ2
    _VERSION: 0x12,
    _PA_DAC: 0x84,
}
_READ_ONLY = (_FIFO_RX_CURRENT, _RX_NB_BYTES, 0x14, 0x15, 0x16, 0x17, _MODEM_STAT, _PKT_SNR, _PKT_RSSI, 0x1B)
_READ_ONLY += (_HOP_CHANNEL, _FIFO_RX_BYTE_ADDR, _VERSION)


class SX1276(RadioChip):
    max_baudrate = 10_000_000  # SPI clock up to 10 MHz (DS, SPI timing)

    def __init__(self, air):
        super().__init__(air)
        self.reset_pin = None
        self.dio0_pin = None
        self.held_in_reset = False
        self.powered = True
        self.faults = ()  # "dio0_dead": the IRQ never reaches the board's pin (a broken trace, a dead pin)
        self.address = None  # the register of the transaction under way; None: the next byte names it
        self.writing = False
        self.reset()

    def reset(self):
        self.stop_timer()
        self.regs = bytearray(128)  # LoRa page, and the registers both modes share
        self.fsk = bytearray(128)  # FSK page of 0x0D-0x3F
        for register, value in _RESET.items():
            self.regs[register] = value
        self.fifo = bytearray(256)
        self.rx_addr = 0
        self.tell_idle()
        self.update_dio0()

    def configure(self, state):
        self.follow_power()
        if self.dio0_pin is not None and state.get("dio0") != self.dio0_pin:
            spi_bus.drive(self.dio0_pin, None)
        self.dio0_pin = state.get("dio0")
        self.faults = tuple(state.get("faults") or ())
        if self.reset_pin is not None and state.get("reset") != self.reset_pin:
            spi_bus.drive(self.reset_pin, None)
        self.reset_pin = state.get("reset")
        if self.reset_pin is not None:
            # NRESET has a pull-up inside the chip: left floating, it runs (DS §7.2); the board's
            # output overrides it.
            spi_bus.drive(self.reset_pin, 1 if self.powered else None)
        self.held_in_reset = self.reset_pin is not None and not spi_bus.level(self.reset_pin, 1)
        self.update_dio0()

    def unplug(self):
        self.stop_timer()
        self.tell_idle()
        for pin in (self.dio0_pin, self.reset_pin):
            if pin is not None:
                spi_bus.drive(pin, None)

    def line(self, pin, level):
        if pin != self.reset_pin:
            return
        if level and self.held_in_reset:
            self.reset()
        self.held_in_reset = not level
        if self.held_in_reset:
            self.stop_timer()
            self.tell_idle()
            self.update_dio0()

    def select(self):
        self.address = None

    def exchange(self, byte):
        if self.held_in_reset:
            return None
        if self.address is None:
            self.address = byte & 0x7F
            self.writing = bool(byte & 0x80)
            return 0x00
        register = self.address
        out = 0x00
        if self.writing:
            self.write_register(register, byte)
        else:
            out = self.read_register(register)
        if register != _FIFO:
            self.address = register + 1 & 0x7F
        return out

    # The register file.

    def lora(self):
        return bool(self.regs[_OP_MODE] & _LONG_RANGE)

    def mode(self):
        return self.regs[_OP_MODE] & 0x07

    def page(self, register):
        """The bytearray that holds `register` in the current mode."""
        return self.regs if self.lora() or not 0x0D <= register <= 0x3F else self.fsk

    def read_register(self, register):
        if register == _FIFO:
            if self.mode() == _SLEEP:
                return 0x00  # no FIFO access in Sleep
            at = self.regs[_FIFO_ADDR_PTR]
            self.regs[_FIFO_ADDR_PTR] = at + 1 & 0xFF
            return self.fifo[at]
        return self.page(register)[register]

    def write_register(self, register, value):
        regs = self.regs
        if register == _FIFO:
            if self.mode() != _SLEEP:
                at = regs[_FIFO_ADDR_PTR]
                self.fifo[at] = value
                regs[_FIFO_ADDR_PTR] = at + 1 & 0xFF
        elif register == _OP_MODE:
            self.set_op_mode(value)
        elif register == _IRQ_FLAGS and self.lora():
            regs[_IRQ_FLAGS] &= ~value  # write 1 to clear (DS p.111)
            self.update_dio0()
        elif register == _DIO_MAPPING1:
            regs[register] = value
            self.update_dio0()
        elif register not in _READ_ONLY:
            self.page(register)[register] = value

    def set_op_mode(self, value):
        regs = self.regs
        old_mode = self.mode()
        if old_mode != _SLEEP:
            value = value & 0x7F | regs[_OP_MODE] & _LONG_RANGE  # LongRangeMode: in Sleep only
        regs[_OP_MODE] = value
        mode = value & 0x07
        if not value & _LONG_RANGE:
            self.stop_timer()
            self.tell_idle()
            return  # FSK/OOK is not modelled: the LoRa modem is idle
        if mode == old_mode:
            return
        self.stop_timer()
        if mode == _SLEEP:
            self.fifo = bytearray(256)  # the FIFO is lost in Sleep
            for register in (0x14, 0x15, 0x16, 0x17):  # header and packet counts (DS p.111)
                regs[register] = 0
        if mode == _TX:
            self.transmit(old_mode)
        elif mode in (_RX_CONTINUOUS, _RX_SINGLE):
            self.rx_addr = regs[_FIFO_RX_BASE]
            self.tell_receiving(self.settings())
            if mode == _RX_SINGLE:
                symbols = (regs[_MODEM_CONFIG2] & 0x03) << 8 | regs[_SYMB_TIMEOUT_LSB]
                self.start_timer(symbols * self.symbol_us(), self.rx_timeout)
        else:
            self.tell_idle()

    def transmit(self, old_mode):
        regs = self.regs
        length = regs[_PAYLOAD_LENGTH]
        self.tell_idle()
        if old_mode == _SLEEP or length == 0:
            return  # nothing goes on the air: no TxDone (the FIFO is lost in Sleep; 0 is not a length)
        start = regs[_FIFO_TX_BASE]
        payload = bytes(self.fifo[(start + i) & 0xFF] for i in range(length))
        self.tell_transmitting(hexlify(payload).decode(), self.settings())
        self.start_timer(self.time_on_air_us(length), self.tx_done)

    def tx_done(self):
        self.timer = -1
        self.raise_irq(_TX_DONE)
        self.regs[_OP_MODE] = self.regs[_OP_MODE] & 0xF8 | _STANDBY
        self.tell_idle()

    def rx_timeout(self):
        self.timer = -1
        self.raise_irq(_RX_TIMEOUT)
        self.regs[_OP_MODE] = self.regs[_OP_MODE] & 0xF8 | _STANDBY
        self.tell_idle()

    def hear(self, payload, rssi_dbm, snr_x4, crc_ok):
        """A frame the medium delivers: kept if the modem is in a receive mode."""
        regs = self.regs
        if not self.powered or self.held_in_reset or not self.lora() or self.mode() not in (_RX_CONTINUOUS, _RX_SINGLE):
            return
        start = self.rx_addr
        for i, byte in enumerate(payload):
            self.fifo[(start + i) & 0xFF] = byte
        self.rx_addr = (start + len(payload)) & 0xFF
        regs[_FIFO_RX_CURRENT] = start
        regs[_FIFO_RX_BYTE_ADDR] = self.rx_addr
        regs[_RX_NB_BYTES] = len(payload)
        regs[_PKT_SNR] = snr_x4 & 0xFF
        rssi = rssi_dbm + _RSSI_OFFSET_HF - (snr_x4 // 4 if snr_x4 < 0 else 0)
        regs[_PKT_RSSI] = min(max(rssi, 0), 255)
        regs[_HOP_CHANNEL] = 0x40  # CrcOnPayload: the medium's frames carry a CRC
        flags = _VALID_HEADER | _RX_DONE | (0 if crc_ok else _PAYLOAD_CRC_ERROR)
        if self.mode() == _RX_SINGLE:
            self.stop_timer()
            regs[_OP_MODE] = regs[_OP_MODE] & 0xF8 | _STANDBY
            self.tell_idle()
        self.raise_irq(flags)

    def raise_irq(self, flags):
        self.regs[_IRQ_FLAGS] |= flags & ~self.regs[_IRQ_FLAGS_MASK]
        self.update_dio0()

    def update_dio0(self):
        if self.dio0_pin is None:
            return
        if not self.powered or self.held_in_reset:
            spi_bus.drive(self.dio0_pin, None)
            return
        wanted = _DIO0_FLAGS[self.regs[_DIO_MAPPING1] >> 6]
        high = self.regs[_IRQ_FLAGS] & wanted and "dio0_dead" not in self.faults
        spi_bus.drive(self.dio0_pin, 1 if high else 0)

    # Time, and the medium.

    def symbol_us(self):
        return (1 << (self.regs[_MODEM_CONFIG2] >> 4)) * 1_000_000 // self.bandwidth_hz()

    def bandwidth_hz(self):
        return _BW_HZ[min(self.regs[_MODEM_CONFIG1] >> 4, 9)]

    def time_on_air_us(self, length):
        # From the registers: SF, BW, CR, header mode, CRC, LowDataRateOptimize, preamble.
        regs = self.regs
        return time_on_air_us(
            length,
            regs[_MODEM_CONFIG2] >> 4,
            self.bandwidth_hz(),
            (regs[_MODEM_CONFIG1] >> 1 & 0x07) + 4,
            regs[_PREAMBLE_MSB] << 8 | regs[0x21],
            regs[_MODEM_CONFIG2] >> 2 & 0x01,
            regs[_MODEM_CONFIG1] & 0x01,
            regs[_MODEM_CONFIG3] >> 3 & 0x01,
        )

    def settings(self):
        """What the registers say about the channel, as messages.py's RadioSettings."""
        regs = self.regs
        frf = regs[_FRF_MSB] << 16 | regs[0x07] << 8 | regs[0x08]
        if regs[_PA_CONFIG] & 0x80:  # PA_BOOST: +5 dB with the +20 dBm PaDac, +2 without
            power = (regs[_PA_CONFIG] & 0x0F) + (5 if regs[_PA_DAC] & 0x07 == 0x07 else 2)
        else:  # RFO: Pmax - (15 - OutputPower), Pmax = 10.8 + 0.6 MaxPower
            power = (108 + 6 * (regs[_PA_CONFIG] >> 4 & 0x07)) // 10 - 15 + (regs[_PA_CONFIG] & 0x0F)
        return json.dumps(
            {
                # Fstep = 32 MHz / 2**19; the medium compares channels in whole kHz (Fstep is 61 Hz).
                "freq_hz": (frf * 15625 + 128000) // 256000 * 1000,
                "sf": regs[_MODEM_CONFIG2] >> 4,
                "bw_hz": self.bandwidth_hz(),
                "coding_rate": (regs[_MODEM_CONFIG1] >> 1 & 0x07) + 4,
                "preamble_len": regs[_PREAMBLE_MSB] << 8 | regs[0x21],
                "crc_en": bool(regs[_MODEM_CONFIG2] & 0x04),
                "implicit_header": bool(regs[_MODEM_CONFIG1] & 0x01),
                "syncword": regs[_SYNC_WORD],
                "invert_iq_rx": bool(regs[_INVERT_IQ] & 0x40),
                "invert_iq_tx": not regs[_INVERT_IQ] & 0x01,
                "output_power": power,
            }
        )
