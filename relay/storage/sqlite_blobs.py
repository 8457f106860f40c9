"""The SQLite backend's blob metadata: the store methods and the writes messages share.

Only facts about blobs are here (uploader, declared length, digest, state,
binding, downloads); their bytes are in the blob store.  The functions
taking a connection run inside a transaction of the message store (binding
on send, destruction on recall, expiry and completion); the mixin's methods
are the blob store's own transactions.  Rows are deleted, never kept
half-alive: a destroyed blob has no row, only its content-free
``message_files`` record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .blob_records import BindRule, BlobListener, BlobRecord, BoundFile, CreateRule
from .sqlite_engine import SqliteEngine

__all__ = [
    "SqliteBlobs",
    "bind",
    "destroy",
    "forget",
    "read_files",
    "record_downloads",
]

BLOB_COLUMNS = "blob_id, user_id, size, digest, created_at, completed_at, message_id"
_BATCH = 500


def _to_blob(row: Sequence[Any]) -> BlobRecord:
    return BlobRecord(*row)


def read_files(
    conn: sqlite3.Connection, message_id: bytes
) -> tuple[tuple[BoundFile, ...], frozenset[tuple[bytes, bytes]]]:
    """The message's bound files (with whether each still exists) and their downloads."""
    files = tuple(
        BoundFile(row[0], row[1], row[2], bool(row[3]))
        for row in conn.execute(
            "SELECT f.blob_id, f.position, f.size, b.blob_id IS NOT NULL FROM message_files f "
            "LEFT JOIN blobs b ON b.blob_id = f.blob_id WHERE f.message_id = ? "
            "ORDER BY f.position",
            (message_id,),
        )
    )
    if not files:
        return (), frozenset()
    downloads = frozenset(
        (row[0], row[1])
        for row in conn.execute(
            "SELECT d.blob_id, d.device_id FROM blob_downloads d JOIN message_files f "
            "ON f.blob_id = d.blob_id WHERE f.message_id = ?",
            (message_id,),
        )
    )
    return files, downloads


def bind(
    conn: sqlite3.Connection,
    message_id: bytes,
    sender: bytes,
    blob_ids: Sequence[bytes],
    rule: BindRule | None,
) -> None:
    """Bind ``blob_ids`` to a new message, after ``rule`` accepted the rows as found."""
    if not blob_ids:
        return
    found = {}
    for blob_id in blob_ids:
        row = conn.execute(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ?", (blob_id,)
        ).fetchone()
        if row is not None:
            found[blob_id] = _to_blob(row)
    if rule is not None:
        rule(message_id, sender, blob_ids, found)
    conn.executemany(
        "UPDATE blobs SET message_id = ? WHERE blob_id = ?", [(message_id, b) for b in blob_ids]
    )
    conn.executemany(
        "INSERT INTO message_files (blob_id, message_id, position, size) VALUES (?, ?, ?, ?)",
        [(b, message_id, i, found[b].size) for i, b in enumerate(blob_ids)],
    )


def destroy(conn: sqlite3.Connection, message_id: bytes) -> list[bytes]:
    """Delete the rows of the message's blobs and their downloads; the ids destroyed."""
    ids = [
        row[0]
        for row in conn.execute("SELECT blob_id FROM blobs WHERE message_id = ?", (message_id,))
    ]
    conn.executemany("DELETE FROM blob_downloads WHERE blob_id = ?", [(b,) for b in ids])
    conn.executemany("DELETE FROM blobs WHERE blob_id = ?", [(b,) for b in ids])
    return ids


def record_downloads(conn: sqlite3.Connection, items: Sequence[tuple[bytes, bytes, int]]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO blob_downloads (blob_id, device_id, downloaded_at) VALUES (?, ?, ?)",
        items,
    )


def forget(conn: sqlite3.Connection, message_ids: Sequence[bytes]) -> list[bytes]:
    """With forgotten tombstones: their file records, and any blob row left (ids returned)."""
    ids: list[bytes] = []
    for message_id in message_ids:
        ids += destroy(conn, message_id)
    conn.executemany("DELETE FROM message_files WHERE message_id = ?", [(m,) for m in message_ids])
    return ids


class SqliteBlobs:
    """The blob metadata store of :class:`~relay.storage.sqlite.SqliteStorage`."""

    _engine: SqliteEngine
    _blob_listeners: list[BlobListener]

    def on_blobs_destroyed(self, listener: BlobListener) -> None:
        self._blob_listeners.append(listener)

    def _destroyed(self, ids: list[bytes]) -> None:
        if ids:
            for listener in self._blob_listeners:
                listener(ids)

    async def create_blob(self, blob: BlobRecord, rule: CreateRule) -> tuple[BlobRecord, bool]:
        def run(conn: sqlite3.Connection) -> tuple[BlobRecord, bool]:
            row = conn.execute(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ?", (blob.blob_id,)
            ).fetchone()
            used = conn.execute(
                "SELECT coalesce(sum(size), 0) FROM blobs WHERE user_id = ?", (blob.user_id,)
            ).fetchone()[0]
            record, created = rule(_to_blob(row) if row else None, int(used))
            if created:
                conn.execute(
                    f"INSERT INTO blobs ({BLOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.blob_id,
                        record.user_id,
                        record.size,
                        record.digest,
                        record.created_at,
                        record.completed_at,
                        record.message_id,
                    ),
                )
            return record, created

        return await self._engine.write(run)

    async def get_blob(self, blob_id: bytes) -> BlobRecord | None:
        def run(conn: sqlite3.Connection) -> BlobRecord | None:
            row = conn.execute(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ?", (blob_id,)
            ).fetchone()
            return _to_blob(row) if row else None

        return await self._engine.read(run)

    async def complete_blob(self, blob_id: bytes, at: int) -> BlobRecord | None:
        def run(conn: sqlite3.Connection) -> BlobRecord | None:
            conn.execute(
                "UPDATE blobs SET completed_at = ? WHERE blob_id = ? AND completed_at IS NULL",
                (at, blob_id),
            )
            row = conn.execute(
                f"SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ?", (blob_id,)
            ).fetchone()
            return _to_blob(row) if row else None

        return await self._engine.write(run)

    async def discard_blob(self, blob_id: bytes) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM blobs WHERE blob_id = ? AND message_id IS NULL", (blob_id,)
            )
            return cursor.rowcount == 1

        discarded = await self._engine.write(run)
        if discarded:
            self._destroyed([blob_id])
        return discarded

    async def expire_uploads(self, created_before: int, limit: int) -> list[bytes]:
        def run(conn: sqlite3.Connection) -> list[bytes]:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT blob_id FROM blobs WHERE message_id IS NULL AND created_at < ? LIMIT ?",
                    (created_before, limit),
                )
            ]
            conn.executemany("DELETE FROM blobs WHERE blob_id = ?", [(b,) for b in ids])
            return ids

        ids = await self._engine.write(run)
        self._destroyed(ids)
        return ids

    async def known_blobs(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        def run(conn: sqlite3.Connection) -> set[bytes]:
            known: set[bytes] = set()
            for start in range(0, len(blob_ids), _BATCH):
                part = list(blob_ids[start : start + _BATCH])
                places = ", ".join("?" * len(part))
                known |= {
                    row[0]
                    for row in conn.execute(
                        f"SELECT blob_id FROM blobs WHERE blob_id IN ({places})", part
                    )
                }
            return known

        return await self._engine.read(run)

    async def message_of_blob(self, blob_id: bytes) -> bytes | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT message_id FROM message_files WHERE blob_id = ?", (blob_id,)
            ).fetchone()
            return bytes(row[0]) if row else None

        return await self._engine.read(run)
