"""The SQLite engine: one writer thread with group commit, a pool of readers.

Durability and throughput pull in opposite directions; group commit serves
both.  Every write is a function of a connection, queued to one writer
thread.  The thread takes everything that is waiting, runs each function in
its own savepoint inside one transaction, commits once (``synchronous=FULL``:
one fsync of the WAL for the whole batch) and only then resolves the callers'
futures.  So an acknowledgement is never sent before its commit is durable,
and a thousand concurrent sends cost one fsync, not a thousand.

A function that raises rolls back to its savepoint and fails alone; a failed
commit (disk full, I/O error) fails the whole batch, and nothing in it is
acknowledged.  Readers use their own connections: WAL lets them run beside
the writer and see only committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .base import SchemaTooNew, StorageError
from .sqlite_faults import Faults, faulty
from .sqlite_scrub import Scrubber

__all__ = ["SCHEMA_VERSION", "EngineObserver", "SqliteEngine"]

T = TypeVar("T")
log = logging.getLogger("relay.storage")

_MAX_BATCH = 512
_READERS = 4
_CHECKPOINT_RETRY = 0.2  # seconds between attempts while readers pin the WAL
_CHECKPOINT_ATTEMPTS = 50  # for an awaited checkpoint: up to about a second


class EngineObserver(Protocol):
    """Told how long the database takes (the relay's metrics); called from engine threads."""

    def on_commit(self, jobs: int, seconds: float) -> None: ...

    def on_read(self, seconds: float) -> None: ...

    def on_checkpoint(self, truncated: bool) -> None: ...

    def on_scrub(self, seconds: float) -> None: ...


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("relay.storage").joinpath("migrations", "sqlite")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


SCHEMA_VERSION = max(version for version, _ in _migrations())


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every connection to the relay's database needs."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # durable at commit: the WAL is synced every time
    conn.execute("PRAGMA secure_delete=ON")  # freed content is overwritten with zeros
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _too_new(path: Path, version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database {path} has schema version {version}, but this relay knows versions up "
        f"to {SCHEMA_VERSION}: a newer e2e-recall-relay wrote it, so run that version (or "
        "restore the backup taken before the upgrade); the database was left untouched"
    )


def schema_version(path: Path) -> int:
    """The database's schema version, read without changing anything (0 for a new file)."""
    probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(probe.execute("PRAGMA user_version").fetchone()[0])
    finally:
        probe.close()


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply every migration newer than the database; return the version reached."""
    current: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise _too_new(path, current)
    for version, script in _migrations():
        if version > current:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("migrated", extra={"event": "migrated", "schema_version": version})
    return max(current, SCHEMA_VERSION)


class _Job:
    """A write to run in the next batch, or (``fn`` None) a checkpoint to report on."""

    __slots__ = ("fn", "future", "loop")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any] | None, loop: asyncio.AbstractEventLoop
    ):
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(apply)


class SqliteEngine:
    """Runs reads in a reader pool and writes through the group-commit writer."""

    def __init__(
        self,
        path: Path,
        observer: EngineObserver | None = None,
        scrub_interval: float = 60.0,
        faults: Faults | None = None,
    ) -> None:
        self.path = path
        self._observer = observer
        self._faults = faults  # only the fault-injection suite sets this
        self._scrubber = Scrubber(scrub_interval)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # None, once stopped: a read that comes too late fails instead of waiting forever.
        self._readers: queue.SimpleQueue[sqlite3.Connection | None] = queue.SimpleQueue()
        self._reader_list: list[sqlite3.Connection] = []
        self._thread: threading.Thread | None = None
        self._checkpoint_wanted = threading.Event()

    def start(self) -> None:
        self._readers = queue.SimpleQueue()
        self._create_private_file()
        try:
            version = schema_version(self.path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None
        if version > SCHEMA_VERSION:  # refuse before WAL mode or anything else touches it
            raise _too_new(self.path, version)
        try:
            writer = connect(self.path)
            migrate(writer, self.path)
            for _ in range(_READERS):
                reader = connect(self.path)
                reader.execute("PRAGMA query_only=ON")
                self._readers.put(reader)
                self._reader_list.append(reader)
        except sqlite3.Error as exc:
            for reader in self._reader_list:
                reader.close()
            self._reader_list.clear()
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None
        self._thread = threading.Thread(
            target=self._run, args=(writer,), name="sqlite-writer", daemon=True
        )
        self._thread.start()

    def _create_private_file(self) -> None:
        """A new database file is created 0600 in a 0700 directory.

        SQLite gives the WAL and SHM files the database file's mode, so they are
        private too.  An existing file keeps the mode its operator chose, with
        a warning if others can read it.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if self.path.stat().st_mode & 0o077:
                log.warning(
                    "database readable by others",
                    extra={"event": "loose_permissions", "path": str(self.path)},
                )
            return
        os.close(descriptor)

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        # Every reader back first: closing a connection another thread is reading
        # on crashes the process (a task cancelled mid-read leaves its thread running).
        for _ in self._reader_list:
            self._readers.get()
        for reader in self._reader_list:
            reader.close()
        if self._reader_list:
            self._readers.put(None)
        self._reader_list.clear()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise StorageError("the database is closed")
        job = _Job(fn, asyncio.get_running_loop())
        self._jobs.put(job)
        return await job.future  # type: ignore[no-any-return]

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._readers.get()
        if conn is None:
            self._readers.put(None)  # for the next late read
            raise StorageError("the database is closed")
        started = time.perf_counter()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc
        finally:
            self._readers.put(conn)
            if self._observer is not None:
                self._observer.on_read(time.perf_counter() - started)

    def request_checkpoint(self) -> None:
        """Ask the writer to truncate the WAL soon (after a purge), and to scrub; do not wait."""
        self._checkpoint_wanted.set()
        self._scrubber.want()
        self._jobs.put(_CHECKPOINT)

    async def scrub(self) -> float:
        """VACUUM now, after every write queued before; the seconds it took."""
        if self._thread is None:
            raise StorageError("the database is closed")
        job = _Job(_SCRUB_NOW, asyncio.get_running_loop())
        self._jobs.put(job)
        return await job.future  # type: ignore[no-any-return]

    def _idle_timeout(self) -> float | None:
        """How long the writer may wait for work before a checkpoint or scrub is due."""
        waits = [self._scrubber.wait()]
        if self._checkpoint_wanted.is_set():
            waits.append(_CHECKPOINT_RETRY)
        due = [w for w in waits if w is not None]
        return min(due) if due else None

    def _scrub(self, conn: sqlite3.Connection) -> float:
        try:
            if self._faults is not None:
                self._faults.check("scrub", conn)
            seconds = self._scrubber.run(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"the scrub failed: {exc}") from None
        self._checkpoint_wanted.clear()
        if self._observer is not None:
            self._observer.on_scrub(seconds)
        return seconds

    async def checkpoint(self) -> bool:
        """Truncate the WAL now, after every write queued before; True once it is empty."""
        if self._thread is None:
            raise StorageError("the database is closed")
        job = _Job(None, asyncio.get_running_loop())
        self._jobs.put(job)
        return await job.future  # type: ignore[no-any-return]

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                try:
                    first = self._jobs.get(timeout=self._idle_timeout())
                except queue.Empty:
                    self._housekeeping(conn)
                    continue
                if first is None:
                    break
                batch = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._jobs.put(None)
                        break
                    batch.append(item)
                jobs = [job for job in batch if job is not _CHECKPOINT]
                writes = [job for job in jobs if job.fn is not None and job.fn is not _SCRUB_NOW]
                waiting = [job for job in jobs if job.fn is None]
                scrubs = [job for job in jobs if job.fn is _SCRUB_NOW]
                if writes:
                    self._commit(conn, writes)
                for job in scrubs:
                    try:
                        job.settle(self._scrub(conn))
                    except StorageError as exc:
                        job.settle(error=exc)
                if waiting:
                    done = self._checkpoint(conn, attempts=_CHECKPOINT_ATTEMPTS)
                    for job in waiting:
                        job.settle(done)
                else:
                    self._housekeeping(conn)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        faults = self._faults
        try:
            if faults is not None:
                faults.check("begin", conn)
            conn.execute("BEGIN IMMEDIATE")
            statements = faulty(conn, faults)
            for job in jobs:
                assert job.fn is not None
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(statements)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, _storage_error(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            if faults is not None:
                faults.check("commit", conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StorageError(f"database write failed: {exc}")
            log.error(
                "commit failed",
                extra={"event": "commit_failed", "error": str(exc), "batch": len(jobs)},
            )
            for job in jobs:
                job.settle(error=failure)
            return
        for job, result, error in outcomes:
            job.settle(result, error)
        if self._observer is not None:
            self._observer.on_commit(len(jobs), time.perf_counter() - started)

    def _housekeeping(self, conn: sqlite3.Connection) -> None:
        """Between batches: the scrub if it is due, else a wanted checkpoint."""
        if self._scrubber.wait() == 0.0:
            with contextlib.suppress(StorageError):  # logged; tried again after an interval
                self._scrub(conn)
        elif self._checkpoint_wanted.is_set():
            self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection, attempts: int = 1) -> bool:
        """Copy the WAL into the database and truncate it; True when that succeeded.

        A reader in the middle of a query pins the WAL; then try again shortly.
        """
        for attempt in range(attempts):
            try:
                if self._faults is not None:
                    self._faults.check("checkpoint", conn)
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                log.warning(
                    "checkpoint failed", extra={"event": "checkpoint_failed", "error": str(exc)}
                )
                return False
            if self._observer is not None:
                self._observer.on_checkpoint(not busy)
            if not busy:
                self._checkpoint_wanted.clear()
                return True
            if attempt + 1 < attempts:
                time.sleep(_CHECKPOINT_RETRY / 10)
        return False


def _storage_error(exc: Exception) -> BaseException:
    """Errors of the rules pass through; database errors become :class:`StorageError`."""
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"database write failed: {exc}")
    return exc


_CHECKPOINT: Any = object()  # a queue item that only wakes the writer to checkpoint
_SCRUB_NOW: Any = object()  # a job function that means "VACUUM now"
