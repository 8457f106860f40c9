"""The SQLite backend's wrapping keys: superseded certificates and pending wraps per key."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import Conflict, NotFound
from .sqlite_engine import SqliteEngine
from .wrap_key_records import WrapKeyRecord

__all__ = ["SqliteWrapKeys"]

_COLUMNS = "device_id, key_id, certificate, created_at, usable_until, superseded_at"


class SqliteWrapKeys:
    """The wrap-key store of :class:`~relay.storage.sqlite.SqliteStorage`."""

    _engine: SqliteEngine
    _clock: Callable[[], int]

    async def previous_keys(self, device_id: bytes, now: int) -> list[WrapKeyRecord]:
        def run(conn: sqlite3.Connection) -> list[WrapKeyRecord]:
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM wrap_keys WHERE device_id = ? AND usable_until > ? "
                "ORDER BY created_at",
                (device_id, now),
            )
            return [WrapKeyRecord(*row) for row in found]

        return await self._engine.read(run)

    async def rotate_certificate(
        self, device_id: bytes, expected: bytes, new: bytes, previous: WrapKeyRecord
    ) -> bool:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT certificate FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if row is None:
                raise NotFound("No such device.")
            if bytes(row[0]) == new:
                return False
            if bytes(row[0]) != expected:
                raise Conflict(
                    "The device's certificate changed meanwhile; try again.",
                    "certificate_changed",
                )
            conn.execute("UPDATE devices SET certificate = ? WHERE device_id = ?", (new, device_id))
            conn.execute(
                f"REPLACE INTO wrap_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    previous.device_id,
                    previous.key_id,
                    previous.certificate,
                    previous.created_at,
                    previous.usable_until,
                    previous.superseded_at,
                ),
            )
            conn.execute(
                "DELETE FROM wrap_keys WHERE device_id = ? AND usable_until <= ?",
                (device_id, now),
            )
            return True

        return await self._engine.write(run)

    async def pending_by_key(self, device_id: bytes) -> dict[bytes | None, int]:
        def run(conn: sqlite3.Connection) -> dict[bytes | None, int]:
            found = conn.execute(
                "SELECT key_id, count(*) FROM deliveries WHERE device_id = ? "
                "AND wrap IS NOT NULL GROUP BY key_id",
                (device_id,),
            )
            return {(None if k is None else bytes(k)): n for k, n in found}

        return await self._engine.read(run)
