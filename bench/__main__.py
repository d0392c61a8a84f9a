"""Run every benchmark and print its table: `python -m bench` (or `make bench`)."""

from . import codec, firmware, gateway

for section in (
    codec.airtime_table,
    codec.decode_speed_table,
    gateway.end_to_end_table,
    firmware.heap_table,
    firmware.boot_table,
):
    print(section())
    print()
