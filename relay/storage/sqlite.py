"""The SQLite backend: the relay's default, embedded storage.

SQL for each store method; the engine (:mod:`.sqlite_engine`) supplies
durability, batching and the reader pool, and :mod:`.sqlite_rows` the row
conversions and the writes that keep the quota counter.  Rows are replaced
whole from the records the relay's rules return, so the rules stay free of SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from ..errors import Conflict, NotFound
from . import sqlite_blobs as blob_rows
from . import sqlite_rows as rows
from .base import (
    Changes,
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    EventListener,
    EventRecord,
    MessageRecord,
    MessageView,
    NewEvent,
    SessionRecord,
    StorageError,
    UserRecord,
)
from .blob_records import BindRule, BlobListener
from .group_records import MembershipRule
from .sqlite_blobs import SqliteBlobs
from .sqlite_devices import SqliteDevices
from .sqlite_engine import EngineObserver, SqliteEngine
from .sqlite_expiry import SqliteExpiry
from .sqlite_faults import Faults
from .sqlite_groups import SqliteGroups, check_membership
from .sqlite_wrap_keys import SqliteWrapKeys

__all__ = ["SqliteStorage"]

T = TypeVar("T")


class SqliteStorage(SqliteBlobs, SqliteGroups, SqliteDevices, SqliteWrapKeys, SqliteExpiry):
    """Every store on one SQLite database file (WAL, secure_delete, synchronous=FULL)."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], int] | None = None,
        observer: EngineObserver | None = None,
        scrub_interval: float = 60.0,
        faults: Faults | None = None,
    ) -> None:
        self.path = path
        self._engine = SqliteEngine(path, observer, scrub_interval, faults)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._listeners: list[EventListener] = []
        self._blob_listeners: list[BlobListener] = []

    announces_in_order = True  # one writer thread commits, then announces, in order

    def on_events(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _announce(self, events: list[EventRecord]) -> None:
        """After a commit: the events it queued, with their sequence numbers."""
        devices = {event.device_id for event in events}
        if devices:
            for listener in self._listeners:
                listener(devices, events)

    # other processes: one SQLite file serves one relay process -------------------------------
    async def signal(self, kind: str, values: list[bytes]) -> None:
        return None

    def on_signal(self, listener: Callable[[str, list[bytes]], None]) -> None:
        return None

    async def lead(self, job: int) -> bool:
        return True

    # lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        self._engine.start()

    async def close(self) -> None:
        self._engine.stop()

    async def scrub(self) -> float:
        return await self._engine.scrub()

    async def check(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
            problems += [
                f"foreign key violation in {row[0]}"
                for row in conn.execute("PRAGMA foreign_key_check")
            ]
            if problems:
                return problems  # the counters below mean nothing in a damaged file
            problems += [
                f"user {row[0].hex()[:16]}: the quota counter says {row[1]} bytes, "
                f"but their live messages hold {row[2]}"
                for row in conn.execute(
                    "SELECT user_id, stored_bytes, held FROM (SELECT user_id, stored_bytes, "
                    "(SELECT coalesce(sum(size), 0) FROM messages WHERE sender = user_id "
                    "AND state = 'live') AS held FROM users) WHERE stored_bytes <> held"
                )
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
            for table in ("users", "devices", "sessions", "events", "groups", "links"):
                counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for state, count in conn.execute("SELECT state, count(*) FROM messages GROUP BY state"):
                counts[f"messages_{state}"] = count
            counts["ciphertext_bytes"] = conn.execute(
                "SELECT coalesce(sum(stored_bytes), 0) FROM users"
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
                f"INSERT INTO devices ({rows.DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            found = conn.execute(
                f"SELECT {rows.DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id",
                (user_id,),
            )
            return [DeviceRecord(*row) for row in found]

        return await self._engine.read(run)

    async def get_device(self, device_id: bytes) -> DeviceRecord | None:
        def run(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                f"SELECT {rows.DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            return DeviceRecord(*row) if row else None

        return await self._engine.read(run)

    async def put_challenge(self, challenge: bytes, expires_at: int, limit: int) -> bool:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM challenges WHERE expires_at < ?", (now,))
            if conn.execute("SELECT count(*) FROM challenges").fetchone()[0] >= limit:
                return False
            conn.execute(
                "INSERT INTO challenges (challenge, expires_at) VALUES (?, ?)",
                (challenge, expires_at),
            )
            return True

        return await self._engine.write(run)

    async def forget_challenges(self, now: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM challenges WHERE expires_at < ?", (now,)).rowcount

        return await self._engine.write(run)

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
        self,
        message: MessageRecord,
        deliveries: list[DeliveryRecord],
        events: list[NewEvent],
        quota: int | None = None,
        blobs: tuple[bytes, ...] = (),
        bind: BindRule | None = None,
        membership: MembershipRule | None = None,
    ) -> MessageRecord:
        now = self._clock()

        written: list[EventRecord] = []

        def run(conn: sqlite3.Connection) -> MessageRecord:
            nonlocal written
            row = conn.execute(
                f"SELECT {rows.MESSAGE_COLUMNS} FROM messages WHERE message_id = ?",
                (message.message_id,),
            ).fetchone()
            if row is not None:
                return rows.to_message(row)
            check_membership(conn, message.conversation_id, membership)
            rows.insert_message(conn, message, deliveries, quota)
            blob_rows.bind(conn, message.message_id, message.sender, blobs, bind)
            written = rows.insert_events(conn, events, now)
            return message

        stored = await self._engine.write(run)
        if stored is message:
            self._announce(written)
        return stored

    async def get_message(self, message_id: bytes) -> MessageView | None:
        return await self._engine.read(lambda conn: rows.read_view(conn, message_id, None))

    async def change_message(
        self,
        message_id: bytes,
        decide: Callable[[MessageView], tuple[Changes, T]],
        recalls_since: int | None = None,
        quota: int | None = None,
        bind: BindRule | None = None,
        membership: MembershipRule | None = None,
    ) -> T:
        now = self._clock()
        purged = False
        written: list[EventRecord] = []
        destroyed: list[bytes] = []

        def run(conn: sqlite3.Connection) -> T:
            nonlocal purged, written, destroyed
            view = rows.read_view(conn, message_id, recalls_since)
            if view is None:
                raise NotFound("No such message.")
            changes, result = decide(view)
            for added, _ in changes.new_messages:
                check_membership(conn, added.conversation_id, membership)
            destroyed = rows.apply_changes(conn, view, changes, quota, bind)
            purged, written = changes.purge, rows.insert_events(conn, changes.events, now)
            return result

        result = await self._engine.write(run)
        if purged:
            self._engine.request_checkpoint()
        self._announce(written)
        self._destroyed(destroyed)
        return result

    async def messages_to_expire(self, received_before: int, limit: int) -> list[bytes]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            found = conn.execute(
                "SELECT message_id FROM messages WHERE state = 'live' AND received_at < ? LIMIT ?",
                (received_before, limit),
            )
            return [row[0] for row in found]

        return await self._engine.read(run)

    async def messages_to_complete(self, opened_before: int, limit: int) -> list[bytes]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            found = conn.execute(
                "SELECT message_id FROM messages WHERE state = 'live' "
                "AND all_opened_at IS NOT NULL AND all_opened_at < ? LIMIT ?",
                (opened_before, limit),
            )
            return [row[0] for row in found]

        return await self._engine.read(run)

    async def forget_tombstones(self, before: int) -> int:
        destroyed: list[bytes] = []

        def run(conn: sqlite3.Connection) -> int:
            nonlocal destroyed
            old = [
                row[0]
                for row in conn.execute(
                    "SELECT message_id FROM messages WHERE state <> 'live' AND received_at < ?",
                    (before,),
                )
            ]
            destroyed = blob_rows.forget(conn, old)
            conn.executemany("DELETE FROM deliveries WHERE message_id = ?", [(m,) for m in old])
            conn.executemany("DELETE FROM events WHERE message_id = ?", [(m,) for m in old])
            conn.executemany("DELETE FROM messages WHERE message_id = ?", [(m,) for m in old])
            conn.execute("DELETE FROM events WHERE created_at < ?", (before,))
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (before,))
            return len(old)

        forgotten = await self._engine.write(run)
        self._destroyed(destroyed)
        return forgotten

    async def stored_bytes(self, user_id: bytes) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT stored_bytes FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._engine.read(run)

    # events ---------------------------------------------------------------------------------
    async def events_since(self, device_id: bytes, after: int, limit: int) -> list[EventRecord]:
        def run(conn: sqlite3.Connection) -> list[EventRecord]:
            found = conn.execute(
                "SELECT seq, device_id, kind, message_id, payload, created_at FROM events "
                "WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after, limit),
            )
            return [EventRecord(r[0], r[1], EventKind(r[2]), r[3], r[4], r[5]) for r in found]

        return await self._engine.read(run)

    async def ack_events(self, acks: Mapping[bytes, int]) -> None:
        pairs = [(upto, device_id) for device_id, upto in acks.items()]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE devices SET acked_seq = max(acked_seq, ?) WHERE device_id = ?", pairs
            )
            conn.executemany("DELETE FROM events WHERE seq <= ? AND device_id = ?", pairs)

        await self._engine.write(run)
