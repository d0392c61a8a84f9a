"""Readiness and watchdog notifications to systemd (`Type=notify`, `WatchdogSec=`).

The protocol is one datagram on the socket named by $NOTIFY_SOCKET; written here in a
few lines rather than depending on systemd-python, which needs compiling against
libsystemd, or on a wrapper package for these few lines.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send e.g. "READY=1" or "WATCHDOG=1"; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog period systemd set for us, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2_000_000 if usec and usec.isdigit() else None
