"""The SQLite backend: the relay's default, embedded storage.

SQL for each store method; the engine (:mod:`.sqlite_engine`) supplies
durability, batching and the reader pool.  Rows are replaced whole from the
records the relay's rules return, so the rules stay free of SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from e2e_recall.report import DeviceState

from ..errors import Conflict, NotFound
from .base import (
    Changes,
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    EventRecord,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    SessionRecord,
    StorageError,
    UserRecord,
)
from .sqlite_engine import SqliteEngine

__all__ = ["SqliteStorage"]

T = TypeVar("T")

_MESSAGE_COLUMNS = (
    "message_id, conversation_id, sender, sender_device, header, envelope, size, sent_at, "
    "received_at, state, first_opened_at, recalled_at, revocation, purge_receipt"
)
_DELIVERY_COLUMNS = (
    "message_id, device_id, user_id, wrap, own_device, state, fetched_at, key_released_at, "
    "recalled_at, deleted_at, receipt"
)
_MESSAGE_UPDATE = ", ".join(f"{name.strip()} = ?" for name in _MESSAGE_COLUMNS.split(",")[1:])
_DEVICE_COLUMNS = "device_id, user_id, certificate, signing_key, created_at, revoked_at, acked_seq"


def _message(row: Sequence[Any]) -> MessageRecord:
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
    )


def _message_row(m: MessageRecord) -> tuple[Any, ...]:
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
    )


def _delivery(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        row[0], row[1], row[2], row[3], bool(row[4]), DeviceState(row[5]), *row[6:]
    )


def _delivery_row(d: DeliveryRecord) -> tuple[Any, ...]:
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
    )


def _insert_message(
    conn: sqlite3.Connection, message: MessageRecord, deliveries: list[DeliveryRecord]
) -> None:
    conn.execute(
        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 14)})",
        _message_row(message),
    )
    conn.executemany(
        f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES ({', '.join('?' * 11)})",
        [_delivery_row(d) for d in deliveries],
    )


def _insert_events(conn: sqlite3.Connection, events: list[NewEvent], now: int) -> None:
    conn.executemany(
        "INSERT INTO events (device_id, kind, message_id, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(e.device_id, str(e.kind), e.message_id, e.payload, now) for e in events],
    )


def _view(
    conn: sqlite3.Connection, message_id: bytes, recalls_since: int | None
) -> MessageView | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return None
    message = _message(row)
    deliveries = tuple(
        _delivery(r)
        for r in conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ? "
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
    return MessageView(message, deliveries, recalls)


class SqliteStorage:
    """All three stores on one SQLite database file (WAL, secure_delete, synchronous=FULL)."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], int] | None = None,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self.path = path
        self._engine = SqliteEngine(path, on_commit)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._listeners: list[Callable[[set[bytes]], None]] = []

    def on_events(self, listener: Callable[[set[bytes]], None]) -> None:
        self._listeners.append(listener)

    def _announce(self, events: list[NewEvent]) -> None:
        devices = {event.device_id for event in events}
        if devices:
            for listener in self._listeners:
                listener(devices)

    # lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        self._engine.start()

    async def close(self) -> None:
        self._engine.stop()

    async def check(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
            problems += [
                f"foreign key violation in {row[0]}"
                for row in conn.execute("PRAGMA foreign_key_check")
            ]
            return problems

        return await self._engine.read(run)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._engine.read(lambda conn: conn.execute("SELECT 1").fetchone())
        return time.perf_counter() - started

    async def stats(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for table in ("users", "devices", "sessions", "events"):
                counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for state, count in conn.execute("SELECT state, count(*) FROM messages GROUP BY state"):
                counts[f"messages_{state}"] = count
            counts["ciphertext_bytes"] = conn.execute(
                "SELECT coalesce(sum(length(envelope)), 0) FROM messages"
            ).fetchone()[0]
            return counts

        return await self._engine.read(run)

    async def checkpoint(self) -> None:
        if not await self._engine.checkpoint():
            raise StorageError("the WAL could not be truncated: readers kept it busy")

    # accounts -------------------------------------------------------------------------------
    async def add_device(self, user: UserRecord, device: DeviceRecord) -> None:
        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT identity_key, handle FROM users WHERE user_id = ?", (user.user_id,)
            ).fetchone()
            if row is None:
                if (
                    user.handle
                    and conn.execute(
                        "SELECT 1 FROM users WHERE handle = ?", (user.handle,)
                    ).fetchone()
                ):
                    raise Conflict("That handle is taken.", code="handle_taken")
                conn.execute(
                    "INSERT INTO users (user_id, identity_key, handle, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (user.user_id, user.identity_key, user.handle, user.created_at),
                )
            elif row[0] != user.identity_key:
                raise Conflict(
                    "That user id is registered with another identity key.",
                    code="identity_mismatch",
                )
            if conn.execute(
                "SELECT 1 FROM devices WHERE device_id = ?", (device.device_id,)
            ).fetchone():
                raise Conflict("That device is already registered.", code="device_exists")
            conn.execute(
                f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    device.device_id,
                    device.user_id,
                    device.certificate,
                    device.signing_key,
                    device.created_at,
                    device.revoked_at,
                    device.acked_seq,
                ),
            )

        await self._engine.write(run)

    async def get_user(
        self, user_id: bytes | None = None, handle: str | None = None
    ) -> UserRecord | None:
        def run(conn: sqlite3.Connection) -> UserRecord | None:
            column, value = ("user_id", user_id) if user_id is not None else ("handle", handle)
            row = conn.execute(
                f"SELECT user_id, identity_key, handle, created_at FROM users WHERE {column} = ?",
                (value,),
            ).fetchone()
            return UserRecord(*row) if row else None

        return await self._engine.read(run)

    async def release_handle(self, handle: str) -> bytes | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT user_id FROM users WHERE handle = ?", (handle,)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE users SET handle = NULL WHERE user_id = ?", (row[0],))
            return bytes(row[0])

        return await self._engine.write(run)

    async def get_devices(self, user_id: bytes) -> list[DeviceRecord]:
        def run(conn: sqlite3.Connection) -> list[DeviceRecord]:
            rows = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id",
                (user_id,),
            )
            return [DeviceRecord(*row) for row in rows]

        return await self._engine.read(run)

    async def get_device(self, device_id: bytes) -> DeviceRecord | None:
        def run(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            return DeviceRecord(*row) if row else None

        return await self._engine.read(run)

    async def put_challenge(self, challenge: bytes, expires_at: int) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM challenges WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO challenges (challenge, expires_at) VALUES (?, ?)",
                (challenge, expires_at),
            )

        await self._engine.write(run)

    async def take_challenge(self, challenge: bytes, now: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM challenges WHERE challenge = ? AND expires_at >= ?", (challenge, now)
            )
            return cursor.rowcount == 1

        return await self._engine.write(run)

    async def put_session(self, session: SessionRecord) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (session.created_at,))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, device_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    session.token_hash,
                    session.user_id,
                    session.device_id,
                    session.created_at,
                    session.expires_at,
                ),
            )

        await self._engine.write(run)

    async def get_session(self, token_hash: bytes) -> SessionRecord | None:
        def run(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(
                "SELECT token_hash, user_id, device_id, created_at, expires_at "
                "FROM sessions WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            return SessionRecord(*row) if row else None

        return await self._engine.read(run)

    async def delete_session(self, token_hash: bytes) -> None:
        await self._engine.write(
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        )

    # messages -------------------------------------------------------------------------------
    async def insert_message(
        self, message: MessageRecord, deliveries: list[DeliveryRecord], events: list[NewEvent]
    ) -> MessageRecord:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> MessageRecord:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?",
                (message.message_id,),
            ).fetchone()
            if row is not None:
                return _message(row)
            _insert_message(conn, message, deliveries)
            _insert_events(conn, events, now)
            return message

        stored = await self._engine.write(run)
        if stored is message:
            self._announce(events)
        return stored

    async def get_message(self, message_id: bytes) -> MessageView | None:
        return await self._engine.read(lambda conn: _view(conn, message_id, None))

    async def change_message(
        self,
        message_id: bytes,
        decide: Callable[[MessageView], tuple[Changes, T]],
        recalls_since: int | None = None,
    ) -> T:
        now = self._clock()
        purged = False
        written: list[NewEvent] = []

        def run(conn: sqlite3.Connection) -> T:
            nonlocal purged, written
            view = _view(conn, message_id, recalls_since)
            if view is None:
                raise NotFound("No such message.")
            changes, result = decide(view)
            if changes.message is not None:
                row = _message_row(changes.message)
                conn.execute(
                    f"UPDATE messages SET {_MESSAGE_UPDATE} WHERE message_id = ?",
                    (*row[1:], row[0]),
                )
            conn.executemany(
                f"REPLACE INTO deliveries ({_DELIVERY_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                [_delivery_row(d) for d in changes.deliveries],
            )
            for new_message, new_deliveries in changes.new_messages:
                if conn.execute(
                    "SELECT 1 FROM messages WHERE message_id = ?", (new_message.message_id,)
                ).fetchone():
                    raise Conflict("A message with that id already exists.", code="message_exists")
                _insert_message(conn, new_message, new_deliveries)
            conn.executemany(
                "DELETE FROM events WHERE device_id = ? AND message_id = ? AND kind = ?",
                [
                    (device_id, message_id, str(EventKind.MESSAGE))
                    for device_id in changes.drop_notices
                ],
            )
            _insert_events(conn, changes.events, now)
            purged, written = changes.purge, changes.events
            return result

        result = await self._engine.write(run)
        if purged:
            self._engine.request_checkpoint()
        self._announce(written)
        return result

    async def messages_to_expire(self, received_before: int, limit: int) -> list[bytes]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT message_id FROM messages WHERE state = 'live' AND received_at < ? LIMIT ?",
                (received_before, limit),
            )
            return [row[0] for row in rows]

        return await self._engine.read(run)

    async def forget_tombstones(self, before: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            old = [
                row[0]
                for row in conn.execute(
                    "SELECT message_id FROM messages WHERE state <> 'live' AND received_at < ?",
                    (before,),
                )
            ]
            conn.executemany("DELETE FROM deliveries WHERE message_id = ?", [(m,) for m in old])
            conn.executemany("DELETE FROM events WHERE message_id = ?", [(m,) for m in old])
            conn.executemany("DELETE FROM messages WHERE message_id = ?", [(m,) for m in old])
            conn.execute("DELETE FROM events WHERE created_at < ?", (before,))
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (before,))
            return len(old)

        return await self._engine.write(run)

    async def stored_bytes(self, user_id: bytes) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT coalesce(sum(size), 0) FROM messages WHERE sender = ? AND state = 'live'",
                (user_id,),
            ).fetchone()
            return int(row[0])

        return await self._engine.read(run)

    # events ---------------------------------------------------------------------------------
    async def events_since(self, device_id: bytes, after: int, limit: int) -> list[EventRecord]:
        def run(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT seq, device_id, kind, message_id, payload, created_at FROM events "
                "WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after, limit),
            )
            return [EventRecord(r[0], r[1], EventKind(r[2]), r[3], r[4], r[5]) for r in rows]

        return await self._engine.read(run)

    async def ack_events(self, device_id: bytes, upto: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE devices SET acked_seq = max(acked_seq, ?) WHERE device_id = ?",
                (upto, device_id),
            )
            conn.execute("DELETE FROM events WHERE device_id = ? AND seq <= ?", (device_id, upto))

        await self._engine.write(run)
