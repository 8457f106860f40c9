"""The PostgreSQL backend's link slots and device revocation.

The same transactions as :mod:`.sqlite_devices`.  Where SQLite's single
writer made a read-decide-write safe, the row decided on is locked here
(``FOR UPDATE``): the link slot, the device being revoked, and the user's row
while the open slots are counted, so two relay processes cannot both pass
the limit.  Nothing here decides who may do what (:mod:`relay.devices.service`).
"""

from __future__ import annotations

from collections.abc import Callable

from e2e_recall.report import DeviceState, Event, next_state

from ..errors import Conflict, NotFound, RateLimited
from . import postgres_rows as rows
from .base import NewEvent
from .device_records import LinkRecord, RevokeOutcome
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = ["PostgresDevices"]

_LINK_COLUMNS = "link_id, user_id, device_id, request, answer, created_at, expires_at"
_PENDING = (DeviceState.QUEUED, DeviceState.SEALED)


async def _link(conn: Conn, link_id: bytes, now: int, lock: str = "") -> LinkRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_LINK_COLUMNS} FROM links WHERE link_id = $1 AND expires_at > $2 {lock}",
        link_id,
        now,
    )
    return LinkRecord(*row) if row else None


class PostgresDevices:
    """The device store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]

    async def create_link(self, link: LinkRecord, max_open: int) -> None:
        async def run(tx: Tx) -> None:
            conn = tx.conn
            # One creator per user at a time: the count below stays true until commit.
            await conn.execute(
                "SELECT 1 FROM users WHERE user_id = $1 FOR NO KEY UPDATE", link.user_id
            )
            await conn.execute("DELETE FROM links WHERE expires_at <= $1", link.created_at)
            if await conn.fetchval("SELECT 1 FROM links WHERE link_id = $1", link.link_id):
                raise Conflict("A link with this id already exists.", "link_exists")
            open_ = await conn.fetchval(
                "SELECT count(*) FROM links WHERE user_id = $1", link.user_id
            )
            if open_ >= max_open:
                raise RateLimited(
                    f"You already have {max_open} device links open; finish or let one "
                    "expire first.",
                    "too_many_links",
                    retry_after=60,
                )
            stored = await conn.fetchval(
                f"INSERT INTO links ({_LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                link.link_id,
                link.user_id,
                link.device_id,
                link.request,
                link.answer,
                link.created_at,
                link.expires_at,
            )
            if stored is None:  # another user's slot took the id meanwhile
                raise Conflict("A link with this id already exists.", "link_exists")

        await self._engine.write(run)

    async def get_link(self, link_id: bytes, now: int) -> LinkRecord | None:
        return await self._engine.read(lambda conn: _link(conn, link_id, now))

    async def put_link_request(self, link_id: bytes, request: bytes, event: NewEvent) -> None:
        now = self._clock()

        async def run(tx: Tx) -> None:
            link = await _link(tx.conn, link_id, now, "FOR UPDATE")
            if link is None:
                raise NotFound("No such link, or it expired.")
            if link.request is not None:
                raise Conflict("This link already has its request.", "link_used")
            await tx.conn.execute(
                "UPDATE links SET request = $1 WHERE link_id = $2", request, link_id
            )
            await rows.insert_events(tx, [event], now)

        await self._engine.write(run)

    async def put_link_answer(self, link_id: bytes, user_id: bytes, answer: bytes) -> None:
        now = self._clock()

        async def run(tx: Tx) -> None:
            link = await _link(tx.conn, link_id, now, "FOR UPDATE")
            if link is None or link.user_id != user_id:
                raise NotFound("No such link, or it expired.")
            if link.request is None:
                raise Conflict("This link has no request to answer yet.", "no_request")
            if link.answer is not None:
                raise Conflict("This link already has its answer.", "link_used")
            await tx.conn.execute(
                "UPDATE links SET answer = $1 WHERE link_id = $2", answer, link_id
            )

        await self._engine.write(run)

    async def take_link_answer(self, link_id: bytes, now: int) -> tuple[bool, bytes | None]:
        async def run(tx: Tx) -> tuple[bool, bytes | None]:
            link = await _link(tx.conn, link_id, now, "FOR UPDATE")
            if link is None:
                return False, None
            if link.answer is None:
                return True, None
            await tx.conn.execute("DELETE FROM links WHERE link_id = $1", link_id)
            # The sealed identity key leaves the table's pages at the next VACUUM.
            tx.after_commit(self._engine.request_checkpoint)
            return True, link.answer

        return await self._engine.write(run)

    async def forget_links(self, now: int) -> int:
        async def run(tx: Tx) -> int:
            gone = await tx.conn.fetch("DELETE FROM links WHERE expires_at <= $1 RETURNING 1", now)
            if gone:  # SQLite's secure_delete zeroes them at once; here VACUUM frees them soon
                tx.after_commit(self._engine.request_checkpoint)
            return len(gone)

        return await self._engine.write(run)

    async def revoke_device(
        self, device_id: bytes, revoked_at: int, events: list[NewEvent]
    ) -> RevokeOutcome:
        now = self._clock()

        async def run(tx: Tx) -> RevokeOutcome:
            conn = tx.conn
            stored = await conn.fetchrow(
                "SELECT revoked_at, user_id FROM devices WHERE device_id = $1 FOR UPDATE",
                device_id,
            )
            if stored is None:
                raise NotFound("No such device.")
            if stored[0] is not None:
                return RevokeOutcome(stored[0], False, 0)
            await conn.execute(
                "UPDATE devices SET revoked_at = $1 WHERE device_id = $2", revoked_at, device_id
            )
            tx.signal("devices", [bytes(stored[1]), device_id])
            tx.signal("revoked", [device_id])
            await conn.execute("DELETE FROM sessions WHERE device_id = $1", device_id)
            await conn.execute("DELETE FROM events WHERE device_id = $1", device_id)
            await conn.execute("DELETE FROM links WHERE device_id = $1", device_id)
            held = await conn.fetch(
                "SELECT d.message_id, d.state FROM deliveries d JOIN messages m "
                "ON m.message_id = d.message_id "
                "WHERE d.device_id = $1 AND d.wrap IS NOT NULL FOR UPDATE OF d",
                device_id,
            )
            changed = []
            for message_id, state in held:
                after = DeviceState(state)
                if after in _PENDING:  # the key never reached it: it never will
                    after = next_state(after, Event.RECALLED)
                changed.append((str(after), message_id, device_id))
            if changed:
                await conn.executemany(
                    "UPDATE deliveries SET wrap = NULL, state = $1 "
                    "WHERE message_id = $2 AND device_id = $3",
                    changed,
                )
                tx.after_commit(self._engine.request_checkpoint)
            await rows.insert_events(tx, events, now)
            return RevokeOutcome(revoked_at, True, len(held))

        return await self._engine.write(run)
