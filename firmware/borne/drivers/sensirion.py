# What Sensirion's sensors share: every 16-bit word they send is followed by this CRC-8.


def crc8(data, start=0, end=-1):
    """Sensirion's CRC-8 (polynomial 0x31, init 0xFF, no final XOR) of data[start:end] (to its end by
    default), taken in place: no slice allocated."""
    crc = 0xFF
    for i in range(start, len(data) if end < 0 else end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc << 1 ^ 0x31 if crc & 0x80 else crc << 1) & 0xFF
    return crc
