"""The PostgreSQL engine: a connection pool, migrations, and transactions that retry.

SQLite serialises every write on one thread; PostgreSQL serves many writers
at once, from several relay processes.  So that a read-decide-write (a
recall inside its window, a quota, a group head) can never act on stale
facts, every write runs SERIALIZABLE: when two transactions would have seen
each other's effects in an order no serial run gives, the server refuses one
(SQLSTATE 40001) and the engine runs it again from the start.  A write is
acknowledged only after its COMMIT returned, which with the server's default
``synchronous_commit=on`` means the commit record reached disk.

Other relay processes learn of queued events by NOTIFY, issued inside the
transaction that queued them: PostgreSQL delivers a notification only when
its transaction commits, and never for one that rolled back, so a process is
never told of events that do not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Protocol, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .base import EventRecord, SchemaTooNew, StorageError
from .postgres_scrub import CONTENT_TABLES, PostgresScrubber, ScrubOutcome

__all__ = [
    "EVENTS_CHANNEL",
    "SCHEMA_VERSION",
    "Conn",
    "PostgresEngine",
    "PostgresObserver",
    "Tx",
]

T = TypeVar("T")
# A connection as the store methods get it: from the pool (a proxy) or opened alone.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
log = logging.getLogger("relay.storage")

EVENTS_CHANNEL = "e2e_recall_events"
SIGNALS_CHANNEL = "e2e_recall_signals"  # what relay processes tell each other (relay/cluster.py)
_JOB_LOCKS = 0x6532_6552_0000_0000  # plus a job's number: pg_try_advisory_lock keys
_MIGRATION_LOCK = 0x6532_6552_6563_616C  # pg_advisory_xact_lock key: one migrator at a time
_RETRY_BUDGET = 20.0  # seconds a write may spend failing to serialise before StorageError
_STRAGGLER = 5  # failed attempts after which a write queues behind the other stragglers
_STRAGGLERS_LOCK = 0x6532_6552_5354_5247  # pg_advisory_xact_lock key of that queue
_NOTIFY_LIMIT = 7900  # bytes per NOTIFY payload (the server's limit is 8000)
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
# What a lost or refused connection raises.  When the server dies under a
# connection in use, asyncpg's protocol is left failed and the next statement
# on it raises InternalClientError ("cannot switch to state ..."), which is
# not an InterfaceError: uncaught it was a 500 for every request that met it.
_UNREACHABLE = (
    asyncpg.PostgresError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class PostgresObserver(Protocol):
    """Told how long the database takes (the relay's metrics)."""

    def on_commit(self, jobs: int, seconds: float) -> None: ...

    def on_read(self, seconds: float) -> None: ...

    def on_scrub(self, seconds: float) -> None: ...


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("relay.storage").joinpath("migrations", "postgresql")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


SCHEMA_VERSION = max(version for version, _ in _migrations())


class Tx:
    """One write transaction as the store methods see it.

    Events and after-commit work are collected here rather than acted on,
    because a transaction that fails to serialise runs again from the start:
    only the attempt that committed may tell anyone anything.
    """

    __slots__ = ("_callbacks", "conn", "events", "signals")

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.events: list[EventRecord] = []
        self.signals: list[tuple[str, list[bytes]]] = []
        self._callbacks: list[Callable[[], None]] = []

    def announce(self, events: list[EventRecord]) -> None:
        """Events this transaction inserted (with their sequence numbers)."""
        self.events.extend(events)

    def signal(self, kind: str, values: list[bytes]) -> None:
        """Tell the other relay processes of this change (:meth:`PostgresEngine.signal`).

        Sent as a NOTIFY inside the transaction, so PostgreSQL delivers it
        with the commit and never without it: a process killed just after
        committing a revocation cannot leave the others trusting their
        cached view of the device, as a signal sent after the commit could.
        """
        self.signals.append((kind, values))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never if it rolls back)."""
        self._callbacks.append(callback)

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: an exception inside rolls back only what it wrote."""
        async with self.conn.transaction():
            yield


def _payloads(origin: str, device_ids: set[bytes]) -> list[str]:
    """NOTIFY payloads naming these devices, each within the server's size limit."""
    payloads: list[str] = []
    current = origin
    for device_id in sorted(device_ids):
        part = device_id.hex()
        if len(current) + 1 + len(part) > _NOTIFY_LIMIT:
            payloads.append(current)
            current = origin
        current = f"{current} {part}"
    if current != origin:
        payloads.append(current)
    return payloads


def _storage_error(exc: BaseException) -> StorageError:
    """A database failure as the relay reports it; the server's message names no content."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or "?"
        return StorageError(f"PostgreSQL failed ({type(exc).__name__}, SQLSTATE {sqlstate})")
    return StorageError(f"PostgreSQL is unreachable ({type(exc).__name__})")


class PostgresEngine:
    """A pool of connections to one database, and the two ways to use it."""

    def __init__(
        self,
        dsn: str,
        pool_size: int = 10,
        observer: PostgresObserver | None = None,
        scrub_interval: float = 60.0,
    ) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.observer = observer
        self.origin = secrets.token_hex(8)  # this process, in the NOTIFY payloads it sends
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_devices: list[Callable[[set[bytes]], None]] = []
        self._on_signals: list[Callable[[str, list[bytes]], None]] = []
        self._leases: asyncpg.Connection | None = None  # holds this process's job locks
        # Every job asks at start: one connection for them all, not one each left unclosed.
        self._leases_lock = asyncio.Lock()
        self._held: set[int] = set()
        self._relisten: asyncio.Task[None] | None = None
        self._stopping = False
        self.announce: Callable[[list[EventRecord]], None] | None = None  # set by the storage
        self.scrubber = PostgresScrubber(lambda: self.pool.acquire(), scrub_interval, observer)
        self._scrub_task: asyncio.Task[None] | None = None

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, bring the schema up to date, and listen for other processes' events."""
        self._stopping = False
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, command_timeout=60
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
            await self._listen()
            self._scrub_task = asyncio.create_task(self.scrubber.loop())
        except (SchemaTooNew, StorageError):
            await self.stop()
            raise
        except _UNREACHABLE as exc:
            await self.stop()
            raise _storage_error(exc) from None

    async def _listen(self) -> None:
        """A connection of its own for LISTEN: pool connections come and go."""
        listener = await asyncpg.connect(self.dsn)
        await listener.add_listener(EVENTS_CHANNEL, self._heard)
        await listener.add_listener(SIGNALS_CHANNEL, self._heard_signal)
        listener.add_termination_listener(self._lost)
        self._listener = listener

    def _lost(self, _conn: object) -> None:
        """The LISTEN connection died (server restart, failover): listen again."""
        if self._stopping:
            return
        log.warning("lost the notification connection", extra={"event": "listen_lost"})
        self._listener = None
        self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        while not self._stopping and self._listener is None:
            try:
                await self._listen()
            except _UNREACHABLE:
                await asyncio.sleep(1.0)
                continue
            log.info("listening again", extra={"event": "listen_restored"})
            for callback in self._on_signals:
                callback("relisten", [])  # notifications may have been missed meanwhile

    async def stop(self) -> None:
        self._stopping = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
            self._relisten = None
        async with self._leases_lock:
            if self._leases is not None:
                with contextlib.suppress(Exception):
                    await self._leases.close(timeout=5)
                self._leases = None
                self._held.clear()
        if self._scrub_task is not None:
            self._scrub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scrub_task
            self._scrub_task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=5)
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=10)
            self._pool = None

    async def _migrate(self, conn: Conn) -> int:
        """Apply each newer migration, one transaction each, under a cluster-wide lock."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
            )
            current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the database is at schema version {current}, newer than this relay's "
                    f"{SCHEMA_VERSION}: a newer e2e-recall-relay wrote it, so run that version "
                    "(or restore the backup taken before the upgrade); it was left untouched"
                )
            for version, script in _migrations():
                if version > current:
                    await conn.execute(script)
                    await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
                    log.info("migrated", extra={"event": "migrated", "schema_version": version})
        return max(current, SCHEMA_VERSION)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("the PostgreSQL storage is not open")
        return self._pool

    # transactions ---------------------------------------------------------------------------
    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in one SERIALIZABLE transaction, again if it fails to serialise.

        Under heavy contention a write can lose to newer ones again and again.
        After a few failures it takes a transaction-level advisory lock first,
        so such stragglers run one after another instead of defeating each
        other; it gives up only after ``_RETRY_BUDGET`` seconds.
        """
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                async with self.pool.acquire() as conn:
                    tx = Tx(conn)
                    async with conn.transaction(isolation="serializable"):
                        if attempt >= _STRAGGLER:
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", _STRAGGLERS_LOCK)
                        result = await fn(tx)
                        await self._notify(conn, tx)
            except _RETRYABLE:
                attempt += 1
                if time.perf_counter() - started > _RETRY_BUDGET:
                    raise StorageError(
                        f"PostgreSQL refused the write {attempt} times in {_RETRY_BUDGET:.0f} s "
                        "as conflicting with others"
                    ) from None
                await asyncio.sleep(min(0.2, 0.002 * 2**attempt) * random.random())  # noqa: S311
                continue
            except _UNREACHABLE as exc:
                raise _storage_error(exc) from None
            if self.observer is not None:
                self.observer.on_commit(1, time.perf_counter() - started)
            self._committed(tx)
            return result

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on one consistent snapshot (REPEATABLE READ, READ ONLY)."""
        started = time.perf_counter()
        try:
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                result = await fn(conn)
        except _UNREACHABLE as exc:
            raise _storage_error(exc) from None
        if self.observer is not None:
            self.observer.on_read(time.perf_counter() - started)
        return result

    async def execute_outside(self, statement: str) -> None:
        """A statement that cannot run in a transaction block (VACUUM)."""
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(statement)
        except _UNREACHABLE as exc:
            raise _storage_error(exc) from None

    # events across processes ----------------------------------------------------------------
    def on_devices(self, callback: Callable[[set[bytes]], None]) -> None:
        """Call ``callback`` with the devices another process just queued events for."""
        self._on_devices.append(callback)

    def _committed(self, tx: Tx) -> None:
        if tx.events and self.announce is not None:
            self.announce(tx.events)
        for callback in tx._callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed", extra={"event": "callback_failed"})

    async def _notify(self, conn: Conn, tx: Tx) -> None:
        """The transaction's notifications, sent in it (delivered when it commits)."""
        for payload in _payloads(self.origin, {event.device_id for event in tx.events}):
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)
        for kind, values in tx.signals:
            await conn.execute(
                "SELECT pg_notify($1, $2)", SIGNALS_CHANNEL, self._signal_payload(kind, values)
            )

    def on_signal(self, callback: Callable[[str, list[bytes]], None]) -> None:
        """Call ``callback(kind, values)`` for each signal another process sends."""
        self._on_signals.append(callback)

    async def signal(self, kind: str, values: list[bytes]) -> None:
        """Tell every other relay process on this database (delivered at once, not stored)."""
        payload = self._signal_payload(kind, values)
        try:
            async with self.pool.acquire() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", SIGNALS_CHANNEL, payload)
        except _UNREACHABLE as exc:
            raise _storage_error(exc) from None

    def _signal_payload(self, kind: str, values: list[bytes]) -> str:
        payload = " ".join([self.origin, kind, *(value.hex() for value in values)])
        if len(payload) > _NOTIFY_LIMIT:
            raise ValueError("a signal must fit in one notification")
        return payload

    def _heard_signal(self, _conn: Conn, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        parts = payload.split(" ")
        if len(parts) < 2 or parts[0] == self.origin:
            return
        kind, rest = parts[1], parts[2:]
        try:
            values = [bytes.fromhex(part) for part in rest]
        except ValueError:
            log.warning("unreadable signal", extra={"event": "bad_notification"})
            return
        for callback in self._on_signals:
            callback(kind, values)

    async def lead(self, job: int) -> bool:
        """Whether this process runs background job number ``job``: one process at a time.

        A session-level advisory lock on a connection kept for the purpose:
        held until this process stops or its connection dies, when another
        process's next attempt takes it over.
        """
        async with self._leases_lock:
            if self._stopping:
                return False
            if job in self._held and self._leases is not None and not self._leases.is_closed():
                return True
            try:
                if self._leases is None or self._leases.is_closed():
                    self._held.clear()
                    self._leases = await asyncpg.connect(self.dsn)
                taken = bool(
                    await self._leases.fetchval("SELECT pg_try_advisory_lock($1)", _JOB_LOCKS + job)
                )
            except _UNREACHABLE:
                return False
            if taken:
                self._held.add(job)
            return taken

    def _heard(self, _conn: Conn, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        origin, _, rest = payload.partition(" ")
        if origin == self.origin or not rest:
            return
        try:
            devices = {bytes.fromhex(part) for part in rest.split()}
        except ValueError:
            log.warning("unreadable notification", extra={"event": "bad_notification"})
            return
        for callback in self._on_devices:
            callback(devices)

    # destroyed content ----------------------------------------------------------------------
    def request_checkpoint(self) -> None:
        """Ciphertext or keys were destroyed: scrub within ``scrub_interval`` (postgres_scrub)."""
        self.scrubber.want()

    async def scrub(self) -> ScrubOutcome:
        """Rewrite the content tables now, and checkpoint and switch the WAL if allowed."""
        try:
            return await self.scrubber.run()
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise _storage_error(exc) from None

    async def vacuum(self) -> float:
        """A plain VACUUM of the content tables (space reuse, no rewrite); the seconds it took."""
        started = time.perf_counter()
        await self.execute_outside("VACUUM " + ", ".join(CONTENT_TABLES))
        return time.perf_counter() - started
