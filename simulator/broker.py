"""A real mosquitto for the rig, the demo and the benchmarks, on a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from simulator.children import start_child


class BrokerMissing(RuntimeError):
    """mosquitto is not installed."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found is None:
        raise BrokerMissing("mosquitto is not installed: `make test` installs it, or run `apt install mosquitto`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A mosquitto process listening on 127.0.0.1 only, that can be stopped and started again.

    Persistence keeps subscribers' sessions across a restart, as a production broker would.
    """

    def __init__(self, directory: Path, listener_settings: str = "", password_file: Path | None = None) -> None:
        """`listener_settings`: mosquitto lines for the listener (e.g. TLS certificates);
        `password_file`: a mosquitto_passwd file, which also turns anonymous access off."""
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        access = (
            f"password_file {password_file}\nallow_anonymous false\n" if password_file else "allow_anonymous true\n"
        )
        # `user root` keeps mosquitto from dropping to a user that cannot write into `directory`
        # when run as root (it is ignored otherwise).
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{listener_settings}{access}user root\n"
            f"persistence true\npersistence_location {directory}/\nmax_queued_messages 100000\n"
        )
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = start_child([mosquitto_binary(), "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start; its log says: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
