"""The PostgreSQL backend: for operators who run several relay processes on one database.

The same stores as the SQLite backend (:mod:`.sqlite`), with the same rules
and rows; the engine (:mod:`.postgres_engine`) supplies the pool, the
serialisable transactions that retry, and the NOTIFY that carries queued
events to the other processes.  Each store's SQL lives in a mixin module of
its own, as on the SQLite side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .base import EventListener, EventRecord
from .blob_records import BlobListener
from .postgres_accounts import PostgresAccounts
from .postgres_blobs import PostgresBlobs
from .postgres_devices import PostgresDevices
from .postgres_engine import Conn, PostgresEngine, PostgresObserver
from .postgres_events import PostgresEvents
from .postgres_expiry import PostgresExpiry
from .postgres_groups import PostgresGroups
from .postgres_messages import PostgresMessages
from .postgres_scrub import ScrubOutcome
from .postgres_wrap_keys import PostgresWrapKeys

__all__ = ["PostgresStorage", "is_postgres_url"]

_COUNTED = ("users", "devices", "sessions", "events", "groups", "links")


def is_postgres_url(url: str) -> bool:
    """Whether a database URL names PostgreSQL (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))


class PostgresStorage(
    PostgresAccounts,
    PostgresMessages,
    PostgresEvents,
    PostgresExpiry,
    PostgresGroups,
    PostgresDevices,
    PostgresWrapKeys,
    PostgresBlobs,
):
    """Every store on one PostgreSQL database, shared by any number of relay processes."""

    def __init__(
        self,
        dsn: str,
        clock: Callable[[], int] | None = None,
        pool_size: int = 10,
        observer: PostgresObserver | None = None,
        scrub_interval: float = 60.0,
    ) -> None:
        self.dsn = dsn
        self._engine = PostgresEngine(dsn, pool_size, observer, scrub_interval)
        self._engine.announce = self._announce
        self._engine.on_devices(self._heard)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._listeners: list[EventListener] = []
        self._blob_listeners: list[BlobListener] = []

    # Not in order: two transactions of this process for one device commit 5 then 6, but
    # 6's reply can be handled first; and another process's 5 is heard by NOTIFY after
    # this process's own 6.  A connection handed 6 would move its cursor past 5 and never
    # send it.  A read made after the wake sees every event committed for the device so
    # far, in sequence order (postgres_rows.py), so the hub reads on every wake.
    announces_in_order = False

    def on_events(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _announce(self, events: list[EventRecord]) -> None:
        """After a commit of this process: the events it queued, with their sequence numbers."""
        devices = {event.device_id for event in events}
        if devices:
            for listener in self._listeners:
                listener(devices, events)

    def _heard(self, devices: set[bytes]) -> None:
        """Another process queued events for these devices: their queues must be read."""
        for listener in self._listeners:
            listener(devices, None)

    # other processes ------------------------------------------------------------------------
    async def signal(self, kind: str, values: list[bytes]) -> None:
        await self._engine.signal(kind, values)

    def on_signal(self, listener: Callable[[str, list[bytes]], None]) -> None:
        self._engine.on_signal(listener)

    async def lead(self, job: int) -> bool:
        return await self._engine.lead(job)

    # lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.stop()

    async def check(self) -> list[str]:
        """The quota counters against the live messages (PostgreSQL keeps the keys itself)."""

        async def run(conn: Conn) -> list[str]:
            found = await conn.fetch(
                "SELECT user_id, stored_bytes, held FROM (SELECT user_id, stored_bytes, "
                "(SELECT coalesce(sum(size), 0) FROM messages WHERE sender = user_id "
                "AND state = 'live') AS held FROM users) AS counted WHERE stored_bytes <> held"
            )
            return [
                f"user {bytes(row['user_id']).hex()[:16]}: the quota counter says "
                f"{row['stored_bytes']} bytes, but their live messages hold {row['held']}"
                for row in found
            ]

        return await self._engine.read(run)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._engine.read(lambda conn: conn.fetchval("SELECT 1"))
        return time.perf_counter() - started

    async def stats(self) -> dict[str, int]:
        async def run(conn: Conn) -> dict[str, int]:
            counts: dict[str, int] = {}
            for table in _COUNTED:
                counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for row in await conn.fetch("SELECT state, count(*) AS n FROM messages GROUP BY state"):
                counts[f"messages_{row['state']}"] = int(row["n"])
            counts["ciphertext_bytes"] = int(
                await conn.fetchval("SELECT coalesce(sum(stored_bytes), 0) FROM users")
            )
            return counts

        return await self._engine.read(run)

    async def scrub(self) -> float:
        """VACUUM FULL the content tables now, then CHECKPOINT and switch the WAL if allowed."""
        return (await self._engine.scrub()).seconds

    @property
    def last_scrub(self) -> ScrubOutcome | None:
        """What the latest scrub of this process could do (the CLI reports it)."""
        return self._engine.scrubber.last

    async def checkpoint(self) -> None:
        """A plain VACUUM, so the space of destroyed rows is reused (the retention job's call).

        Removing their bytes is the scrub's work, scheduled after each purge at
        most once per ``scrub_interval``: rewriting tables on every retention run
        would lock them far more often than purged content needs.
        """
        await self._engine.vacuum()
