"""Blob rows as the PostgreSQL message store touches them, inside its own transactions.

A send binds its blobs, a recall or expiry destroys them, a fetch records
downloads and the tombstone sweep forgets their file records -- each in the
transaction that changes the message, as :mod:`.sqlite_blobs`' functions do
on SQLite.  The blob store's own methods (create, complete, discard...) are
a separate mixin; these functions are only the writes the two share.
"""

from __future__ import annotations

from collections.abc import Sequence

from .blob_records import BindRule, BlobRecord, BoundFile
from .postgres_engine import Conn

__all__ = ["BLOB_COLUMNS", "bind", "destroy", "forget", "read_files", "record_downloads"]

BLOB_COLUMNS = "blob_id, user_id, size, digest, created_at, completed_at, message_id"


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
    if not found:
        return (), frozenset()
    files = tuple(BoundFile(row[0], row[1], row[2], bool(row[3])) for row in found)
    downloads = frozenset(
        (row[0], row[1])
        for row in await conn.fetch(
            "SELECT d.blob_id, d.device_id FROM blob_downloads d JOIN message_files f "
            "ON f.blob_id = d.blob_id WHERE f.message_id = $1",
            message_id,
        )
    )
    return files, downloads


async def bind(
    conn: Conn,
    message_id: bytes,
    sender: bytes,
    blob_ids: Sequence[bytes],
    rule: BindRule | None,
) -> None:
    """Bind ``blob_ids`` to a new message, after ``rule`` accepted the rows as found.

    The rows are locked, so an upload expiring or being discarded meanwhile
    waits for this transaction (and then finds the blob bound).
    """
    if not blob_ids:
        return
    found = {
        bytes(row[0]): BlobRecord(*row)
        for row in await conn.fetch(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ANY($1::bytea[]) FOR UPDATE",
            list(blob_ids),
        )
    }
    if rule is not None:
        rule(message_id, sender, blob_ids, found)
    await conn.execute(
        "UPDATE blobs SET message_id = $1 WHERE blob_id = ANY($2::bytea[])",
        message_id,
        list(blob_ids),
    )
    await conn.executemany(
        "INSERT INTO message_files (blob_id, message_id, position, size) VALUES ($1, $2, $3, $4)",
        [(b, message_id, i, found[b].size) for i, b in enumerate(blob_ids)],
    )


async def destroy(conn: Conn, message_id: bytes) -> list[bytes]:
    """Delete the rows of the message's blobs and their downloads; the ids destroyed."""
    ids = [
        bytes(row[0])
        for row in await conn.fetch(
            "DELETE FROM blobs WHERE message_id = $1 RETURNING blob_id", message_id
        )
    ]
    if ids:
        await conn.execute("DELETE FROM blob_downloads WHERE blob_id = ANY($1::bytea[])", ids)
    return ids


async def record_downloads(conn: Conn, items: Sequence[tuple[bytes, bytes, int]]) -> None:
    if items:
        await conn.executemany(
            "INSERT INTO blob_downloads (blob_id, device_id, downloaded_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            items,
        )


async def forget(conn: Conn, message_ids: Sequence[bytes]) -> list[bytes]:
    """With forgotten tombstones: their file records, and any blob row left (ids returned)."""
    if not message_ids:
        return []
    ids = [
        bytes(row[0])
        for row in await conn.fetch(
            "DELETE FROM blobs WHERE message_id = ANY($1::bytea[]) RETURNING blob_id",
            list(message_ids),
        )
    ]
    if ids:
        await conn.execute("DELETE FROM blob_downloads WHERE blob_id = ANY($1::bytea[])", ids)
    await conn.execute(
        "DELETE FROM message_files WHERE message_id = ANY($1::bytea[])", list(message_ids)
    )
    return ids
