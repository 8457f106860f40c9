"""Fill a relay's database with stored messages before a run: ``bench --prefill N``.

Throughput must hold as the database grows (issue 6: at 1M stored messages,
at least 80% of the throughput at 1k).  Sending a million messages through
the API first would take longer than the run, so the bench writes them
straight into the new database, through the relay's own schema and row
code, in large transactions: each is a live message of --size bytes (random
bytes standing in for a ciphertext the relay never reads) from one filler
user to another, with its delivery (a wrap of the right length) and its
notice queued for the filler recipient's device, which never connects.  So
the messages, deliveries and events tables, and every index on them, hold
N rows each when the relay starts, as they would after N undelivered sends.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from ..storage import sqlite_rows as rows
from ..storage.base import (
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    MessageRecord,
    NewEvent,
    UserRecord,
)
from ..storage.sqlite import SqliteStorage

__all__ = ["prefill"]

_CHUNK = 10_000
_WRAP = 80  # an X25519 wrap's length


async def _schema(database: Path, now: int) -> tuple[UserRecord, UserRecord, DeviceRecord]:
    """Create the database with the relay's migrations, and the two filler users."""
    storage = SqliteStorage(database, lambda: now)
    await storage.open()
    try:
        users = []
        for name in (b"filler-sender", b"filler-recipient"):
            user = UserRecord(os.urandom(32), os.urandom(32), None, now)
            device = DeviceRecord(os.urandom(16), user.user_id, name, os.urandom(32), now)
            await storage.add_device(user, device)
            users.append((user, device))
        return users[0][0], users[1][0], users[1][1]
    finally:
        await storage.close()


def prefill(data_dir: Path, count: int, size: int) -> float:
    """Write ``count`` stored messages into ``data_dir``'s new database; the seconds taken."""
    started = time.monotonic()
    now = int(time.time() * 1000)
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / "relay.db"
    sender, recipient, device = asyncio.run(_schema(database, now))
    conversation = os.urandom(16)
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a fill, not an acknowledgement
        for start in range(0, count, _CHUNK):
            conn.execute("BEGIN")
            for _ in range(min(_CHUNK, count - start)):
                message_id = os.urandom(16)
                message = MessageRecord(
                    message_id=message_id,
                    conversation_id=conversation,
                    sender=sender.user_id,
                    sender_device=device.device_id,
                    header=os.urandom(120),
                    envelope=os.urandom(size),
                    size=size,
                    sent_at=now,
                    received_at=now,
                )
                delivery = DeliveryRecord(
                    message_id, device.device_id, recipient.user_id, os.urandom(_WRAP), False
                )
                rows.insert_message(conn, message, [delivery], None)
                notice = NewEvent(device.device_id, EventKind.MESSAGE, message_id, b"\x80")
                rows.insert_events(conn, [notice], now)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.monotonic() - started
