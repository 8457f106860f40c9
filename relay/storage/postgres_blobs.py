"""The PostgreSQL backend's blob metadata store: uploads, completion, discard, expiry.

As :mod:`.sqlite_blobs`: only facts about blobs are here, their bytes stay
in the blob store (a directory) exactly as with SQLite.  The writes a
message's transaction makes to blob rows (bind, destroy, downloads, forget)
are :mod:`.postgres_blob_rows`; these are the blob store's own transactions.
Where SQLite's single writer serialised a decision, the row decided on is
locked: the uploader's ``users`` row while their usage is summed for the
quota, and an expiring upload skips rows a send is binding.  Destroyed ids
reach the blob listeners only after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .blob_records import BlobListener, BlobRecord, CreateRule
from .postgres_blob_rows import BLOB_COLUMNS
from .postgres_engine import Conn, PostgresEngine, Tx
from .postgres_messages import blobs_destroyed

__all__ = ["PostgresBlobs"]


def _to_blob(row: asyncpg.Record) -> BlobRecord:
    return BlobRecord(*row)


class PostgresBlobs:
    """The blob metadata store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _blob_listeners: list[BlobListener]

    def on_blobs_destroyed(self, listener: BlobListener) -> None:
        self._blob_listeners.append(listener)

    async def create_blob(self, blob: BlobRecord, rule: CreateRule) -> tuple[BlobRecord, bool]:
        async def run(tx: Tx) -> tuple[BlobRecord, bool]:
            conn = tx.conn
            # One create per uploader at a time, so two cannot pass the quota together.
            await conn.execute(
                "SELECT 1 FROM users WHERE user_id = $1 FOR NO KEY UPDATE", blob.user_id
            )
            row = await conn.fetchrow(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = $1", blob.blob_id
            )
            used = await conn.fetchval(
                "SELECT coalesce(sum(size), 0) FROM blobs WHERE user_id = $1", blob.user_id
            )
            record, created = rule(_to_blob(row) if row else None, int(used))
            if created:
                await conn.execute(
                    f"INSERT INTO blobs ({BLOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    record.blob_id,
                    record.user_id,
                    record.size,
                    record.digest,
                    record.created_at,
                    record.completed_at,
                    record.message_id,
                )
            return record, created

        return await self._engine.write(run)

    async def get_blob(self, blob_id: bytes) -> BlobRecord | None:
        async def run(conn: Conn) -> BlobRecord | None:
            row = await conn.fetchrow(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = $1", blob_id
            )
            return _to_blob(row) if row else None

        return await self._engine.read(run)

    async def complete_blob(self, blob_id: bytes, at: int) -> BlobRecord | None:
        async def run(tx: Tx) -> BlobRecord | None:
            await tx.conn.execute(
                "UPDATE blobs SET completed_at = $1 WHERE blob_id = $2 AND completed_at IS NULL",
                at,
                blob_id,
            )
            row = await tx.conn.fetchrow(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = $1", blob_id
            )
            return _to_blob(row) if row else None

        return await self._engine.write(run)

    async def discard_blob(self, blob_id: bytes) -> bool:
        async def run(tx: Tx) -> bool:
            gone = await tx.conn.fetchval(
                "DELETE FROM blobs WHERE blob_id = $1 AND message_id IS NULL RETURNING 1", blob_id
            )
            if gone is None:
                return False
            blobs_destroyed(tx, self._blob_listeners, [blob_id])
            return True

        return await self._engine.write(run)

    async def expire_uploads(self, created_before: int, limit: int) -> list[bytes]:
        async def run(tx: Tx) -> list[bytes]:
            # SKIP LOCKED: a row a send is binding right now is not this sweep's to take.
            gone = await tx.conn.fetch(
                "DELETE FROM blobs WHERE blob_id IN (SELECT blob_id FROM blobs "
                "WHERE message_id IS NULL AND created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) "
                "RETURNING blob_id",
                created_before,
                limit,
            )
            ids = [row[0] for row in gone]
            blobs_destroyed(tx, self._blob_listeners, ids)
            return ids

        return await self._engine.write(run)

    async def known_blobs(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        async def run(conn: Conn) -> set[bytes]:
            found = await conn.fetch(
                "SELECT blob_id FROM blobs WHERE blob_id = ANY($1::bytea[])", list(blob_ids)
            )
            return {row[0] for row in found}

        if not blob_ids:
            return set()
        return await self._engine.read(run)

    async def message_of_blob(self, blob_id: bytes) -> bytes | None:
        async def run(conn: Conn) -> bytes | None:
            found: bytes | None = await conn.fetchval(
                "SELECT message_id FROM message_files WHERE blob_id = $1", blob_id
            )
            return found

        return await self._engine.read(run)
