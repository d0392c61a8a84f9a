"""A virtual site served as a bench: what a bench rig file can describe, without the hardware.

    python -m simulator.bench_site --work DIR --nodes nodes.json [--concentrator] [--sf 7] [--freq-khz 868100]

runs the site's boards (the nodes and a bridge) on one radio medium, each on its pty, with mosquitto
and, if asked, a concentrator behind Semtech UDP; it writes the gateway's configuration but does not
run the gateway, which a bench rig starts from that file. What a person or a bench owner's script
does at a real bench (hold a badge at a reader, cut a board's power, restart the broker) comes in on
a control socket, from `borne sim badge`, `borne sim power` and `borne sim broker`. A node marked
`blank` is served with MicroPython alone, for the suite to flash. Once all is up, every other node
booted (its first frame sent) as a bench's boards are running when its suite starts, it writes
`DIR/bench.json` (the ports, the broker's, the gateway configuration's, site key file's and
registry's paths, the control socket's, the radio settings the boards were flashed with), and runs
until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from simulator.virtual_site import NodeSpec, VirtualSite

READY_FILE = "bench.json"
CONTROL_SOCKET = "control.sock"
HELD_S = 0.8  # a badge held at a reader as a person holds it
ANSWER_TIMEOUT_S = 60
# The outdoor concentrator hears the doors 6 dB worse than the indoor bridge beside them: the gateway
# ACKs on the best path heard, so ACKs go by the bridge, and the concentrator is the second path.
CONCENTRATOR_SNR_DB = 2.0
BOOT_S = 180  # the nodes' VMs boot on a shared 2-core machine, a bench site of six doors too


class BenchSiteError(RuntimeError):
    """The bench site could not do what was asked."""


def node_specs(path: Path) -> list[NodeSpec]:
    """The nodes of a JSON file: a list of objects with NodeSpec's fields."""
    known = {field.name for field in fields(NodeSpec)}
    specs = []
    for entry in json.loads(path.read_text(encoding="utf-8")):
        unknown = set(entry) - known
        if unknown:
            raise BenchSiteError(f"{path}: unknown node fields {sorted(unknown)}; known: {sorted(known)}")
        specs.append(NodeSpec(**{**entry, "sensors": tuple(entry.get("sensors", ()))}))
    return specs


class _Control(socketserver.StreamRequestHandler):
    """One request a connection: a JSON line in, a JSON line out."""

    site: VirtualSite

    def handle(self) -> None:
        try:
            request = json.loads(self.rfile.readline())
            self._act(request)
            answer: dict[str, object] = {"ok": True}
        except Exception as error:  # the caller sees it: the server goes on
            answer = {"error": f"{type(error).__name__}: {error}"}
        self.wfile.write(json.dumps(answer).encode() + b"\n")

    def _act(self, request: dict) -> None:
        if request["action"] == "broker":
            (self.site.broker.start if request["on"] else self.site.broker.stop)()
            return
        board = request["board"]
        if board not in self.site.boards:
            raise BenchSiteError(f"no board {board!r} here; the boards: {sorted(self.site.boards)}")
        if request["action"] == "badge":
            self.site.present_badge(board, bytes.fromhex(request["uid"]))
            time.sleep(float(request.get("held_s", HELD_S)))
            self.site.remove_badge(board)
        elif request["action"] == "power":
            (self.site.restore_power if request["on"] else self.site.cut_power)(board)
        else:
            raise BenchSiteError(f"unknown action {request['action']!r}: badge, power or broker")


def ask(control: Path, request: dict[str, object]) -> None:
    """Send one request to a bench site's control socket; return once it is done."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(ANSWER_TIMEOUT_S)
            connection.connect(str(control))
            connection.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(connection.makefile("rb").readline() or b"{}")
    except OSError as error:
        raise BenchSiteError(
            f"cannot reach the bench site at {control} ({error}): is `python -m simulator.bench_site` running?"
        ) from error
    if "error" in answer or not answer.get("ok"):
        raise BenchSiteError(f"the bench site could not do it: {answer.get('error', 'no answer')}")


def present_badge(control: Path, board: str, uid: bytes, held_s: float = HELD_S) -> None:
    ask(control, {"action": "badge", "board": board, "uid": uid.hex(), "held_s": held_s})


def set_power(control: Path, board: str, on: bool) -> None:
    ask(control, {"action": "power", "board": board, "on": on})


def set_broker(control: Path, on: bool) -> None:
    ask(control, {"action": "broker", "on": on})


def wait_until_booted(site: VirtualSite, stop: threading.Event) -> None:
    """Until every node but a blank one (MicroPython alone sends nothing) has sent its first frame, its
    boot status, whatever became of it on the air; BenchSiteError, naming them, if some have not within
    BOOT_S. Returns early if `stop` is set."""
    deadline = time.monotonic() + BOOT_S
    while not stop.is_set():
        air = site.medium.time_on_air_s
        silent = [name for name, spec in site.specs.items() if not spec.blank and not air(site.boards[name])]
        if not silent:
            return
        if time.monotonic() > deadline:
            raise BenchSiteError(f"{', '.join(silent)} sent no frame within {BOOT_S} s of power-on: did they boot?")
        stop.wait(0.5)


def serve(work: Path, nodes: list[NodeSpec], *, concentrator: bool, radio: dict[str, int | str]) -> None:
    """Run the site until SIGTERM or SIGINT; `work/bench.json` says where everything is."""
    stop = threading.Event()
    stopped_by: list[str] = []

    def stop_on(signum: int, frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, stop_on)
    signal.signal(signal.SIGINT, stop_on)
    control = work / CONTROL_SOCKET
    with contextlib.suppress(FileNotFoundError):
        control.unlink()
    site = VirtualSite(work, nodes, radio=radio, concentrator=concentrator, gateway=False)
    handler = type("Control", (_Control,), {"site": site})
    with site, socketserver.ThreadingUnixStreamServer(str(control), handler) as server:
        if concentrator:
            for name in site.specs:
                site.medium.set_link(site.boards[name], "concentrator", snr_db=CONCENTRATOR_SNR_DB)
        threading.Thread(target=server.serve_forever, name="bench control", daemon=True).start()
        try:
            wait_until_booted(site, stop)
            if not stop.is_set():
                _write_ready(work, site, control, radio)
                stop.wait()
        finally:
            server.shutdown()
    if stopped_by:
        print(f"bench site stopped by {stopped_by[0]}: its boards and broker are off", file=sys.stderr, flush=True)


def _write_ready(work: Path, site: VirtualSite, control: Path, radio: dict[str, int | str]) -> None:
    """Write `work/bench.json`: whole or absent for whoever waits on it."""
    ready = {
        "boards": {name: str(board.port) for name, board in site.boards.items()},
        "broker_port": site.mqtt_port,
        "udp_port": site.udp_port,
        "gateway_config": str(site.config_file),
        "site_keys": str(site.keys_file),
        "registry": str(site.registry_file),
        "control": str(control),
        "radio": {key: value for key, value in radio.items() if key in ("sf", "freq_khz")},
    }
    (work / (READY_FILE + ".part")).write_text(json.dumps(ready, indent=2), encoding="utf-8")
    (work / (READY_FILE + ".part")).rename(work / READY_FILE)
    print(f"bench site ready: {work / READY_FILE}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench_site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the boards, broker and files go")
    parser.add_argument("--nodes", type=Path, required=True, help="a JSON list of nodes (NodeSpec's fields)")
    parser.add_argument("--concentrator", action="store_true", help="also a concentrator behind Semtech UDP")
    parser.add_argument("--sf", type=int, help="the site's spreading factor")
    parser.add_argument("--freq-khz", type=int, help="the site's channel, in kHz")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    given = {"sf": args.sf, "freq_khz": args.freq_khz}
    radio: dict[str, int | str] = {key: value for key, value in given.items() if value}
    try:
        serve(args.work, node_specs(args.nodes), concentrator=args.concentrator, radio=radio)
    except BenchSiteError as error:
        print(f"the bench site stopped: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
