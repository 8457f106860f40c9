"""The SQLite backend's link slots and device revocation.

Nothing here decides who may do what (that is :mod:`relay.devices.service`);
each method is one transaction over the rows it names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from e2e_recall.report import DeviceState, Event, next_state

from ..errors import Conflict, NotFound, RateLimited
from . import sqlite_rows as rows
from .base import EventListener, EventRecord, NewEvent
from .device_records import LinkRecord, RevokeOutcome
from .sqlite_engine import SqliteEngine

__all__ = ["SqliteDevices"]

_LINK_COLUMNS = "link_id, user_id, device_id, request, answer, created_at, expires_at"
_PENDING = (DeviceState.QUEUED, DeviceState.SEALED)


def _link(conn: sqlite3.Connection, link_id: bytes, now: int) -> LinkRecord | None:
    row = conn.execute(
        f"SELECT {_LINK_COLUMNS} FROM links WHERE link_id = ? AND expires_at > ?",
        (link_id, now),
    ).fetchone()
    return LinkRecord(*row) if row else None


class SqliteDevices:
    """The device store of :class:`~relay.storage.sqlite.SqliteStorage`."""

    _engine: SqliteEngine
    _clock: Callable[[], int]
    _listeners: list[EventListener]
    _announce: Callable[[list[EventRecord]], None]

    async def create_link(self, link: LinkRecord, max_open: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM links WHERE expires_at <= ?", (link.created_at,))
            if conn.execute("SELECT 1 FROM links WHERE link_id = ?", (link.link_id,)).fetchone():
                raise Conflict("A link with this id already exists.", "link_exists")
            open_ = conn.execute(
                "SELECT count(*) FROM links WHERE user_id = ?", (link.user_id,)
            ).fetchone()[0]
            if open_ >= max_open:
                raise RateLimited(
                    f"You already have {max_open} device links open; finish or let one "
                    "expire first.",
                    "too_many_links",
                    retry_after=60,
                )
            conn.execute(
                f"INSERT INTO links ({_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    link.link_id,
                    link.user_id,
                    link.device_id,
                    link.request,
                    link.answer,
                    link.created_at,
                    link.expires_at,
                ),
            )

        await self._engine.write(run)

    async def get_link(self, link_id: bytes, now: int) -> LinkRecord | None:
        return await self._engine.read(lambda conn: _link(conn, link_id, now))

    async def put_link_request(self, link_id: bytes, request: bytes, event: NewEvent) -> None:
        now = self._clock()
        written: list[EventRecord] = []

        def run(conn: sqlite3.Connection) -> None:
            nonlocal written
            link = _link(conn, link_id, now)
            if link is None:
                raise NotFound("No such link, or it expired.")
            if link.request is not None:
                raise Conflict("This link already has its request.", "link_used")
            conn.execute("UPDATE links SET request = ? WHERE link_id = ?", (request, link_id))
            written = rows.insert_events(conn, [event], now)

        await self._engine.write(run)
        self._announce(written)

    async def put_link_answer(self, link_id: bytes, user_id: bytes, answer: bytes) -> None:
        now = self._clock()

        def run(conn: sqlite3.Connection) -> None:
            link = _link(conn, link_id, now)
            if link is None or link.user_id != user_id:
                raise NotFound("No such link, or it expired.")
            if link.request is None:
                raise Conflict("This link has no request to answer yet.", "no_request")
            if link.answer is not None:
                raise Conflict("This link already has its answer.", "link_used")
            conn.execute("UPDATE links SET answer = ? WHERE link_id = ?", (answer, link_id))

        await self._engine.write(run)

    async def take_link_answer(self, link_id: bytes, now: int) -> tuple[bool, bytes | None]:
        def run(conn: sqlite3.Connection) -> tuple[bool, bytes | None]:
            link = _link(conn, link_id, now)
            if link is None:
                return False, None
            if link.answer is None:
                return True, None
            conn.execute("DELETE FROM links WHERE link_id = ?", (link_id,))
            return True, bytes(link.answer)

        found, answer = await self._engine.write(run)
        if answer is not None:
            self._engine.request_checkpoint()  # the sealed identity key leaves the WAL soon
        return found, answer

    async def forget_links(self, now: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM links WHERE expires_at <= ?", (now,)).rowcount

        return await self._engine.write(run)

    async def revoke_device(
        self, device_id: bytes, revoked_at: int, events: list[NewEvent]
    ) -> RevokeOutcome:
        now = self._clock()
        written: list[EventRecord] = []

        def run(conn: sqlite3.Connection) -> RevokeOutcome:
            nonlocal written
            row = conn.execute(
                "SELECT revoked_at FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if row is None:
                raise NotFound("No such device.")
            if row[0] is not None:
                return RevokeOutcome(row[0], False, 0)
            conn.execute(
                "UPDATE devices SET revoked_at = ? WHERE device_id = ?", (revoked_at, device_id)
            )
            conn.execute("DELETE FROM sessions WHERE device_id = ?", (device_id,))
            conn.execute("DELETE FROM events WHERE device_id = ?", (device_id,))
            conn.execute("DELETE FROM links WHERE device_id = ?", (device_id,))
            held = conn.execute(
                "SELECT d.message_id, d.state FROM deliveries d JOIN messages m "
                "ON m.message_id = d.message_id "
                "WHERE d.device_id = ? AND d.wrap IS NOT NULL",
                (device_id,),
            ).fetchall()
            for message_id, state in held:
                after = DeviceState(state)
                if after in _PENDING:  # the key never reached it: it never will
                    after = next_state(after, Event.RECALLED)
                conn.execute(
                    "UPDATE deliveries SET wrap = NULL, state = ? "
                    "WHERE message_id = ? AND device_id = ?",
                    (str(after), message_id, device_id),
                )
            written = rows.insert_events(conn, events, now)
            return RevokeOutcome(revoked_at, True, len(held))

        outcome = await self._engine.write(run)
        if outcome.wraps_destroyed:
            self._engine.request_checkpoint()
        self._announce(written)
        return outcome
