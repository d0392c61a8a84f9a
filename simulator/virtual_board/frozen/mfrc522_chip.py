# An NXP MFRC522 (RC522) NFC reader on SPI, at the level of its registers. A transaction starts when
# chip select falls; its first byte is an address byte ((register << 1) & 0x7E, | 0x80 to read). A
# write stores every following byte in that register (the FIFO takes them all); a read answers, for
# each following byte, the register that byte named (the last one sent is 0x00).
#
# Modelled: the FIFO, CommandReg (Idle, CalcCRC, Transmit, Transceive started by BitFramingReg's
# StartSend, SoftReset), ComIrqReg and DivIrqReg (Set1/Set2 writes), ErrorReg, ControlReg's
# RxLastBits, the CRC coprocessor with ModeReg's preset, TxControlReg's antenna drivers (the field
# that powers a badge), the timer's TAuto timeout (TimerIRq when no badge answers), VersionReg, the
# soft power-down bit, and an optional reset line (NRSTPD: low holds the chip powered down, a rising
# edge resets it). The badge is iso14443a's Picc and answers at once. Not modelled: TxCRCEn and
# RxCRCEn (the CRC_A is the driver's to add and check, with CalcCRC), MFAuthent (ends at once with
# a protocol error), bit-wise anticollision, the IRQ pin, the timer's value. A chip that gets its
# power back after being unplugged starts from its reset values, as does one reset by its line.
import spi_bus
from iso14443a import Picc, card, crc_a

_COMMAND = 0x01
_COM_IRQ = 0x04
_DIV_IRQ = 0x05
_ERROR = 0x06
_FIFO_DATA = 0x09
_FIFO_LEVEL = 0x0A
_CONTROL = 0x0C
_BIT_FRAMING = 0x0D
_MODE = 0x11
_TX_CONTROL = 0x14
_CRC_RESULT_H = 0x21
_CRC_RESULT_L = 0x22
_T_MODE = 0x2A
_VERSION = 0x37

# Register values after a reset (datasheet, register overview); the others are 0x00.
_RESET = {
    _COMMAND: 0x20,  # Idle, receiver off
    0x02: 0x80,  # ComIEnReg
    _COM_IRQ: 0x14,
    0x07: 0x21,  # Status1Reg
    0x0B: 0x08,  # WaterLevelReg
    _CONTROL: 0x10,
    0x0E: 0xA0,  # CollReg
    _MODE: 0x3F,  # CRC preset 0xFFFF
    _TX_CONTROL: 0x80,  # antenna drivers off
    0x16: 0x10,  # TxSelReg
    0x17: 0x84,  # RxSelReg
    0x18: 0x84,  # RxThresholdReg
    0x19: 0x4D,  # DemodReg
    0x1C: 0x62,  # MfTxReg
    0x1F: 0xEB,  # SerialSpeedReg
    _CRC_RESULT_H: 0xFF,
    _CRC_RESULT_L: 0xFF,
    0x24: 0x26,  # ModWidthReg
    0x26: 0x48,  # RFCfgReg
    0x27: 0x88,  # GsNReg
    0x28: 0x20,  # CWGsPReg
    0x29: 0x20,  # ModGsPReg
}

_IDLE = 0x0
_CALC_CRC = 0x3
_TRANSMIT = 0x4
_NO_CMD_CHANGE = 0x7
_RECEIVE = 0x8
_TRANSCEIVE = 0xC
_MF_AUTHENT = 0xE
_SOFT_RESET = 0xF

_RCV_OFF = 0x20
_POWER_DOWN = 0x10
_TX_IRQ = 0x40
_RX_IRQ = 0x20
_IDLE_IRQ = 0x10
_ERR_IRQ = 0x02
_TIMER_IRQ = 0x01
_CRC_IRQ = 0x04
_BUFFER_OVFL = 0x10
_PROTOCOL_ERR = 0x01
_START_SEND = 0x80
_T_AUTO = 0x80
_FIFO_SIZE = 64
_CRC_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)  # ModeReg bits 1..0


class MFRC522(spi_bus.Chip):
    def __init__(self, air):
        super().__init__(air)
        self.version = 0x92  # v2.0; 0x91 is v1.0, 0x88 a FM17522 clone
        self.badge = None  # the host's description of the badge in the field
        self.card = None  # its Picc
        self.reset_pin = None
        self.held_in_reset = False
        self.powered = True  # as `answering` was at the last configure
        self.address = None  # the register of the transaction under way; None: the next byte names it
        self.reading = False
        self.reset()

    def reset(self):
        self.regs = bytearray(64)
        for register, value in _RESET.items():
            self.regs[register] = value
        self.fifo = []
        self.crc = 0xFFFF
        if self.card is not None:
            self.card.power_off()

    def configure(self, state):
        self.version = state.get("version", 0x92)
        if self.answering and not self.powered:
            self.reset()  # plugged back in: power-on reset
        self.powered = self.answering
        self.reset_pin = state.get("reset")
        self.held_in_reset = self.reset_pin is not None and not spi_bus.level(self.reset_pin)
        badge = state.get("badge")
        if badge != self.badge:
            self.badge = badge
            self.card = None if badge is None else Picc(*card(badge))

    def line(self, pin, level):
        if pin != self.reset_pin:
            return
        if level and self.held_in_reset:
            self.reset()
        self.held_in_reset = not level
        if not level and self.card is not None:
            self.card.power_off()

    def select(self):
        self.address = None

    def exchange(self, byte):
        if self.held_in_reset:
            return None
        if self.address is None:
            self.address = byte >> 1 & 0x3F
            self.reading = bool(byte & 0x80)
            return 0x00
        if not self.reading:
            self.write_register(self.address, byte)
            return 0x00
        out = self.read_register(self.address)
        self.address = byte >> 1 & 0x3F  # the next register to read
        return out

    def field(self):
        """True while the antenna drivers power a badge."""
        return bool(self.regs[_TX_CONTROL] & 0x03) and not self.regs[_COMMAND] & _POWER_DOWN

    def read_register(self, register):
        if register == _FIFO_DATA:
            return self.fifo.pop(0) if self.fifo else 0x00
        if register == _FIFO_LEVEL:
            return len(self.fifo)
        if register == _VERSION:
            return self.version
        return self.regs[register]

    def write_register(self, register, value):
        regs = self.regs
        field_was_on = self.field()
        if register == _COMMAND:
            command = regs[_COMMAND] & 0x0F if value & 0x0F == _NO_CMD_CHANGE else value & 0x0F
            regs[_COMMAND] = value & (_RCV_OFF | _POWER_DOWN) | command
            if value & 0x0F != _NO_CMD_CHANGE:
                self.start(command)
        elif register in (_COM_IRQ, _DIV_IRQ):  # bit 7 (Set1, Set2) says whether to set or clear
            regs[register] = regs[register] | value & 0x7F if value & 0x80 else regs[register] & ~value
        elif register == _FIFO_DATA:
            if regs[_COMMAND] & 0x0F == _CALC_CRC:
                self.calculate_crc(bytes((value,)))  # the coprocessor takes it from the FIFO at once
            elif len(self.fifo) < _FIFO_SIZE:
                self.fifo.append(value)
            else:
                regs[_ERROR] |= _BUFFER_OVFL
        elif register == _FIFO_LEVEL:
            if value & 0x80:  # FlushBuffer
                self.fifo = []
                regs[_ERROR] &= ~_BUFFER_OVFL
        elif register == _BIT_FRAMING:
            regs[register] = value
            if value & _START_SEND and regs[_COMMAND] & 0x0F == _TRANSCEIVE:
                self.transmit(listen=True)
        elif register not in (_ERROR, _CRC_RESULT_H, _CRC_RESULT_L, _VERSION):  # those are read-only
            regs[register] = value
        if field_was_on and not self.field() and self.card is not None:
            self.card.power_off()

    def start(self, command):
        regs = self.regs
        if command == _SOFT_RESET:
            self.reset()
        elif command == _CALC_CRC:
            self.crc = _CRC_PRESETS[regs[_MODE] & 0x03]
            data, self.fifo = self.fifo, []
            self.calculate_crc(data)
        elif command == _TRANSMIT:
            self.transmit(listen=False)
            self.end_command()
        elif command == _MF_AUTHENT:
            regs[_ERROR] |= _PROTOCOL_ERR
            regs[_COM_IRQ] |= _ERR_IRQ
            self.end_command()
        elif command not in (_IDLE, _TRANSCEIVE, _RECEIVE):
            self.end_command()  # Mem, GenerateRandomID: done at once, with no effect here

    def end_command(self):
        self.regs[_COMMAND] &= 0xF0
        self.regs[_COM_IRQ] |= _IDLE_IRQ

    def calculate_crc(self, data):
        self.crc = crc_a(data, self.crc)
        self.regs[_CRC_RESULT_H] = self.crc >> 8
        self.regs[_CRC_RESULT_L] = self.crc & 0xFF
        self.regs[_DIV_IRQ] |= _CRC_IRQ

    def transmit(self, listen):
        """Send the FIFO to the badge in the field; with `listen`, put its answer in the FIFO."""
        regs = self.regs
        frame, self.fifo = bytes(self.fifo), []
        regs[_ERROR] = 0
        regs[_COM_IRQ] |= _TX_IRQ
        answer = None
        if self.field() and self.card is not None and frame:
            answer = self.card.receive(frame, regs[_BIT_FRAMING] & 0x07)
        if not listen:
            return
        if answer is None or regs[_COMMAND] & _RCV_OFF:
            if regs[_T_MODE] & _T_AUTO:
                regs[_COM_IRQ] |= _TIMER_IRQ  # the timer started after sending, and ran out
            return
        if len(answer) > 2 and self.take_corruption():
            # A bit and its parity bit flipped on air: only the BCC or the CRC_A can tell.
            answer = bytes((answer[0] ^ 0x01,)) + answer[1:]
        self.fifo = list(answer)
        regs[_CONTROL] &= 0xF8  # RxLastBits: the last byte is whole
        regs[_COM_IRQ] |= _RX_IRQ
