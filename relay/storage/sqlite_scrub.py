"""Scrubbing: rewrite the whole database file so no fragment of purged content survives.

``secure_delete`` zeroes a row's bytes when SQLite frees them, but not the
stale copies a B-tree leaves behind when it rebalances: a page rebuilt with
fewer cells keeps old cell bytes in its unallocated gap, and a wrap or a
ciphertext that lived on that page before the split is still readable
there after its recall.  The remanence suite found exactly that (wraps of
recalled messages, whole, in the gap of ``deliveries`` pages).  ``VACUUM``
writes every page afresh and leaves no gap with old bytes in it, so the
writer runs it some time after a purge, at most once per ``interval``, and
then truncates the WAL it went through.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

__all__ = ["Scrubber"]

log = logging.getLogger("relay.storage")


class Scrubber:
    """When the writer thread should VACUUM, and doing it.  Thread-safe to ``want``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval  # seconds; 0 turns the automatic scrub off
        self._wanted = threading.Event()
        self._last = time.monotonic()

    def want(self) -> None:
        """A purge happened: scrub within ``interval``."""
        if self.interval > 0:
            self._wanted.set()

    @property
    def pending(self) -> bool:
        return self._wanted.is_set()

    def wait(self) -> float | None:
        """Seconds until a scrub is due, None if none is wanted."""
        if not self._wanted.is_set():
            return None
        return max(0.0, self._last + self.interval - time.monotonic())

    def run(self, conn: sqlite3.Connection) -> float:
        """VACUUM and truncate the WAL now; the seconds it took.

        Runs on the writer's connection between batches, so no write is
        interleaved with it; readers keep reading the last committed state.
        """
        self._wanted.clear()
        started = time.monotonic()
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            self._wanted.set()  # try again after another interval
            log.warning("scrub failed", extra={"event": "scrub_failed", "error": str(exc)})
            raise
        finally:
            self._last = time.monotonic()
        seconds = self._last - started
        log.info("scrubbed", extra={"event": "scrubbed", "duration_ms": round(seconds * 1000, 1)})
        return seconds
