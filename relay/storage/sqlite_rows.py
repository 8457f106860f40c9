"""Rows of the SQLite backend: records to rows and back, and the writes every change shares.

Kept apart from :mod:`.sqlite` so that the store methods read as SQL for one
job each.  The quota counter (``users.stored_bytes``) is moved only here, by
the same statements that insert or purge a message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from e2e_recall.report import DeviceState

from ..errors import Conflict, unknown_device
from . import sqlite_blobs as blob_rows
from .base import (
    Changes,
    DeliveryRecord,
    EventKind,
    EventRecord,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    QuotaExceeded,
)
from .blob_records import BindRule

__all__ = [
    "DELIVERY_COLUMNS",
    "DELIVERY_PLACES",
    "DEVICE_COLUMNS",
    "MESSAGE_COLUMNS",
    "MESSAGE_UPDATE",
    "apply_changes",
    "charge",
    "delivery_row",
    "held",
    "insert_events",
    "insert_message",
    "message_row",
    "read_view",
    "to_delivery",
    "to_message",
]


MESSAGE_COLUMNS = (
    "message_id, conversation_id, sender, sender_device, header, envelope, size, sent_at, "
    "received_at, state, first_opened_at, recalled_at, revocation, purge_receipt, all_opened_at"
)
DELIVERY_COLUMNS = (
    "message_id, device_id, user_id, wrap, own_device, state, fetched_at, key_released_at, "
    "recalled_at, deleted_at, receipt, downloaded_at, key_id, expires_at, expired_at"
)
DELIVERY_PLACES = ", ".join("?" * len(DELIVERY_COLUMNS.split(",")))
_MESSAGE_PLACES = ", ".join("?" * len(MESSAGE_COLUMNS.split(",")))
MESSAGE_UPDATE = ", ".join(f"{name.strip()} = ?" for name in MESSAGE_COLUMNS.split(",")[1:])
DEVICE_COLUMNS = "device_id, user_id, certificate, signing_key, created_at, revoked_at, acked_seq"


def to_message(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        message_id=row[0],
        conversation_id=row[1],
        sender=row[2],
        sender_device=row[3],
        header=row[4],
        envelope=row[5],
        size=row[6],
        sent_at=row[7],
        received_at=row[8],
        state=MessageState(row[9]),
        first_opened_at=row[10],
        recalled_at=row[11],
        revocation=row[12],
        purge_receipt=row[13],
        all_opened_at=row[14],
    )


def message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (
        m.message_id,
        m.conversation_id,
        m.sender,
        m.sender_device,
        m.header,
        m.envelope,
        m.size,
        m.sent_at,
        m.received_at,
        str(m.state),
        m.first_opened_at,
        m.recalled_at,
        m.revocation,
        m.purge_receipt,
        m.all_opened_at,
    )


def to_delivery(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        row[0], row[1], row[2], row[3], bool(row[4]), DeviceState(row[5]), *row[6:]
    )


def delivery_row(d: DeliveryRecord) -> tuple[Any, ...]:
    return (
        d.message_id,
        d.device_id,
        d.user_id,
        d.wrap,
        int(d.own_device),
        str(d.state),
        d.fetched_at,
        d.key_released_at,
        d.recalled_at,
        d.deleted_at,
        d.receipt,
        d.downloaded_at,
        d.key_id,
        d.expires_at,
        d.expired_at,
    )


def held(message: MessageRecord) -> int:
    """The bytes a message counts against its sender's quota: its ciphertext, while held."""
    return message.size if message.state is MessageState.LIVE and message.envelope else 0


def charge(conn: sqlite3.Connection, user_id: bytes, amount: int, quota: int | None) -> None:
    """Move the user's stored-bytes counter, refusing to pass ``quota`` (in this transaction)."""
    if amount > 0 and quota is not None:
        row = conn.execute(
            "SELECT stored_bytes FROM users WHERE user_id = ?", (user_id,)
        ).fetchone()
        used = int(row[0]) if row else 0
        if used + amount > quota:
            raise QuotaExceeded(used, quota)
    if amount:
        conn.execute(
            "UPDATE users SET stored_bytes = stored_bytes + ? WHERE user_id = ?", (amount, user_id)
        )


def insert_message(
    conn: sqlite3.Connection,
    message: MessageRecord,
    deliveries: list[DeliveryRecord],
    quota: int | None,
) -> None:
    """Charge the sender, insert the message and its deliveries.

    A delivery to a device revoked since the send was checked (through a
    cache, before this transaction) is refused: no wrap is ever stored for a
    revoked device.
    """
    device_ids = [d.device_id for d in deliveries]
    for start in range(0, len(device_ids), 500):  # within SQLite's limit on parameters
        chunk = device_ids[start : start + 500]
        places = ", ".join("?" * len(chunk))
        if conn.execute(
            f"SELECT 1 FROM devices WHERE device_id IN ({places}) AND revoked_at IS NOT NULL",
            chunk,
        ).fetchone():
            raise unknown_device()
    charge(conn, message.sender, held(message), quota)
    conn.execute(
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_MESSAGE_PLACES})",
        message_row(message),
    )
    conn.executemany(
        f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES ({DELIVERY_PLACES})",
        [delivery_row(d) for d in deliveries],
    )


def insert_events(conn: sqlite3.Connection, events: list[NewEvent], now: int) -> list[EventRecord]:
    """Queue ``events``; the records as stored, with the sequence numbers they got.

    One statement inserts them in order, and ``seq`` is AUTOINCREMENT with a
    single writer, so they got consecutive numbers ending at the last rowid.
    """
    if not events:
        return []
    conn.executemany(
        "INSERT INTO events (device_id, kind, message_id, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(e.device_id, str(e.kind), e.message_id, e.payload, now) for e in events],
    )
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    first = last - len(events) + 1
    return [
        EventRecord(first + i, e.device_id, e.kind, e.message_id, e.payload, now)
        for i, e in enumerate(events)
    ]


def read_view(
    conn: sqlite3.Connection, message_id: bytes, recalls_since: int | None
) -> MessageView | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return None
    message = to_message(row)
    deliveries = tuple(
        to_delivery(r)
        for r in conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ? "
            "ORDER BY user_id, device_id",
            (message_id,),
        )
    )
    recalls = 0
    if recalls_since is not None:
        recalls = conn.execute(
            "SELECT count(*) FROM messages "
            "WHERE conversation_id = ? AND sender = ? AND recalled_at >= ?",
            (message.conversation_id, message.sender, recalls_since),
        ).fetchone()[0]
    files, downloads = blob_rows.read_files(conn, message_id)
    return MessageView(message, deliveries, recalls, files, downloads)


def apply_changes(
    conn: sqlite3.Connection,
    view: MessageView,
    changes: Changes,
    quota: int | None,
    bind: BindRule | None,
) -> list[bytes]:
    """Write what a rule decided about one message (events aside); the blob ids destroyed."""
    message_id = view.message.message_id
    if changes.message is not None:
        freed = held(view.message) - held(changes.message)
        charge(conn, view.message.sender, -freed, None)
        row = message_row(changes.message)
        conn.execute(
            f"UPDATE messages SET {MESSAGE_UPDATE} WHERE message_id = ?", (*row[1:], row[0])
        )
    conn.executemany(
        f"REPLACE INTO deliveries ({DELIVERY_COLUMNS}) VALUES ({DELIVERY_PLACES})",
        [delivery_row(d) for d in changes.deliveries],
    )
    for new_message, new_deliveries in changes.new_messages:
        if conn.execute(
            "SELECT 1 FROM messages WHERE message_id = ?", (new_message.message_id,)
        ).fetchone():
            raise Conflict("A message with that id already exists.", code="message_exists")
        insert_message(conn, new_message, new_deliveries, quota)
        blob_ids = changes.new_blobs.get(new_message.message_id, ())
        blob_rows.bind(conn, new_message.message_id, new_message.sender, blob_ids, bind)
    blob_rows.record_downloads(conn, changes.blob_downloads)
    conn.executemany(
        "DELETE FROM events WHERE device_id = ? AND message_id = ? AND kind = ?",
        [(device_id, message_id, str(EventKind.MESSAGE)) for device_id in changes.drop_notices],
    )
    return blob_rows.destroy(conn, message_id) if changes.destroy_blobs else []
