"""Structured JSON logs that can never carry content, keys or tokens.

Every record is one JSON object per line.  Only fields on an allow-list are
copied from a record's ``extra``; anything else is dropped, so a careless
``log.info(..., extra={"envelope": ...})`` cannot leak ciphertext, and byte
strings are never printed whole (ids are shown as a short hex prefix).

A logged exception (an internal error) carries its class and its stack, as
a list of frames (file, line, function and the source line), for each
exception in the chain.  Never its message and never local variables: both
can hold whatever the failing code was handling, which may be a request
body, a key or a token.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import PurePath
from types import TracebackType
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
        "job",  # relay/cluster.py: which background job a process leads
        "kind",  # relay/cluster.py: which signal failed to go out
        "checkpointed",  # relay/storage/postgres_scrub.py: what a scrub could do
        "wal_switched",
    }
)
_MAX_FRAMES = 40
_MAX_CHAIN = 5


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
            entry["traceback"] = _stack(record.exc_info[1])
        return json.dumps(entry, separators=(",", ":"))


def _frame(frame: traceback.FrameSummary) -> str:
    parts = PurePath(frame.filename).parts
    where = "/".join(parts[-2:])  # "relay/handlers.py", "aiohttp/web_protocol.py"
    code = (frame.line or "").strip()[:160]
    return f"{where}:{frame.lineno} in {frame.name}" + (f": {code}" if code else "")


def _stack(exc: BaseException | None) -> list[dict[str, Any]]:
    """The exception and its causes, outermost last, as class names and frames only."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < _MAX_CHAIN:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    stacks = []
    for item in reversed(chain):
        tb: TracebackType | None = item.__traceback__
        frames = traceback.extract_tb(tb)[-_MAX_FRAMES:]
        stacks.append({"exception": type(item).__name__, "frames": [_frame(f) for f in frames]})
    return stacks


def configure_logging(level: str = "info", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the relay logs requests itself
