"""The board's self-test, which `borne board check` runs over mpremote with the firmware stopped
(mpremote's Ctrl-C and soft reset in the raw REPL; main.py does not run after that reset).

`run()` prints one line per check: MARK, then a JSON object with "check", "ok" and what was found:
  config    the configuration read back, keys masked ("error" if it does not load: nothing else runs)
  radio     "chip"; its driver read the chip's version at start ("error" if not)
  reader    door boards: "reader" and its "version"
  sensor    "name", "values" read, or "error"; "out_of_range" names the values outside the datasheet's range
  flash     "free_bytes", "min_bytes"
  counters  "uplink_next", "downlink_last"; door boards: "queued", "dropped", "next_number"
Nothing is sent on the air, and no badge is read.
"""

import json
import os
import time

from micropython import const

from borne import config as board_config

MARK = "BORNE-CHECK "
MASK = "(not shown)"  # as the laptop shows a configuration
# The check-in journal (12 KiB before compaction), its compacted copy beside it, and config.json's rewrite.
MIN_FREE_BYTES = const(32768)
_SCD4X_FIRST_SAMPLE_MS = const(6000)  # it measures every 5 s once started (SCD4x datasheet, 3.5.1)

# Each sensor's range of operation, from its datasheet; a value outside it is a sensor (or wiring) fault.
RANGES = {
    # Bosch BME280 datasheet, section 1 (operating ranges): -40..85 °C, 0..100 %RH, 300..1100 hPa.
    "bme280": {"temperature_c": (-40, 85), "humidity_pct": (0, 100), "pressure_hpa": (300, 1100)},
    # Sensirion SCD4x datasheet, table 1 and 3: CO2 output up to 40000 ppm, -10..60 °C, 0..100 %RH;
    # below 300 ppm (outdoor air is about 420) the sensor needs recalibrating.
    "scd4x": {"co2_ppm": (300, 40000), "temperature_c": (-10, 60), "humidity_pct": (0, 100)},
    # Sensirion SHT4x datasheet, section 2: -40..125 °C, 0..100 %RH.
    "sht4x": {"temperature_c": (-40, 125), "humidity_pct": (0, 100)},
    # A Li-ion cell, between its discharge cut-off and full charge.
    "battery": {"battery_mv": (3000, 4300)},
}


def emit(record):
    print(MARK + json.dumps(record))


def run(part=None):
    """Every check, in order; a configuration that does not load stops them. `part` 0 runs the first
    half (the configuration, the radio, the reader), 1 the rest (the sensors, the flash, the counters):
    `borne board check` runs them in two calls, so that the first half's garbage is collected before
    the second's, as a board collects whenever it must (a virtual board's VM only between calls)."""
    try:
        config = board_config.load()
    except board_config.ConfigError as error:
        if part != 1:  # the first half says it; the second has nothing to check
            emit({"check": "config", "ok": False, "error": str(error)})
        return
    from borne.app import power_up
    from borne.node import sensor_bus

    board = config["board"]
    power_up(board)
    i2c = sensor_bus(board) if board.get("i2c") else None
    node = config["role"] == "node"
    if part != 1:
        emit({"check": "config", "ok": True, "config": masked(config)})
        emit(check_radio(config))
        if node and config.get("nfc"):
            emit(check_reader(config, i2c))
    if part != 0:
        if node:
            for name in config.get("sensors", []):
                emit(check_sensor(name, board, i2c))
        emit(check_flash())
        emit(check_counters(config))


def masked(config):
    """The configuration as it may be shown: each key replaced by MASK."""
    shown = dict(config)
    if "keys" in shown:
        shown["keys"] = {name: MASK for name in shown["keys"]}
    return shown


def check_radio(config):
    chip = config["board"]["radio"]["chip"]
    from borne.radio import Radio

    try:
        radio = Radio(config["board"]["radio"], config["radio"])  # the driver checks the chip's version
    except Exception as error:  # OSError from our driver; RuntimeError or ImportError from lora's
        return _failed({"check": "radio", "chip": chip}, error)
    radio.modem.sleep()
    return {"check": "radio", "ok": True, "chip": chip}


def check_reader(config, i2c):
    from borne.node import open_reader

    name = config["nfc"]["reader"]
    result = {"check": "reader", "reader": name}
    try:
        if name == "pn532":
            from borne.drivers.pn532 import ADDRESS

            result["address"] = ADDRESS
        reader = open_reader(config, i2c)
        if name == "pn532":
            ic, version, revision, _ = reader.firmware_version()
            result["version"] = f"IC 0x{ic:02x}, firmware {version}.{revision}"
        else:
            result["version"] = f"VersionReg 0x{reader.version():02x}"
    except (OSError, AttributeError) as error:  # AttributeError: no I2C bus for a PN532
        return _failed(result, error)
    result["ok"] = True
    return result


def check_sensor(name, board, i2c):
    result = {"check": "sensor", "name": name}
    try:
        values = _READERS[name](board, i2c, result)
    except (OSError, AttributeError, TypeError) as error:  # AttributeError/TypeError: no I2C bus or pin
        return _failed(result, error)
    result["values"] = values
    out = []
    for quantity, (low, high) in RANGES.get(name, {}).items():
        if not low <= values[quantity] <= high:
            out.append(quantity)
    result["out_of_range"] = out
    result["ranges"] = RANGES.get(name, {})
    result["ok"] = not out
    return result


def _bme280(board, i2c, result):
    from borne.drivers.bme280 import ADDRESS, BME280

    result["address"] = ADDRESS
    t, h, p = BME280(i2c).read()
    return {"temperature_c": t / 100, "humidity_pct": h / 100, "pressure_hpa": p / 100}


def _scd4x(board, i2c, result):
    from borne.drivers.scd4x import ADDRESS, SCD4x

    result["address"] = ADDRESS
    from borne.sensors import stop_scd4x

    sensor = SCD4x(i2c)
    stop_scd4x(sensor)  # the firmware may have left it measuring, and it would refuse to start
    sensor.start()
    started = time.ticks_ms()
    while not sensor.data_ready():
        if time.ticks_diff(time.ticks_ms(), started) > _SCD4X_FIRST_SAMPLE_MS:
            raise OSError(110, "SCD4x gave no sample")  # ETIMEDOUT
        time.sleep_ms(100)
    co2, t, h = sensor.read()
    sensor.stop()
    return {"co2_ppm": co2, "temperature_c": t / 100, "humidity_pct": h / 100}


def _sht4x(board, i2c, result):
    from borne.drivers.sht4x import ADDRESS, SHT4x

    result["address"] = ADDRESS
    t, h = SHT4x(i2c).read()
    return {"temperature_c": t / 100, "humidity_pct": h / 100}


def _battery(board, i2c, result):
    from borne.drivers.battery import Battery

    battery = board["battery"]
    return {"battery_mv": Battery(battery["pin"], battery["ratio"]).millivolts()}


def _pulse(board, i2c, result):
    from borne.drivers.pulse import PulseCounter

    return {"meter_pulses": PulseCounter(board["pulse"]).count}  # the input is set up; pulses come later


_READERS = {"bme280": _bme280, "scd4x": _scd4x, "sht4x": _sht4x, "battery": _battery, "pulse": _pulse}


def check_flash():
    stat = os.statvfs("/")
    free = stat[0] * stat[4]  # f_bsize * f_bavail
    return {"check": "flash", "ok": free >= MIN_FREE_BYTES, "free_bytes": free, "min_bytes": MIN_FREE_BYTES}


def check_counters(config):
    result = {"check": "counters", "ok": True}
    if config["role"] != "node":
        return result  # a bridge only relays: no counters of its own
    from borne.counter import FrameCounter

    counter = FrameCounter()  # reads NVS; writes nothing until a frame is sent
    result["uplink_next"] = counter.peek
    result["downlink_last"] = counter.downlink
    if config.get("nfc"):
        from borne.checkin_queue import CheckinQueue

        queue = CheckinQueue()  # its journal counts this as one more boot
        result["queued"] = queue.depth
        result["dropped"] = queue.dropped
        result["next_number"] = queue.next_number
    return result


def _failed(result, error):
    """`result` as a failure: the error as one short line, and its errno (19 ENODEV: no answer; 5 EIO:
    a damaged answer; 110 ETIMEDOUT) when it is an OSError."""
    result["ok"] = False
    result["error"] = f"{type(error).__name__}: {' '.join(str(a) for a in error.args)}"
    if isinstance(error, OSError) and error.args and isinstance(error.args[0], int):
        result["errno"] = error.args[0]
    return result
