"""Badge enrolment, which `borne badge enroll` drives over mpremote with the firmware stopped.

The host calls `start()` once, then `poll()` every few hundred milliseconds in the same raw REPL
session; each call reads the reader once and prints, for a badge not seen before in this session,
MARK and a JSON object {"token": HEX, "tag_type": NAME}. The token is the one a check-in carries
(`crypto.badge_token`, with the site's badge key): the UID never leaves this module.
"""

import json

from borne import config as board_config
from borne.crypto import badge_token

MARK = "BORNE-BADGE "

_reader = None
_badge_key = None
_seen: set = set()  # the tokens of this session: a badge held on the reader, or tapped again, is printed once


def start():
    """Open the configured reader; print MARK and {"ready": true, "reader": NAME}, or {"error": WHAT, …}:
    "config" (with "detail"), "no_reader", or "reader" (with "reader", "detail")."""
    global _reader, _badge_key
    try:
        config = board_config.load()
    except board_config.ConfigError as error:
        return _emit({"error": "config", "detail": str(error)})
    if config["role"] != "node" or not config.get("nfc"):
        return _emit({"error": "no_reader"})
    from borne.app import power_up
    from borne.node import open_reader, sensor_bus

    board = config["board"]
    name = config["nfc"]["reader"]
    power_up(board)
    try:
        _reader = open_reader(config, sensor_bus(board))
    except (OSError, AttributeError) as error:  # AttributeError: no I2C bus for a PN532
        return _emit({"error": "reader", "reader": name, "detail": str(error)})
    _badge_key = bytes.fromhex(config["keys"]["badge"])
    _seen.clear()
    _emit({"ready": True, "reader": name})


def poll():
    """Read the reader once: print a badge not seen before in this session; a reader error is printed too."""
    assert _reader is not None, "call start() first"
    try:
        badge = _reader.read_badge()
    except OSError as error:
        return _emit({"reader_error": str(error)})
    if badge is None:
        return
    token = badge_token(_badge_key, badge[0]).hex()
    tag_type = badge[1]
    badge = None  # the UID is forgotten at once
    if token in _seen:
        return
    _seen.add(token)
    _emit({"token": token, "tag_type": tag_type})


def _emit(record):
    print(MARK + json.dumps(record))
