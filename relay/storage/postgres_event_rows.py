"""Queueing events on PostgreSQL, for the stores that write them besides messages.

``events.seq`` is an identity column, so unlike SQLite the numbers cannot be
worked out from the last rowid: the insert returns the rows it made, and
the records are built from those rows.  Every queued event is handed to
``tx.announce`` here, so a store cannot insert an event and forget to push it.
"""

from __future__ import annotations

from .base import EventKind, EventRecord, NewEvent
from .postgres_engine import Tx

__all__ = ["queue_events"]


async def queue_events(tx: Tx, events: list[NewEvent], now: int) -> list[EventRecord]:
    """Insert ``events`` in order in one statement; announce and return them with their seq."""
    if not events:
        return []
    rows = await tx.conn.fetch(
        "INSERT INTO events (device_id, kind, message_id, payload, created_at) "
        "SELECT device_id, kind, message_id, payload, $5 "
        "FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[]) "
        "WITH ORDINALITY AS e(device_id, kind, message_id, payload, n) ORDER BY n "
        "RETURNING seq, device_id, kind, message_id, payload, created_at",
        [e.device_id for e in events],
        [str(e.kind) for e in events],
        [e.message_id for e in events],
        [e.payload for e in events],
        now,
    )
    written = sorted(
        (EventRecord(r[0], r[1], EventKind(r[2]), r[3], r[4], r[5]) for r in rows),
        key=lambda event: event.seq,
    )
    tx.announce(written)
    return written
