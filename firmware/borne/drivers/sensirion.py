# What Sensirion's sensors share: every 16-bit word they send is followed by this CRC-8.


def crc8(data):
    """Sensirion's CRC-8: polynomial 0x31, init 0xFF, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x31 if crc & 0x80 else crc << 1) & 0xFF
    return crc
