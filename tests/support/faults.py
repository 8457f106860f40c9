"""Fault plans for the fault-injection suite: make one step of the relay's database fail.

A plan plugs into the engine's seam (relay/storage/sqlite_faults.py).  Armed
with a step ("begin", the n-th statement, "commit", "checkpoint", "scrub")
and a kind of failure, it makes that step raise what SQLite raises for a full
disk, an I/O error or a locked database, ``times`` times in a row, then lets
everything through again: a transient fault the relay must recover from on
its own.  Unarmed, it counts the steps, so a test can learn how many
statements an operation runs and fail each one in turn.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter

from relay.storage.sqlite_faults import FaultPoint

KINDS = {
    "disk_full": "database or disk is full",
    "io_error": "disk I/O error",
    "locked": "database is locked",
}


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.fired = 0
        self._armed: tuple[FaultPoint, int, str, int] | None = None
        self._cap: str | None = None  # a page cap to set ("on"), in force ("set"), to lift

    def arm(self, point: FaultPoint, kind: str, nth: int = 1, times: int = 1) -> None:
        with self._lock:
            self._armed = (point, nth, kind, times)

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def cap_pages(self) -> None:
        """A real full disk: at the next transaction the file may not grow any more."""
        with self._lock:
            self._cap = "on"

    def uncap_pages(self) -> None:
        with self._lock:
            self._cap = "lift"

    def _apply_cap(self, conn: sqlite3.Connection) -> None:
        if self._cap == "on":
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
            self._cap = "set"
        elif self._cap == "lift":
            conn.execute("PRAGMA max_page_count = 4294967294")
            self._cap = None

    def check(self, point: FaultPoint, conn: sqlite3.Connection) -> None:
        with self._lock:
            if point == "begin":
                self._apply_cap(conn)
            self.counts[point] += 1
            if self._armed is None or self._armed[0] != point:
                return
            wanted, nth, kind, times = self._armed
            if nth > 1:
                self._armed = (wanted, nth - 1, kind, times)
                return
            self._armed = (wanted, 1, kind, times - 1) if times > 1 else None
            self.fired += 1
        raise sqlite3.OperationalError(KINDS[kind])
