# Runs ON the board (MicroPython): executes the calls in calls.json against the firmware
# and prints one line per call, "R <id> <json>". The host builds the calls from the shared
# vectors and payload_codec, and judges the answers: this side only runs the firmware.
import gc
import json
import struct
from binascii import hexlify, unhexlify

from borne import airtime, badges, contract, crypto, frame, link, link_contract, sensors

_keys = {}


def _device_keys(call):
    pair = (call["mic_key"], call["enc_key"])
    if pair not in _keys:
        _keys[pair] = crypto.DeviceKeys(unhexlify(pair[0]), unhexlify(pair[1]))
    return _keys[pair]


def _hex(data):
    return hexlify(data).decode()


def checkin(call):
    up = frame.Uplink(call["device_id"], _device_keys(call))
    for tag, token, age_s, exact in call["events"]:
        up.add_checkin(tag, unhexlify(token), age_s, exact)
    return _hex(up.seal_checkins(call["counter"], call["first_number"], call["ack"], call["time"], call["encrypt"]))


def telemetry(call):
    up = frame.Uplink(call["device_id"], _device_keys(call))
    return _hex(up.telemetry(call["counter"], _raws(call["values"]), call["encrypt"]))


def _raws(values):
    # The vectors' values are in each field's unit. The node's drivers read whole numbers: a value with
    # decimals goes as whole hundredths (every vector's value is exact in them), then onto the wire.
    raws = []
    for bit, value in enumerate(values):
        if isinstance(value, float):
            raws.append(sensors.telemetry_raw(bit, round(value * 100), 100))
        else:
            raws.append(None if value is None else sensors.telemetry_raw(bit, value))
    return raws


def status(call):
    up = frame.Uplink(call["device_id"], _device_keys(call))
    return _hex(up.status(call["counter"], *call["args"], encrypt=call["encrypt"]))


def downlink(call):
    down = frame.Downlink(call["device_id"], _device_keys(call))
    reason = down.read(unhexlify(call["frame"]), call["last_counter"])
    if reason is not None:
        return {"reason": reason}
    answer = {"reason": None, "kind": down.kind, "counter": down.counter, "encrypted": down.encrypted}
    if down.kind == contract.ACK:
        answer["acked_counter16"] = down.acked_counter16
        answer["gateway_time"] = down.gateway_time
    else:
        answer["config"] = down.config
        answer["config_digest"] = down.config_digest
    return answer


def cmac(call):
    return _hex(crypto.aes_cmac(unhexlify(call["key"]), unhexlify(call["message"])))


def hmac(call):
    return _hex(crypto.hmac_sha256(unhexlify(call["key"]), unhexlify(call["data"])))


def badge(call):
    return _hex(crypto.badge_token(unhexlify(call["key"]), unhexlify(call["uid"])))


def time_on_air(call):
    return airtime.time_on_air_us(call["size"], call["sf"], call["bw"], call["cr"])


def duty(call):
    # Steps of ("wait" | "spend", frequency, airtime_us, now_ms); the answers of the waits.
    budget = airtime.DutyCycle(0)
    answers = []
    for step, frequency, airtime_us, now in call["steps"]:
        try:
            if step == "wait":
                answers.append(budget.wait_ms(frequency, airtime_us, now))
            else:
                budget.spend(frequency, airtime_us, now)
        except ValueError as error:
            answers.append("ValueError: " + str(error))
    return answers


def greedy(call):
    # Send frames back to back as soon as the budget allows; the host checks every hour.
    budget = airtime.DutyCycle(0)
    now = 0
    sent = []
    for airtime_us in call["frames"]:
        now += budget.wait_ms(call["frequency"], airtime_us, now)
        budget.spend(call["frequency"], airtime_us, now)
        sent.append(now)
        now += airtime_us // 1000 + 1
    return sent


class _Cipher:
    pass


def _allocation_free_cipher():
    # Stands in for ESP32's cryptolib, written in C, which allocates nothing when given an
    # out_buf; the virtual board's cryptolib is Python over the host and allocates a lot.
    cipher = _Cipher()
    cipher.encrypt = min  # an instance attribute is not bound: min(x, x) returns x, allocating nothing
    return cipher


def heap(call):
    # Bytes the heap gives out while the node builds or reads a frame, its objects already
    # made: with the virtual board's cryptolib, then with the firmware's own code alone.
    answers = {}
    for cipher in ("vm_cryptolib", "firmware_only"):
        keys = crypto.DeviceKeys(unhexlify(call["mic_key"]), unhexlify(call["enc_key"]))
        if cipher == "firmware_only":
            keys._cmac._aes = keys._aes = _allocation_free_cipher()
        answers[cipher] = _allocations(call, keys)
    gc.collect()
    answers["mem_free"] = gc.mem_free()
    answers["mem_alloc"] = gc.mem_alloc()
    return answers


def _allocations(call, keys):
    up = frame.Uplink(call["device_id"], keys)
    down = frame.Downlink(call["device_id"], keys)
    token = unhexlify(call["token"])
    raws = _raws(call["values"])
    readings = [None] * len(raws)
    ack = unhexlify(call["ack_frame"])
    answers = {}

    def measure(name, build):
        build()  # once before, so that lazily made objects do not count
        gc.collect()
        before = gc.mem_alloc()
        build()
        answers[name] = gc.mem_alloc() - before

    def checkins():
        for age in range(16):
            up.add_checkin(0x41, token, age)
        up.seal_checkins(1001, 70000)

    measure("checkin_16", checkins)
    measure("checkin_1", lambda: up.add_checkin(0x41, token, 5) and up.seal_checkins(1002, 70001))
    measure("telemetry", lambda: up.telemetry(3000, raws))

    def telemetry_from_readings():
        # What the node does with its drivers' whole-number readings (0.01 °C, 0.01 %, Pa, mV).
        readings[0] = sensors.telemetry_raw(0, 2153, 100)
        readings[1] = sensors.telemetry_raw(1, 4550, 100)
        readings[2] = sensors.telemetry_raw(2, 101325, 100)
        readings[6] = sensors.telemetry_raw(6, 3700)
        up.telemetry(3001, readings)

    measure("telemetry_from_readings", telemetry_from_readings)
    measure("status", lambda: up.status(4000, (1, 2, 3), 3600, 1, 2, 0, 0, 1, 2, 3, 4))
    measure("ack_read", lambda: down.read(ack, None))
    measure("time_on_air", lambda: airtime.time_on_air_us(20, 9))
    return answers


def record(call):
    # A serial record as the bridge reads it, then framed again as the bridge writes one.
    reader = link.Reader()
    n = 0
    for byte in unhexlify(call["record"]):
        n = reader.feed(byte) or n
    answer = {"n": n, "damaged": reader.damaged}
    if n:
        writer = link.Writer()
        writer.record[:n] = reader.record[:n]
        answer["reframed"] = _hex(writer.frame(n))
        if reader.record[0] == link_contract.RECORD_TRANSMIT and n >= link_contract.TRANSMIT_SIZE:
            fields = list(struct.unpack_from(link_contract.TRANSMIT_LAYOUT, reader.record))
            fields.append(_hex(reader.record[link_contract.TRANSMIT_SIZE : n]))  # MicroPython has no [*a, b]
            answer["transmit"] = fields
    return answer


def pack(call):
    # A record the bridge builds from its fields: a layout of borne.link_contract, then the frame, if any.
    writer = link.Writer()
    layout = getattr(link_contract, call["layout"])
    struct.pack_into(layout, writer.record, 0, *call["values"])
    size = struct.calcsize(layout)
    tail = unhexlify(call["tail"])
    writer.record[size : size + len(tail)] = tail
    return _hex(writer.frame(size + len(tail)))


def presentations(call):
    # Polls of a badge reader ("seen", token, ms) or ("empty",): which ones are new check-ins.
    door = badges.Presentations(call["retap_ms"])
    answers = []
    for step in call["steps"]:
        if step[0] == "seen":
            answers.append(door.seen(unhexlify(step[1]), step[2]))
        else:
            door.empty()
            answers.append(None)
    return answers


OPS = {
    "record": record,
    "pack": pack,
    "presentations": presentations,
    "checkin": checkin,
    "telemetry": telemetry,
    "status": status,
    "downlink": downlink,
    "cmac": cmac,
    "hmac": hmac,
    "badge": badge,
    "airtime": time_on_air,
    "duty": duty,
    "greedy": greedy,
    "heap": heap,
}


def main(path="calls.json"):
    with open(path) as f:
        calls = json.load(f)
    for call in calls:
        try:
            answer = {"ok": OPS[call["op"]](call)}
        except Exception as error:  # one failing call must not hide the others' answers
            answer = {"error": f"{type(error).__name__}: {error}"}
        print("R", call["id"], json.dumps(answer))
    print("DONE", len(calls))


main()
