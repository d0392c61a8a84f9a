"""Run every benchmark and print its table: `python -m bench` (or `make bench`)."""

from . import battery, codec, firmware, gateway, latency, radio_heap

SECTIONS = (
    codec.airtime_table,
    codec.decode_speed_table,
    gateway.end_to_end_table,
    latency.latency_table,
    firmware.heap_table,
    radio_heap.radio_heap_table,
    firmware.boot_table,
    battery.battery_table,
)
for section in SECTIONS:
    print(section())
    print()
