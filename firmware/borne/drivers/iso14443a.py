# What an ISO 14443A badge tells any reader as it is activated: its ATQA and SAK, hence its type.
from micropython import const

# SAK (SEL_RES) -> tag type, as NXP's AN10833 identifies the MIFARE family. SAK 0x00 is a Type 2
# tag: Ultralight and NTAG answer alike (telling them apart needs GET_VERSION). SAK 0x20 is
# ISO 14443-4; a DESFire is the one whose ATQA is 0x0344.
_TAG_OF_SAK = {
    0x00: "mifare_ultralight",
    0x08: "mifare_classic",
    0x09: "mifare_classic",  # Mini
    0x18: "mifare_classic",  # 4K
    0x88: "mifare_classic",  # Infineon 1K
    0x10: "mifare_plus",  # 2K, security level 2
    0x11: "mifare_plus",  # 4K, security level 2
    0x20: "iso14443_4",
}
_ATQA_DESFIRE = const(0x0344)


def tag_type(atqa, sak):
    """The codec's tag type (payload_codec TAG_TYPES) of a badge from its ATQA and SAK."""
    if sak == 0x20 and atqa == _ATQA_DESFIRE:
        return "mifare_desfire"
    return _TAG_OF_SAK.get(sak, "unknown")
