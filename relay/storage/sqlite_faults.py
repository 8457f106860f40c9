"""A seam for fault injection: where the SQLite engine asks "should this step fail?".

The relay itself never sets one.  The fault-injection suite does, to make a
write fail the way a full disk, an I/O error or a locked database makes it
fail (a ``sqlite3.Error`` from the step), at each step of send, open and
recall: before the transaction, at any statement inside it, at the commit,
at the checkpoint and at the scrub.  The promises under test are the
engine's own: no acknowledgement without a commit, no half-applied change,
and recovery without a manual step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Literal, Protocol

__all__ = ["FaultPoint", "Faults", "faulty"]

FaultPoint = Literal["begin", "execute", "commit", "checkpoint", "scrub"]


class Faults(Protocol):
    def check(self, point: FaultPoint, conn: sqlite3.Connection) -> None:
        """Raise a ``sqlite3.Error`` to make this step fail; return to let it run."""


class _FaultyConnection:
    """A connection whose statements each pass the fault check first."""

    def __init__(self, conn: sqlite3.Connection, faults: Faults) -> None:
        self._conn = conn
        self._faults = faults

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        self._faults.check("execute", self._conn)
        return self._conn.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any]) -> sqlite3.Cursor:
        self._faults.check("execute", self._conn)
        return self._conn.executemany(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def faulty(conn: sqlite3.Connection, faults: Faults | None) -> sqlite3.Connection:
    """``conn`` itself, or (with faults) a stand-in whose statements can be made to fail."""
    if faults is None:
        return conn
    return _FaultyConnection(conn, faults)  # type: ignore[return-value]
