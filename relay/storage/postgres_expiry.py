"""The PostgreSQL backend's side of the timer job: what is due, and many changes in one write.

As on SQLite (:mod:`.sqlite_expiry`), a batch of due messages is read,
decided and written in one transaction, one commit for the lot, with a
savepoint per message: a rule that raises for one message, or a database
error on its rows, rolls back that message alone.  What a rolled-back
message would have announced is discarded with it; only the committed
messages' events, destroyed blobs and VACUUM request leave the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg

from ..errors import NotFound
from . import postgres_rows as rows
from .base import Changes, EventRecord, MessageView, StorageError
from .blob_records import BlobListener
from .postgres_engine import Conn, PostgresEngine, Tx
from .postgres_messages import blobs_destroyed

__all__ = ["PostgresExpiry"]

T = TypeVar("T")
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


class PostgresExpiry:
    """The timer queries and batched changes of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]
    _blob_listeners: list[BlobListener]

    async def copies_to_expire(self, now: int, limit: int) -> list[bytes]:
        async def run(conn: Conn) -> list[bytes]:
            found = await conn.fetch(
                "SELECT DISTINCT message_id FROM deliveries WHERE expires_at IS NOT NULL "
                "AND expired_at IS NULL AND expires_at <= $1 LIMIT $2",
                now,
                limit,
            )
            return [bytes(row[0]) for row in found]

        return await self._engine.read(run)

    async def next_expiry(self) -> int | None:
        async def run(conn: Conn) -> int | None:
            found = await conn.fetchval(
                "SELECT min(expires_at) FROM deliveries "
                "WHERE expires_at IS NOT NULL AND expired_at IS NULL"
            )
            return None if found is None else int(found)

        return await self._engine.read(run)

    async def message_senders(self, message_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        async def run(conn: Conn) -> dict[bytes, bytes]:
            found = await conn.fetch(
                "SELECT message_id, sender FROM messages WHERE message_id = ANY($1::bytea[])",
                list(message_ids),
            )
            return {bytes(row[0]): bytes(row[1]) for row in found}

        if not message_ids:
            return {}
        return await self._engine.read(run)

    async def change_messages(
        self,
        message_ids: Sequence[bytes],
        decide: Callable[[MessageView], tuple[Changes, T]],
    ) -> list[T | Exception]:
        now = self._clock()

        async def one(tx: Tx, message_id: bytes) -> tuple[T, bool, list[EventRecord], list[bytes]]:
            view = await rows.read_view(tx.conn, message_id, None, lock=True)
            if view is None:
                raise NotFound("No such message.")
            changes, result = decide(view)
            gone = await rows.apply_changes(tx.conn, view, changes, None, None)
            # Queued on a scratch transaction view: announced only if this savepoint holds.
            scratch = Tx(tx.conn)
            events = await rows.insert_events(scratch, changes.events, now)
            return result, changes.purge, events, gone

        async def run(tx: Tx) -> list[T | Exception]:
            outcomes: list[T | Exception] = []
            purged = False
            destroyed: list[bytes] = []
            for message_id in message_ids:
                try:
                    async with tx.savepoint():
                        result, purge, events, gone = await one(tx, message_id)
                except _RETRYABLE:
                    raise  # the whole transaction must run again; the engine does that
                except asyncpg.PostgresError as exc:
                    outcomes.append(
                        StorageError(f"PostgreSQL failed on this message ({exc.sqlstate})")
                    )
                    continue
                except Exception as exc:  # handed back to the caller, for this message alone
                    outcomes.append(exc)
                    continue
                outcomes.append(result)
                purged = purged or purge
                tx.announce(events)
                destroyed.extend(gone)
            if purged:
                tx.after_commit(self._engine.request_checkpoint)
            blobs_destroyed(tx, self._blob_listeners, destroyed)
            return outcomes

        if not message_ids:
            return []
        return await self._engine.write(run)
