"""The PostgreSQL backend's wrapping keys: superseded certificates and pending wraps per key.

As :mod:`.sqlite_wrap_keys`; a rotation locks the device row it compares
with ``expected``, so of two racing rotations (through two relay processes)
the second sees the first's certificate and answers as SQLite would.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import Conflict, NotFound
from .postgres_engine import Conn, PostgresEngine, Tx
from .wrap_key_records import WrapKeyRecord

__all__ = ["PostgresWrapKeys"]

_COLUMNS = "device_id, key_id, certificate, created_at, usable_until, superseded_at"


class PostgresWrapKeys:
    """The wrap-key store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]

    async def previous_keys(self, device_id: bytes, now: int) -> list[WrapKeyRecord]:
        async def run(conn: Conn) -> list[WrapKeyRecord]:
            found = await conn.fetch(
                f"SELECT {_COLUMNS} FROM wrap_keys WHERE device_id = $1 AND usable_until > $2 "
                "ORDER BY created_at",
                device_id,
                now,
            )
            return [WrapKeyRecord(*row) for row in found]

        return await self._engine.read(run)

    async def rotate_certificate(
        self, device_id: bytes, expected: bytes, new: bytes, previous: WrapKeyRecord
    ) -> bool:
        now = self._clock()

        async def run(tx: Tx) -> bool:
            conn = tx.conn
            current = await conn.fetchrow(
                "SELECT certificate, user_id FROM devices WHERE device_id = $1 FOR UPDATE",
                device_id,
            )
            if current is None:
                raise NotFound("No such device.")
            if current[0] == new:
                return False
            if current[0] != expected:
                raise Conflict(
                    "The device's certificate changed meanwhile; try again.",
                    "certificate_changed",
                )
            await conn.execute(
                "UPDATE devices SET certificate = $1 WHERE device_id = $2", new, device_id
            )
            tx.signal("devices", [bytes(current[1]), device_id])
            await conn.execute(
                f"INSERT INTO wrap_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (device_id, key_id) DO UPDATE SET "
                "certificate = EXCLUDED.certificate, created_at = EXCLUDED.created_at, "
                "usable_until = EXCLUDED.usable_until, superseded_at = EXCLUDED.superseded_at",
                previous.device_id,
                previous.key_id,
                previous.certificate,
                previous.created_at,
                previous.usable_until,
                previous.superseded_at,
            )
            await conn.execute(
                "DELETE FROM wrap_keys WHERE device_id = $1 AND usable_until <= $2",
                device_id,
                now,
            )
            return True

        return await self._engine.write(run)

    async def pending_by_key(self, device_id: bytes) -> dict[bytes | None, int]:
        async def run(conn: Conn) -> dict[bytes | None, int]:
            found = await conn.fetch(
                "SELECT key_id, count(*) FROM deliveries WHERE device_id = $1 "
                "AND wrap IS NOT NULL GROUP BY key_id",
                device_id,
            )
            return {row[0]: row[1] for row in found}

        return await self._engine.read(run)
