"""`borne demo`: a virtual town hall, live.

Boards running the real firmware in the real MicroPython VM (two doors with badge readers, a
meeting room with a BME280 and an SCD41, a bridge board), a radio medium between them, the real
gateway daemon reading the bridge over its pty, and mosquitto. Visitors badge in and out; the
room's air changes; what the gateway publishes is printed as it arrives on MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from simulator.broker import BrokerMissing
from simulator.virtual_board.board import VirtualBoardError, install_vm
from simulator.virtual_site import NodeSpec, VirtualSite

NODES = (
    NodeSpec(101, "entrance", nfc="pn532", direction="in"),
    NodeSpec(102, "exit", nfc="pn532", direction="out"),
    NodeSpec(201, "meeting-room", sensors=("bme280", "scd4x"), telemetry_s=20, status_s=120),
)
RADIO = {"sf": 7}  # the shortest airtime: a demo's minute holds many frames within the duty cycle
VISITORS = [bytes([0x04, 0x10 + i, 0x2A, 0x3B, 0x4C, 0x5D, 0x60 + i]) for i in range(8)]
BADGE_HELD_S = 0.8
DRAIN_S = 20  # at the end, how long to wait for check-ins still on their way
TELEMETRY_UNITS = {
    "temperature_c": "°C",
    "humidity_pct": "%",
    "pressure_hpa": "hPa",
    "co2_ppm": "ppm",
    "voc_index": "VOC",
    "meter_pulses": "pulses",
    "battery_mv": "mV",
}


@dataclass(frozen=True)
class DemoOptions:
    """How the demo runs: `borne demo`'s options."""

    duration_s: float = 0  # 0: until Ctrl-C
    work: Path | None = None  # where the boards' flash, the state and logs go (None: a temporary directory)
    visit_every_s: float = 6.0
    seed: int = 1  # the medium's and the visitors' randomness


def run_demo(options: DemoOptions) -> int:
    """Run the virtual site live until `options.duration_s` or Ctrl-C; 1, with the reason, if it cannot
    start; 130 if Ctrl-C came while it started."""
    install_vm()
    with contextlib.ExitStack() as stack:
        work = options.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="borne-demo-")))
        try:
            say(f"setting up the virtual site in {work}")
            # Started here, in the main thread: a Ctrl-C meanwhile stops what had started (VirtualSite's
            # `with`); a thread of asyncio's would go on starting it, with nobody left to stop it.
            site = stack.enter_context(VirtualSite(work, NODES, radio=RADIO, seed=options.seed))
            return asyncio.run(_demo(site, options))
        except (BrokerMissing, VirtualBoardError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            say("stopped by Ctrl-C while the site was starting; it shuts down")
            return 128 + signal.SIGINT


async def _demo(site: VirtualSite, options: DemoOptions) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    say(f"mosquitto on 127.0.0.1:{site.mqtt_port}; gateway log: {site.gateway_log}")
    for name, board in site.boards.items():
        say(f"board {name}: console on {board.port} (mpremote connect {board.port})")
    say("the nodes boot, then visitors badge in; Ctrl-C stops" if not options.duration_s else "running")
    tally = Tally()
    rng = random.Random(options.seed)
    printer = asyncio.create_task(_print_mqtt(site.mqtt_port, tally))
    world = [asyncio.create_task(job) for job in (_visitors(site, rng, options, tally), _weather(site, rng))]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), options.duration_s or None)
    for task in world:
        task.cancel()
    await asyncio.gather(*world, return_exceptions=True)
    hurry = asyncio.Event()  # a second Ctrl-C: no more waiting
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, hurry.set)
    say("stopping: waiting for the last check-ins to be published (Ctrl-C again to stop now)")
    deadline = time.monotonic() + DRAIN_S
    while tally.published["checkin"] < tally.presented and time.monotonic() < deadline and not hurry.is_set():
        await asyncio.sleep(0.2)
    printer.cancel()
    await asyncio.gather(printer, return_exceptions=True)
    say(tally.summary(site.medium.stats))
    return 0


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


class Tally:
    def __init__(self) -> None:
        self.presented = 0
        self.published: dict[str, int] = {"checkin": 0, "telemetry": 0, "status": 0}

    def summary(self, medium: dict[str, int]) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.published.items())
        # A frame is received, lost or collided at each radio listening as it is sent (the bridge, a node
        # in its receive window), so these do not add up to the frames sent.
        heard = ", ".join(f"{medium[fate]} {fate}" for fate in ("delivered", "lost", "collided"))
        return (
            f"badges presented: {self.presented}; published: {counts}; "
            f"radio: {medium['sent']} frames sent; at the radios listening: {heard}"
        )


async def _visitors(site: VirtualSite, rng: random.Random, options: DemoOptions, tally: Tally) -> None:
    await asyncio.sleep(8)  # the nodes boot and say their status first
    doors = [spec.name for spec in NODES if spec.nfc]
    while True:
        # Visitors in turn: a badge comes back after the others, past the readers' re-tap delay.
        door, badge = rng.choice(doors), VISITORS[tally.presented % len(VISITORS)]
        say(f"a visitor presents a badge at {door}")
        await asyncio.to_thread(site.present_badge, door, badge)
        tally.presented += 1
        await asyncio.sleep(BADGE_HELD_S)
        await asyncio.to_thread(site.remove_badge, door)
        await asyncio.sleep(options.visit_every_s * rng.uniform(0.5, 1.5))


async def _weather(site: VirtualSite, rng: random.Random) -> None:
    """People in the meeting room: CO2 rises, then the window opens."""
    co2 = 450.0
    while True:
        co2 = 450 if co2 > 1400 else co2 + rng.uniform(40, 120)
        temperature = 20.5 + (co2 - 450) / 500
        await asyncio.to_thread(site.set_air, "meeting-room", co2_ppm=int(co2), temperature_c=round(temperature, 2))
        await asyncio.sleep(10)


async def _print_mqtt(port: int, tally: Tally) -> None:
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client:
                await client.subscribe("borne/#", qos=1)
                async for message in client.messages:
                    _show(str(message.topic), message.payload, tally)
        except aiomqtt.MqttError:
            await asyncio.sleep(1)  # the broker is starting


def _show(topic: str, payload: object, tally: Tally) -> None:
    kind = topic.rsplit("/", 1)[-1]
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if not isinstance(data, dict):
        if kind == "state":
            say(f"GATEWAY    {topic.split('/')[-2]} is {data}")
        return
    if kind in tally.published:
        tally.published[kind] += 1
    where = f"{data.get('site')}/{data.get('device')}"
    rssi = data.get("receptions", [{}])[0].get("rssi_dbm") if data.get("receptions") else None
    radio = f"  (RSSI {rssi} dBm)" if rssi is not None else ""
    if kind == "checkin":
        say(f"CHECK-IN   {where}: badge {data['badge_token']} {data['direction']}, {data['age_s']} s ago{radio}")
    elif kind == "telemetry":
        values = ", ".join(f"{data[name]} {unit}" for name, unit in TELEMETRY_UNITS.items() if name in data)
        say(f"TELEMETRY  {where}: {values}{radio}")
    elif kind == "status":
        say(
            f"STATUS     {where}: up {data['uptime_s']} s, reset {data['reset_cause']}, "
            f"queue {data['queue_depth']}, radio errors {data['radio_errors']}{radio}"
        )
    elif kind == "rejected":
        say(f"REJECTED   {data.get('reason')}: {data.get('detail', '')}")
