"""The PostgreSQL backend's blob metadata: the store methods and the writes messages share.

As :mod:`.sqlite_blobs`: only facts about blobs are here, their bytes stay
in the blob store (a directory) exactly as with SQLite.  The functions
taking a connection run inside a transaction of the message store (binding
on send, destruction on recall, expiry and completion); the mixin's methods
are the blob store's own transactions.  Where SQLite's single writer
serialised a decision, the rows decided on are locked: the blobs being bound,
and the uploader's ``users`` row while their usage is summed for the quota.
Destroyed ids reach the blob listeners only after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .blob_records import BindRule, BlobListener, BlobRecord, BoundFile, CreateRule
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = [
    "PostgresBlobs",
    "bind",
    "destroy",
    "forget",
    "read_files",
    "record_downloads",
]

BLOB_COLUMNS = "blob_id, user_id, size, digest, created_at, completed_at, message_id"


def _to_blob(row: asyncpg.Record) -> BlobRecord:
    return BlobRecord(*row)


async def read_files(
    conn: Conn, message_id: bytes
) -> tuple[tuple[BoundFile, ...], frozenset[tuple[bytes, bytes]]]:
    """The message's bound files (with whether each still exists) and their downloads."""
    found = await conn.fetch(
        "SELECT f.blob_id, f.position, f.size, b.blob_id IS NOT NULL FROM message_files f "
        "LEFT JOIN blobs b ON b.blob_id = f.blob_id WHERE f.message_id = $1 "
        "ORDER BY f.position",
        message_id,
    )
    files = tuple(BoundFile(r[0], r[1], r[2], bool(r[3])) for r in found)
    if not files:
        return (), frozenset()
    downloads = await conn.fetch(
        "SELECT d.blob_id, d.device_id FROM blob_downloads d JOIN message_files f "
        "ON f.blob_id = d.blob_id WHERE f.message_id = $1",
        message_id,
    )
    return files, frozenset((r[0], r[1]) for r in downloads)


async def bind(
    conn: Conn,
    message_id: bytes,
    sender: bytes,
    blob_ids: Sequence[bytes],
    rule: BindRule | None,
) -> None:
    """Bind ``blob_ids`` to a new message, after ``rule`` accepted the rows as found.

    The rows are locked as they are read, so a concurrent bind of the same
    blob (another send, through another process) waits and then sees it bound.
    """
    if not blob_ids:
        return
    ids = list(blob_ids)
    rows = await conn.fetch(
        f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ANY($1::bytea[]) FOR UPDATE", ids
    )
    found = {row[0]: _to_blob(row) for row in rows}
    if rule is not None:
        rule(message_id, sender, blob_ids, found)
    await conn.execute(
        "UPDATE blobs SET message_id = $1 WHERE blob_id = ANY($2::bytea[])", message_id, ids
    )
    await conn.executemany(
        "INSERT INTO message_files (blob_id, message_id, position, size) VALUES ($1, $2, $3, $4)",
        [(b, message_id, i, found[b].size) for i, b in enumerate(ids)],
    )


async def destroy(conn: Conn, message_id: bytes) -> list[bytes]:
    """Delete the rows of the message's blobs and their downloads; the ids destroyed."""
    gone = await conn.fetch("DELETE FROM blobs WHERE message_id = $1 RETURNING blob_id", message_id)
    ids = [row[0] for row in gone]
    if ids:
        await conn.execute("DELETE FROM blob_downloads WHERE blob_id = ANY($1::bytea[])", ids)
    return ids


async def record_downloads(conn: Conn, items: Sequence[tuple[bytes, bytes, int]]) -> None:
    if items:
        await conn.executemany(
            "INSERT INTO blob_downloads (blob_id, device_id, downloaded_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            list(items),
        )


async def forget(conn: Conn, message_ids: Sequence[bytes]) -> list[bytes]:
    """With forgotten tombstones: their file records, and any blob row left (ids returned)."""
    if not message_ids:
        return []
    messages = list(message_ids)
    gone = await conn.fetch(
        "DELETE FROM blobs WHERE message_id = ANY($1::bytea[]) RETURNING blob_id", messages
    )
    ids = [row[0] for row in gone]
    if ids:
        await conn.execute("DELETE FROM blob_downloads WHERE blob_id = ANY($1::bytea[])", ids)
    await conn.execute("DELETE FROM message_files WHERE message_id = ANY($1::bytea[])", messages)
    return ids


class PostgresBlobs:
    """The blob metadata store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _blob_listeners: list[BlobListener]

    def on_blobs_destroyed(self, listener: BlobListener) -> None:
        self._blob_listeners.append(listener)

    def _destroyed(self, ids: list[bytes]) -> None:
        """After a commit that deleted blob rows: let the listeners unlink their files."""
        if ids:
            for listener in self._blob_listeners:
                listener(ids)

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
            return gone is not None

        discarded = await self._engine.write(run)
        if discarded:
            self._destroyed([blob_id])
        return discarded

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
            return [row[0] for row in gone]

        ids = await self._engine.write(run)
        self._destroyed(ids)
        return ids

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
