"""The PostgreSQL backend's messages: store, read, change, and the sweeps of old ones.

Each method is one transaction of the engine, mirroring the SQLite
backend's message methods (:mod:`.sqlite`): the existing-id check, the
group membership rule, the quota and the blob binding of a send are read
and decided in the transaction that writes it; a recall's purge of the
ciphertext, the wraps and the blob rows commits with its tombstone, or not
at all.  Whatever must be told to others (events, destroyed blob files, a
VACUUM) is handed to the transaction and acted on only after its commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import NotFound
from . import postgres_blob_rows as blob_rows
from . import postgres_rows as rows
from .base import Changes, DeliveryRecord, MessageRecord, MessageView, NewEvent, StorageError
from .blob_records import BindRule, BlobListener
from .group_records import MembershipRule
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = ["PostgresMessages", "blobs_destroyed"]

T = TypeVar("T")


def blobs_destroyed(tx: Tx, listeners: list[BlobListener], ids: list[bytes]) -> None:
    """After ``tx`` commits, tell the blob listeners which rows it deleted (to unlink files)."""
    if not ids:
        return
    gone = list(ids)

    def tell() -> None:
        for listener in listeners:
            listener(gone)

    tx.after_commit(tell)


class PostgresMessages:
    """The message store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]
    _blob_listeners: list[BlobListener]

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

        async def run(tx: Tx) -> MessageRecord:
            conn = tx.conn
            if not await rows.claim_message(conn, message):
                row = await conn.fetchrow(
                    f"SELECT {rows.MESSAGE_COLUMNS} FROM messages WHERE message_id = $1",
                    message.message_id,
                )
                if row is None:  # never: a clash this snapshot cannot see fails to serialise
                    raise StorageError("the message id clashed with a row that is not there")
                return rows.to_message(row)  # a retried send: answered as stored
            await rows.check_membership(conn, message.conversation_id, membership)
            await rows.insert_message(conn, message, deliveries, quota, claimed=True)
            await blob_rows.bind(conn, message.message_id, message.sender, blobs, bind)
            await rows.insert_events(tx, events, now)
            return message

        return await self._engine.write(run)

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

        async def run(tx: Tx) -> T:
            conn = tx.conn
            view = await rows.read_view(conn, message_id, recalls_since, lock=True)
            if view is None:
                raise NotFound("No such message.")
            changes, result = decide(view)
            for added, _ in changes.new_messages:
                await rows.check_membership(conn, added.conversation_id, membership)
            destroyed = await rows.apply_changes(conn, view, changes, quota, bind)
            await rows.insert_events(tx, changes.events, now)
            if changes.purge:
                tx.after_commit(self._engine.request_checkpoint)
            blobs_destroyed(tx, self._blob_listeners, destroyed)
            return result

        return await self._engine.write(run)

    async def messages_to_expire(self, received_before: int, limit: int) -> list[bytes]:
        async def run(conn: Conn) -> list[bytes]:
            found = await conn.fetch(
                "SELECT message_id FROM messages WHERE state = 'live' AND received_at < $1 "
                "LIMIT $2",
                received_before,
                limit,
            )
            return [bytes(row[0]) for row in found]

        return await self._engine.read(run)

    async def messages_to_complete(self, opened_before: int, limit: int) -> list[bytes]:
        async def run(conn: Conn) -> list[bytes]:
            found = await conn.fetch(
                "SELECT message_id FROM messages WHERE state = 'live' "
                "AND all_opened_at IS NOT NULL AND all_opened_at < $1 LIMIT $2",
                opened_before,
                limit,
            )
            return [bytes(row[0]) for row in found]

        return await self._engine.read(run)

    async def forget_tombstones(self, before: int) -> int:
        async def run(tx: Tx) -> int:
            conn = tx.conn
            old = [
                bytes(row[0])
                for row in await conn.fetch(
                    "SELECT message_id FROM messages WHERE state <> 'live' AND received_at < $1 "
                    "FOR UPDATE",
                    before,
                )
            ]
            destroyed = await blob_rows.forget(conn, old)
            if old:
                await conn.execute(
                    "DELETE FROM deliveries WHERE message_id = ANY($1::bytea[])", old
                )
                await conn.execute("DELETE FROM events WHERE message_id = ANY($1::bytea[])", old)
                await conn.execute("DELETE FROM messages WHERE message_id = ANY($1::bytea[])", old)
            await conn.execute("DELETE FROM events WHERE created_at < $1", before)
            await conn.execute("DELETE FROM sessions WHERE expires_at < $1", before)
            blobs_destroyed(tx, self._blob_listeners, destroyed)
            return len(old)

        return await self._engine.write(run)

    async def stored_bytes(self, user_id: bytes) -> int:
        async def run(conn: Conn) -> int:
            found = await conn.fetchval(
                "SELECT stored_bytes FROM users WHERE user_id = $1", user_id
            )
            return int(found) if found is not None else 0

        return await self._engine.read(run)
