"""Structured JSON logs that can never carry content, keys or tokens.

Every record is one JSON object per line.  Only fields on an allow-list are
copied from a record's ``extra``; anything else is dropped, so a careless
``log.info(..., extra={"envelope": ...})`` cannot leak ciphertext, and byte
strings are never printed whole (ids are shown as a short hex prefix).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["ALLOWED_FIELDS", "JsonFormatter", "configure_logging"]

ALLOWED_FIELDS = frozenset(
    {
        "event",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "code",
        "error",
        "batch",
        "schema_version",
        "expired",
        "forgotten",
        "host",
        "port",
        "tls",
        "database",
        "connections",
        "user",
        "device",
        "message",
        "reason",
        "count",
        "signal",
    }
)


def _safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value[:4].hex()  # an id prefix for correlating lines; never a whole value
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)[:200]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage()[:500],
        }
        for key in ALLOWED_FIELDS:
            if key in record.__dict__:
                entry[key] = _safe(record.__dict__[key])
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str = "info", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the relay logs requests itself
