"""Scrubbing on PostgreSQL: rewrite the content tables so no byte of purged content survives.

PostgreSQL has no secure delete.  A deleted or updated row stays in its
table's pages as a dead tuple; a plain ``VACUUM`` marks the space free but
leaves the bytes there until a later row happens to overwrite them, and the
remanence scan found 16-byte windows of recalled wraps in ``deliveries``
after one.  ``VACUUM FULL`` copies the live rows into new files and
truncates the old ones, so nothing of a dead tuple is left in the table's
files.  The write-ahead log still holds the inserted rows, so the scrub
then checkpoints, switches to a new WAL segment and checkpoints again:
segments older than the checkpoint's redo point are removed (or, with
``wal_recycle`` on, renamed for reuse, bytes and all: docs/operators.md says
to turn it off).  ``CHECKPOINT`` needs superuser or ``pg_checkpoint`` and
``pg_switch_wal()`` superuser or an explicit grant; a relay role without
them gets the table rewrite only, a warning in its log once, and the
operator's documentation names the grants.

``VACUUM FULL`` holds an ACCESS EXCLUSIVE lock on the table it rewrites, so
every read and write of that table waits meanwhile.  The tables are
rewritten one at a time, each under a lock timeout, and the scrub runs at
most once per ``scrub_interval``, as on SQLite (:mod:`.sqlite_scrub`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from .base import StorageError

__all__ = ["CONTENT_TABLES", "PostgresScrubber", "ScrubOutcome"]

log = logging.getLogger("relay.storage")

# Every table a purge deletes ciphertext, wraps, sealed link messages or session hashes from.
CONTENT_TABLES = ("messages", "deliveries", "events", "links", "wrap_keys", "sessions")
_LOCK_TIMEOUT = "2s"  # how long a rewrite may wait for its lock: requests queue behind it
_RETRY = 10.0  # seconds before a failed scrub is tried again
_PRIVILEGE = (asyncpg.InsufficientPrivilegeError,)


class ScrubObserver(Protocol):
    """Told how long each scrub took (the relay's ``relay_db_scrub_seconds``)."""

    def on_scrub(self, seconds: float) -> None: ...


@dataclass
class ScrubOutcome:
    """What one scrub did: the tables are always rewritten; the rest as far as allowed."""

    seconds: float = 0.0
    checkpointed: bool = False  # CHECKPOINT ran (old table files unlinked, WAL removable)
    wal_switched: bool = False  # pg_switch_wal() ran, then CHECKPOINT: old segments left pg_wal


class PostgresScrubber:
    """When to rewrite the content tables, and doing it on a connection of the pool."""

    def __init__(
        self,
        acquire: Callable[[], AbstractAsyncContextManager[Any]],
        interval: float,
        observer: ScrubObserver | None = None,
    ) -> None:
        self._acquire = acquire  # a pool's acquire(): yields a connection
        self.interval = interval  # seconds; 0 turns the automatic scrub off
        self.observer = observer
        self._wanted = asyncio.Event()
        self._last = time.monotonic()
        self._warned: set[str] = set()  # what the log was already told once
        self.last: ScrubOutcome | None = None

    def want(self) -> None:
        """Content was destroyed: scrub within ``interval`` (never by itself if it is 0)."""
        if self.interval > 0:
            self._wanted.set()

    async def loop(self) -> None:
        """Run until cancelled: a scrub when one is wanted, at most once per interval."""
        while True:
            await self._wanted.wait()
            await asyncio.sleep(max(0.0, self._last + self.interval - time.monotonic()))
            self._wanted.clear()
            try:
                await self.run()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, StorageError) as exc:
                log.warning(
                    "scrub failed",
                    extra={"event": "scrub_failed", "error": type(exc).__name__},
                )
                self._wanted.set()
                await asyncio.sleep(_RETRY)

    async def run(self) -> ScrubOutcome:
        """Rewrite every content table, then push the old bytes out of the WAL if allowed."""
        started = time.monotonic()
        outcome = ScrubOutcome()
        try:
            async with self._session() as conn:
                for table in CONTENT_TABLES:  # one lock at a time, each held briefly
                    await conn.execute(f"VACUUM (FULL) {table}")
                outcome.checkpointed = await self._checkpoint(conn)
                if outcome.checkpointed and await self._may_switch(conn):
                    outcome.wal_switched = await self._switch_wal(conn)
        finally:
            self._last = time.monotonic()
        outcome.seconds = self._last - started
        self.last = outcome
        if self.observer is not None:
            self.observer.on_scrub(outcome.seconds)
        log.info(
            "scrubbed",
            extra={
                "event": "scrubbed",
                "duration_ms": round(outcome.seconds * 1000, 1),
                "checkpointed": outcome.checkpointed,
                "wal_switched": outcome.wal_switched,
            },
        )
        return outcome

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        """A pool connection with a lock timeout, reset before it goes back to the pool."""
        async with self._acquire() as conn:
            await conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            try:
                yield conn
            finally:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.execute("RESET lock_timeout")

    async def _checkpoint(self, conn: Any) -> bool:
        try:
            await conn.execute("CHECKPOINT")
        except _PRIVILEGE:
            self._warn_once(
                "checkpoint",
                "the relay's role may not CHECKPOINT: purged bytes stay in the WAL until the "
                "server's own checkpoints recycle it (GRANT pg_checkpoint TO the role)",
            )
            return False
        return True

    async def _may_switch(self, conn: Any) -> bool:
        """Whether switching segments can take the bytes out of every WAL file the server keeps.

        With archiving on, every switch would ship a segment to the archive, which
        keeps the purged bytes anyway: no switch, and the log says so once.
        """
        archive = await conn.fetchval("SELECT current_setting('archive_mode')")
        if archive != "off":
            self._warn_once(
                "archive",
                "archive_mode is on: the WAL archive keeps purged ciphertext, so the scrub "
                "does not switch WAL segments",
            )
            return False
        recycle = await conn.fetchval("SELECT current_setting('wal_recycle')")
        if recycle == "on":
            self._warn_once(
                "recycle",
                "wal_recycle is on: old WAL segments are renamed for reuse with their bytes "
                "in them; set wal_recycle = off so the scrub's checkpoint removes them",
            )
        return True

    async def _switch_wal(self, conn: Any) -> bool:
        try:
            await conn.execute("SELECT pg_switch_wal()")
        except _PRIVILEGE:
            self._warn_once(
                "switch",
                "the relay's role may not call pg_switch_wal(): purged bytes stay in the "
                "current WAL segment until it fills (GRANT EXECUTE ON FUNCTION "
                "pg_switch_wal() TO the role)",
            )
            return False
        await conn.execute("CHECKPOINT")  # the redo point is now in the new segment
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, extra={"event": "scrub_limited", "reason": key})
