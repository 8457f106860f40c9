"""Rows of the PostgreSQL backend: records to rows and back, and the writes changes share.

The counterpart of :mod:`.sqlite_rows`, statement for statement, so both
backends keep the same rows.  The quota counter (``users.stored_bytes``) is
moved only here, by the statements that insert or purge a message.

Two things SQLite's single writer gave for free are made explicit here:

* A read-decide-write locks what it read (``FOR UPDATE`` on the message and,
  for a quota, on the sender's row), so concurrent changes of one message
  queue up instead of failing to serialise and retrying.
* Event sequence numbers must reach the database's readers in order: a
  device that has seen event 11 never asks for anything at or below 11
  again.  An identity column hands out numbers when rows are inserted, not
  when they commit, so two transactions could commit 11 before 10.
  :func:`insert_events` therefore first takes a transaction-scoped advisory
  lock per receiving device; the next transaction queuing for that device
  waits for the commit, then draws a higher number.  So for each device the
  numbers commit in increasing order, across every relay process.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from e2e_recall.report import DeviceState

from ..errors import Conflict, unknown_device
from . import postgres_blob_rows as blob_rows
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
from .group_records import GroupRecord, MembershipRule
from .postgres_engine import Conn, Tx

__all__ = [
    "DELIVERY_COLUMNS",
    "MESSAGE_COLUMNS",
    "apply_changes",
    "charge",
    "check_membership",
    "claim_message",
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
_MESSAGE_NAMES = [name.strip() for name in MESSAGE_COLUMNS.split(",")]
_DELIVERY_NAMES = [name.strip() for name in DELIVERY_COLUMNS.split(",")]
_MESSAGE_PLACES = ", ".join(f"${i + 1}" for i in range(len(_MESSAGE_NAMES)))
_DELIVERY_PLACES = ", ".join(f"${i + 1}" for i in range(len(_DELIVERY_NAMES)))
_MESSAGE_UPDATE = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(_MESSAGE_NAMES[1:]))
_DELIVERY_UPSERT = ", ".join(f"{name} = EXCLUDED.{name}" for name in _DELIVERY_NAMES[2:])
_GROUP_COLUMNS = "group_id, conversation_id, seq, head, created_at, updated_at"
_EVENT_LOCKS = 0x6532_6576  # advisory lock namespace (first key) of the per-device event locks


def to_message(row: asyncpg.Record) -> MessageRecord:
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


def to_delivery(row: asyncpg.Record) -> DeliveryRecord:
    values = tuple(row)
    return DeliveryRecord(
        values[0], values[1], values[2], values[3], bool(values[4]), DeviceState(values[5]),
        *values[6:],
    )  # fmt: skip


def delivery_row(d: DeliveryRecord) -> tuple[Any, ...]:
    return (
        d.message_id,
        d.device_id,
        d.user_id,
        d.wrap,
        d.own_device,
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


async def charge(conn: Conn, user_id: bytes, amount: int, quota: int | None) -> None:
    """Move the user's stored-bytes counter, refusing to pass ``quota`` (in this transaction).

    The user's row is locked before it is read, so two sends of one user
    cannot both see room for themselves.
    """
    if amount > 0 and quota is not None:
        used = await conn.fetchval(
            "SELECT stored_bytes FROM users WHERE user_id = $1 FOR UPDATE", user_id
        )
        used = int(used or 0)
        if used + amount > quota:
            raise QuotaExceeded(used, quota)
    if amount:
        await conn.execute(
            "UPDATE users SET stored_bytes = stored_bytes + $1 WHERE user_id = $2",
            amount,
            user_id,
        )


async def claim_message(conn: Conn, message: MessageRecord) -> bool:
    """Insert the message's row unless one with its id exists; whether it was inserted.

    A new send claims its id this way instead of looking it up first: under
    SERIALIZABLE a lookup of an id that is not there locks the index page it
    would be on, and concurrent sends insert into the same few pages, so
    sends of different messages conflicted with one another and retried
    (more than once a send on average).  The caller goes on with
    :func:`insert_message` (``claimed=True``); anything it raises rolls the
    row back with the rest of the transaction.
    """
    inserted = await conn.fetchval(
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_MESSAGE_PLACES}) "
        "ON CONFLICT (message_id) DO NOTHING RETURNING true",
        *message_row(message),
    )
    return bool(inserted)


async def insert_message(
    conn: Conn,
    message: MessageRecord,
    deliveries: list[DeliveryRecord],
    quota: int | None,
    claimed: bool = False,
) -> None:
    """Charge the sender, insert the message (unless ``claimed`` already) and its deliveries.

    A delivery to a device revoked since the send was checked (through a
    cache, before this transaction) is refused here: no wrap is ever stored
    for a revoked device.  SERIALIZABLE makes this read and a revocation's
    write of the same row conflict, so one of the two runs again after the
    other has committed.
    """
    if deliveries and await conn.fetchval(
        "SELECT count(*) FROM devices WHERE device_id = ANY($1::bytea[]) "
        "AND revoked_at IS NOT NULL",
        [d.device_id for d in deliveries],
    ):
        raise unknown_device()
    await charge(conn, message.sender, held(message), quota)
    if not claimed:
        await conn.execute(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_MESSAGE_PLACES})",
            *message_row(message),
        )
    if deliveries:
        await conn.executemany(
            f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES ({_DELIVERY_PLACES})",
            [delivery_row(d) for d in deliveries],
        )


async def insert_events(tx: Tx, events: list[NewEvent], now: int) -> list[EventRecord]:
    """Queue ``events`` in order; announce them to ``tx`` and return them with their seq.

    The per-device advisory locks (see the module docstring) are taken in a
    fixed order, so two transactions never wait for each other in a circle
    over them.
    """
    if not events:
        return []
    keys = sorted({int.from_bytes(e.device_id[:4], "big", signed=True) for e in events})
    await tx.conn.execute(
        "SELECT count(pg_advisory_xact_lock($1, k)) FROM "
        "(SELECT k FROM unnest($2::integer[]) AS k ORDER BY k) AS ordered",
        _EVENT_LOCKS,
        keys,
    )
    found = await tx.conn.fetch(
        "INSERT INTO events (device_id, kind, message_id, payload, created_at) "
        "SELECT device_id, kind, message_id, payload, $5 FROM "
        "unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[]) "
        "WITH ORDINALITY AS e(device_id, kind, message_id, payload, n) ORDER BY n "
        "RETURNING seq, device_id, kind, message_id, payload, created_at",
        [e.device_id for e in events],
        [str(e.kind) for e in events],
        [e.message_id for e in events],
        [e.payload for e in events],
        now,
    )
    written = sorted(
        (EventRecord(r[0], r[1], EventKind(r[2]), r[3], r[4], r[5]) for r in found),
        key=lambda event: event.seq,
    )
    tx.announce(written)
    return written


async def check_membership(conn: Conn, conversation_id: bytes, rule: MembershipRule | None) -> None:
    """Give ``rule`` the group row of ``conversation_id`` as this transaction sees it.

    ``FOR SHARE``: a membership change of the group waits for this send to
    commit (or this send for it), so the rule never judges a head that is
    being replaced.
    """
    if rule is None:
        return
    row = await conn.fetchrow(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE conversation_id = $1 FOR SHARE",
        conversation_id,
    )
    rule(GroupRecord(*row) if row else None)


async def read_view(
    conn: Conn, message_id: bytes, recalls_since: int | None, lock: bool = False
) -> MessageView | None:
    """Everything stored about one message; with ``lock``, its row stays locked to the commit."""
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = $1"
        + (" FOR UPDATE" if lock else ""),
        message_id,
    )
    if row is None:
        return None
    message = to_message(row)
    deliveries = tuple(
        to_delivery(r)
        for r in await conn.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id = $1 "
            "ORDER BY user_id, device_id",
            message_id,
        )
    )
    recalls = 0
    if recalls_since is not None:
        recalls = int(
            await conn.fetchval(
                "SELECT count(*) FROM messages "
                "WHERE conversation_id = $1 AND sender = $2 AND recalled_at >= $3",
                message.conversation_id,
                message.sender,
                recalls_since,
            )
        )
    files, downloads = await blob_rows.read_files(conn, message_id)
    return MessageView(message, deliveries, recalls, files, downloads)


async def apply_changes(
    conn: Conn, view: MessageView, changes: Changes, quota: int | None, bind: BindRule | None
) -> list[bytes]:
    """Write what a rule decided about one message (events aside); the blob ids destroyed."""
    message_id = view.message.message_id
    if changes.message is not None:
        freed = held(view.message) - held(changes.message)
        await charge(conn, view.message.sender, -freed, None)
        row = message_row(changes.message)
        await conn.execute(f"UPDATE messages SET {_MESSAGE_UPDATE} WHERE message_id = $1", *row)
    if changes.deliveries:
        await conn.executemany(
            f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES ({_DELIVERY_PLACES}) "
            f"ON CONFLICT (message_id, device_id) DO UPDATE SET {_DELIVERY_UPSERT}",
            [delivery_row(d) for d in changes.deliveries],
        )
    for new_message, new_deliveries in changes.new_messages:
        if await conn.fetchval(
            "SELECT 1 FROM messages WHERE message_id = $1", new_message.message_id
        ):
            raise Conflict("A message with that id already exists.", code="message_exists")
        await insert_message(conn, new_message, new_deliveries, quota)
        blob_ids = changes.new_blobs.get(new_message.message_id, ())
        await blob_rows.bind(conn, new_message.message_id, new_message.sender, blob_ids, bind)
    await blob_rows.record_downloads(conn, changes.blob_downloads)
    if changes.drop_notices:
        await conn.execute(
            "DELETE FROM events WHERE device_id = ANY($1::bytea[]) AND message_id = $2 "
            "AND kind = $3",
            list(changes.drop_notices),
            message_id,
            str(EventKind.MESSAGE),
        )
    return await blob_rows.destroy(conn, message_id) if changes.destroy_blobs else []
