"""Logging for the daemon: plain lines for a terminal or a file, or one JSON object a line for log shippers.

Plain lines begin with the time, except when systemd hands them to the journal, which stamps each line
itself: a log file (the virtual site's, a bench's) then tells when each thing happened.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime


class JsonLines(logging.Formatter):
    """`{"time", "level", "logger", "message"}` and the exception's text, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


PLAIN = "%(levelname)s %(name)s: %(message)s"


def configure(level: str, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLines())
    elif journal_stamps_stderr():
        handler.setFormatter(logging.Formatter(PLAIN))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s " + PLAIN))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def journal_stamps_stderr() -> bool:
    """True when systemd connected stderr to the journal: JOURNAL_STREAM then holds that stream's
    "device:inode" (systemd.exec(5)); a child whose stderr was redirected inherits the variable, not the stream."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stream = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):  # unset or malformed; a stderr without a file descriptor, or none
        return False
    return (stream.st_dev, stream.st_ino) == (device, inode)
