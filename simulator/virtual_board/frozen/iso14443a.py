# ISO/IEC 14443A badges (PICCs) as a reader's field sees them, shared by the readers' models: their
# ATQA and SAK per tag type, and the card's side of activation (ISO/IEC 14443-3): REQA/WUPA, then
# anticollision and SELECT at each cascade level, HLTA. The CRC_A of a frame is the reader's to add
# and check; a frame with a bad CRC_A, or a command the card does not expect, sends it back to IDLE
# (HALT if it was woken from there) without an answer, as the standard's state diagram says.

# Tag type -> (ATQA, SAK), per NXP AN10833. The UID size bits (ATQA bits 7..6) are set from the UID's
# length. The ATQA goes on air least significant byte first.
TAGS = {
    "mifare_classic": (0x0004, 0x08),
    "mifare_ultralight": (0x0044, 0x00),
    "ntag": (0x0044, 0x00),
    "mifare_desfire": (0x0344, 0x20),
    "mifare_plus": (0x0004, 0x20),
    "iso14443_4": (0x0004, 0x20),
}
_UID_SIZE_BITS = {4: 0x00, 7: 0x40, 10: 0x80}

REQA = 0x26  # 7-bit short frames
WUPA = 0x52
HLTA = 0x50
_SEL = (0x93, 0x95, 0x97)  # the SEL code of cascade levels 1, 2, 3
_CT = 0x88  # cascade tag: more UID bytes follow at the next level
_NVB_ANTICOLLISION = 0x20  # no UID bits known: every card answers its whole UID CLn
_NVB_SELECT = 0x70  # all 40 bits of UID CLn and BCC follow
_SAK_CASCADE = 0x04  # SAK bit: UID not complete

_IDLE, _READY, _ACTIVE, _HALT = range(4)


def card(badge):
    """(uid, atqa, sak) of the host's description of a badge: {"uid": hex, "tag_type", "atqa"?, "sak"?}."""
    uid = bytes.fromhex(badge["uid"])
    atqa, sak = TAGS[badge["tag_type"]]
    atqa = badge.get("atqa", atqa & ~0xC0 | _UID_SIZE_BITS[len(uid)])
    return uid, atqa, badge.get("sak", sak)


def crc_a(data, preset=0x6363):
    """ISO/IEC 14443-3's CRC_A (CRC-16/CCITT reflected, from 0x6363); `preset` as a reader sets it."""
    crc = preset
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ byte << 4) & 0xFF
        crc = crc >> 8 ^ byte << 8 ^ byte << 3 ^ byte >> 4
    return crc


def with_crc(data):
    crc = crc_a(data)
    return bytes(data) + bytes((crc & 0xFF, crc >> 8))


class Picc:
    """One badge in a reader's field."""

    def __init__(self, uid, atqa, sak):
        self.uid, self.atqa, self.sak = uid, atqa, sak
        uid = bytes(uid)
        # UID CLn of each cascade level: a 7- or 10-byte UID is split behind cascade tags.
        if len(uid) == 4:
            self.levels = (uid,)
        elif len(uid) == 7:
            self.levels = (bytes((_CT,)) + uid[:3], uid[3:])
        else:
            self.levels = (bytes((_CT,)) + uid[:3], bytes((_CT,)) + uid[3:6], uid[6:])
        self.power_off()

    def power_off(self):
        """The field went away: the card forgets everything; back in a field, it is IDLE."""
        self.state = _IDLE
        self.halted = False  # woken from HALT: an error sends it back there
        self.level = 0

    def _drop(self):
        self.state = _HALT if self.halted else _IDLE
        self.level = 0
        return None

    def receive(self, frame, last_bits):
        """The card's answer to `frame` (`last_bits` valid bits in its last byte, 0 for 8), or None."""
        if len(frame) == 1 and last_bits == 7:  # a short frame
            command = frame[0]
            if (command == REQA and self.state == _IDLE) or (command == WUPA and self.state in (_IDLE, _HALT)):
                self.halted = self.state == _HALT
                self.state, self.level = _READY, 0
                return bytes((self.atqa & 0xFF, self.atqa >> 8))
            return None if self.state in (_IDLE, _HALT) else self._drop()
        if self.state in (_IDLE, _HALT) or last_bits:
            return None  # asleep: only REQA or WUPA wake it
        if self.state == _ACTIVE:
            if len(frame) == 4 and frame[0] == HLTA and frame[1] == 0 and with_crc(frame[:2]) == frame:
                self.state = _HALT
                return None
            return self._drop()  # this model knows no command of an active card (READ, RATS, …)
        if len(frame) < 2 or frame[0] != _SEL[self.level]:
            return self._drop()
        cln = self.levels[self.level]
        bcc = cln[0] ^ cln[1] ^ cln[2] ^ cln[3]
        if frame[1] == _NVB_ANTICOLLISION and len(frame) == 2:
            return cln + bytes((bcc,))
        if frame[1] != _NVB_SELECT or len(frame) != 9 or with_crc(frame[:7]) != frame:
            return self._drop()  # bit-wise anticollision (one card needs none) or a damaged frame
        if frame[2:7] != cln + bytes((bcc,)):
            return self._drop()  # another card is selected
        if self.level + 1 < len(self.levels):
            self.level += 1
            return with_crc(bytes((_SAK_CASCADE,)))
        self.state = _ACTIVE
        return with_crc(bytes((self.sak,)))
