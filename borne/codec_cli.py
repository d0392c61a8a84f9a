"""`borne codec …`: decode and build frames, regenerate the vectors, export the JS formatter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from boards.keyfile import SiteKeys, load_site_keys, readable_by_others
from payload_codec import vectorgen
from payload_codec.crypto import DOWN, UP
from payload_codec.errors import CodecError
from payload_codec.export_js import export_js
from payload_codec.frame import SealedEnvelope, build_frame, open_envelope, read_envelope
from payload_codec.messages import decode_body, message_from_json
from payload_codec.schema import FLAG_ENCRYPTED, TYPE_BY_NAME


def add_commands(commands: argparse._SubParsersAction) -> None:
    codec = commands.add_parser("codec", help="decode, build and test air frames")
    actions = codec.add_subparsers(dest="action", required=True, metavar="ACTION")

    decode = actions.add_parser("decode", help="print a frame given in hex as JSON")
    decode.add_argument("frame", metavar="HEX", help="the frame's bytes in hex")
    decode.add_argument("--keys", type=Path, help="site key file; without it the MIC is not checked")
    decode.add_argument("--last-counter", type=int, help="last counter accepted from the device (default: none)")
    decode.add_argument("--downlink", action="store_true", help="the frame travels gateway → node")
    decode.set_defaults(run=_decode)

    encode = actions.add_parser("encode", help="build a frame and print it in hex")
    encode.add_argument("type", choices=sorted(TYPE_BY_NAME), help="message type")
    encode.add_argument("--keys", type=Path, required=True, help="site key file")
    encode.add_argument("--device", type=lambda text: int(text, 0), required=True, help="device id, 0-65535")
    encode.add_argument("--counter", type=int, required=True, help="the device's 32-bit frame counter")
    encode.add_argument("--fields", required=True, help="the fields as JSON, or @FILE to read them from a file")
    encode.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encrypt the body (default: on for check-ins, off otherwise)",
    )
    encode.add_argument("--ack-requested", action="store_true", help="ask the gateway for an ACK")
    encode.add_argument("--time-requested", action="store_true", help="ask for the gateway's time in the ACK")
    encode.set_defaults(run=_encode)

    vectors = actions.add_parser("vectors", help="regenerate the shared test vectors")
    vectors.add_argument("--out", type=Path, default=vectorgen.VECTORS_DIR, help="folder to write them to")
    vectors.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    vectors.set_defaults(run=_vectors)

    export_js = actions.add_parser("export-js", help="print the TS013 JavaScript payload formatter")
    export_js.set_defaults(run=_export_js)


def _load_keys(path: Path | None) -> SiteKeys | None:
    if path is None:
        return None
    keys = load_site_keys(path)
    if readable_by_others(path):
        print(f"warning: {path} is readable by other users; run: chmod 600 {path}", file=sys.stderr)
    return keys


def _decode(args: argparse.Namespace) -> int:
    try:
        raw = bytes.fromhex(args.frame)
    except ValueError:
        print(f"error: {args.frame!r} is not hex; give the frame's bytes as hex digits", file=sys.stderr)
        return 2
    direction = DOWN if args.downlink else UP
    envelope = read_envelope(raw, direction)
    if isinstance(envelope, CodecError):
        return _refuse(envelope)
    keys = _load_keys(args.keys)
    if keys is None:
        return _print_unverified(envelope)
    frame = open_envelope(envelope, keys.for_device(envelope.device_id), args.last_counter)
    if isinstance(frame, CodecError):
        return _refuse(frame)
    _print_json({**frame.to_json(), "verified": True, "size": len(raw)})
    return 0


def _print_unverified(envelope: SealedEnvelope) -> int:
    print("warning: MIC not checked; pass --keys FILE to verify and decrypt", file=sys.stderr)
    result: dict[str, Any] = {
        "type": envelope.msg_type.name,
        "device_id": envelope.device_id,
        "counter16": envelope.counter16,
        "encrypted": bool(envelope.flags & FLAG_ENCRYPTED),
        "verified": False,
        "size": len(envelope.signed) + len(envelope.mic),
    }
    if result["encrypted"]:
        result["body_hex"] = envelope.body.hex()
    else:
        message = decode_body(envelope.msg_type.name, envelope.body)
        if isinstance(message, CodecError):
            return _refuse(message)
        result["fields"] = message.to_json()
    _print_json(result)
    return 0


def _refuse(error: CodecError) -> int:
    print(f"invalid frame: {error.reason}: {error.detail}", file=sys.stderr)
    return 1


def _encode(args: argparse.Namespace) -> int:
    text = args.fields
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"error: --fields is not JSON: {error}", file=sys.stderr)
        return 2
    keys = _load_keys(args.keys)
    assert keys is not None  # --keys is required
    device_keys = keys.for_device(args.device)
    if device_keys is None:
        print(f"error: {args.keys} has no master_key and no keys for device {args.device}", file=sys.stderr)
        return 2
    try:
        frame = build_frame(
            message_from_json(args.type, fields),
            args.device,
            args.counter,
            device_keys,
            encrypt=args.encrypt,
            ack_requested=args.ack_requested,
            time_requested=args.time_requested,
        )
    except CodecError as error:
        print(f"error: cannot build that frame: {error.reason}: {error.detail}", file=sys.stderr)
        return 1
    print(frame.hex())
    return 0


def _vectors(args: argparse.Namespace) -> int:
    if args.check:
        stale = vectorgen.stale_vectors(args.out)
        for name in stale:
            print(f"{args.out / name} differs from what the codec generates", file=sys.stderr)
        if stale:
            print("run `borne codec vectors` and review the change", file=sys.stderr)
        return 1 if stale else 0
    for path in vectorgen.write_vectors(args.out):
        cases = len(json.loads(path.read_text(encoding="utf-8"))["cases"])
        print(f"wrote {path} ({cases} cases)")
    return 0


def _export_js(args: argparse.Namespace) -> int:
    sys.stdout.write(export_js())
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
