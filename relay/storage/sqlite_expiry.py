"""The SQLite backend's side of the timer job: what is due, and many changes in one write.

The timer job used to destroy each due message with a ``change_message`` of
its own, so every message cost a write transaction and its fsync; at a few
hundred timers a second the job fell behind its moments.  Here a whole
batch is read, decided and written inside one job of the group-commit
writer: one transaction, one fsync.  Each message still gets its own
savepoint, so a rule that raises for one message (or a database error on its
rows) rolls back that message alone and the others are committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import NotFound
from . import sqlite_rows as rows
from .base import Changes, EventRecord, MessageView, StorageError
from .sqlite_engine import SqliteEngine

__all__ = ["SqliteExpiry"]

T = TypeVar("T")
_IN_CLAUSE = 500  # ids per IN (...) list: far below SQLite's limit on bound parameters


class SqliteExpiry:
    """The timer queries and batched changes of :class:`~relay.storage.sqlite.SqliteStorage`."""

    _engine: SqliteEngine
    _clock: Callable[[], int]
    _announce: Callable[[list[EventRecord]], None]
    _destroyed: Callable[[list[bytes]], None]

    async def copies_to_expire(self, now: int, limit: int) -> list[bytes]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            found = conn.execute(
                "SELECT DISTINCT message_id FROM deliveries "
                "WHERE expires_at IS NOT NULL AND expired_at IS NULL AND expires_at <= ? LIMIT ?",
                (now, limit),
            )
            return [row[0] for row in found]

        return await self._engine.read(run)

    async def next_expiry(self) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT min(expires_at) FROM deliveries "
                "WHERE expires_at IS NOT NULL AND expired_at IS NULL"
            ).fetchone()
            return None if row[0] is None else int(row[0])

        return await self._engine.read(run)

    async def message_senders(self, message_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        def run(conn: sqlite3.Connection) -> dict[bytes, bytes]:
            found: dict[bytes, bytes] = {}
            for start in range(0, len(message_ids), _IN_CLAUSE):
                part = list(message_ids[start : start + _IN_CLAUSE])
                places = ", ".join("?" * len(part))
                for message_id, sender in conn.execute(
                    f"SELECT message_id, sender FROM messages WHERE message_id IN ({places})",
                    part,
                ):
                    found[bytes(message_id)] = bytes(sender)
            return found

        if not message_ids:
            return {}
        return await self._engine.read(run)

    async def change_messages(
        self,
        message_ids: Sequence[bytes],
        decide: Callable[[MessageView], tuple[Changes, T]],
    ) -> list[T | Exception]:
        now = self._clock()
        purged = False
        written: list[EventRecord] = []
        destroyed: list[bytes] = []

        def one(conn: sqlite3.Connection, message_id: bytes) -> T:
            nonlocal purged
            view = rows.read_view(conn, message_id, None)
            if view is None:
                raise NotFound("No such message.")
            changes, result = decide(view)
            gone = rows.apply_changes(conn, view, changes, None, None)
            events = rows.insert_events(conn, changes.events, now)
            # Only now, with every write of this message done: a failure above rolls the
            # message back, and what it would have announced must not be announced.
            purged = purged or changes.purge
            written.extend(events)
            destroyed.extend(gone)
            return result

        def run(conn: sqlite3.Connection) -> list[T | Exception]:
            outcomes: list[T | Exception] = []
            for message_id in message_ids:
                conn.execute("SAVEPOINT one_message")
                try:
                    outcomes.append(one(conn, message_id))
                except Exception as exc:  # handed back to the caller, for this message alone
                    conn.execute("ROLLBACK TO one_message")
                    outcomes.append(_as_outcome(exc))
                conn.execute("RELEASE one_message")
            return outcomes

        if not message_ids:
            return []
        try:
            outcomes = await self._engine.write(run)
        except BaseException:
            written.clear()  # the whole transaction failed: nothing of it happened
            destroyed.clear()
            raise
        if purged:
            self._engine.request_checkpoint()
        self._announce(written)
        self._destroyed(destroyed)
        return outcomes


def _as_outcome(exc: Exception) -> Exception:
    """A database error on one message's rows is a :class:`StorageError` like any other."""
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"database write failed: {exc}")
    return exc
