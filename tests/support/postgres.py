"""A throwaway PostgreSQL server for the tests, started from the installed binaries.

One cluster per test process (each pytest-xdist worker has its own), made
with ``initdb`` in a temporary directory the first time a test asks for it,
listening on a Unix socket in that directory only (no TCP port at all), with
``fsync`` on as in production.  Each test gets a database of its own, copied
from a template that already holds the relay's schema, and dropped after.

PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user (which Debian's package creates).  Without the
binaries, the tests that need them fail with a sentence saying how to
install them: a missing server never passes for a passing test.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from relay.bench.postgres_server import PostgresServer, PostgresUnavailable, find_bindir

__all__ = ["MISSING", "PostgresCluster", "cluster", "postgres_database"]

MISSING = (
    "PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found, and the relay's "
    "PostgreSQL tests need them. Install them with `apt-get install postgresql` (Debian, "
    "Ubuntu; `.ci/run` does this), or put their directory on PATH or in E2E_RECALL_PG_BIN."
)
_TEMPLATE = "relay_template"


class PostgresCluster:
    """This test process's server (relay/bench/postgres_server.py), with a migrated template."""

    def __init__(self, bindir: Path) -> None:
        self.server = PostgresServer(bindir)
        self._lock = threading.Lock()

    def start(self) -> None:
        self.server.start()
        atexit.register(self.stop)
        self.server.create_database(_TEMPLATE)
        _run_alone(lambda: _migrate(self.dsn(_TEMPLATE)))

    def stop(self) -> None:
        self.server.stop()

    def dsn(self, database: str) -> str:
        return self.server.dsn(database)

    def create_database(self, migrated: bool = True) -> str:
        """A new database (with the relay's schema unless ``migrated`` is False); its DSN."""
        name = f"relay_{secrets.token_hex(6)}"
        template = _TEMPLATE if migrated else "template0"
        with self._lock:  # CREATE DATABASE copies the template, which no one may be using
            return self.server.create_database(name, template)

    def drop_database(self, dsn: str) -> None:
        # postgresql://postgres@/NAME?host=/path/to/socket: the path, not the socket's
        self.server.drop_database(urllib.parse.urlsplit(dsn).path.lstrip("/"))


def _run_alone(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` to completion on an event loop of its own thread.

    The first test of a process to ask for a database may be an async one,
    already inside the test's loop, where ``asyncio.run`` is refused.
    """
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name="postgres-template")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


async def _migrate(dsn: str) -> None:
    from relay.storage.postgres_engine import PostgresEngine

    engine = PostgresEngine(dsn, pool_size=1)
    await engine.start()
    await engine.stop()


_cluster: PostgresCluster | None = None
_cluster_lock = threading.Lock()


def cluster() -> PostgresCluster:
    """This process's cluster, started on first use; fails the test if PostgreSQL is missing."""
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            bindir = find_bindir()
            if bindir is None:
                import pytest

                pytest.fail(MISSING, pytrace=False)
            try:
                started = PostgresCluster(bindir)
            except PostgresUnavailable as exc:
                import pytest

                pytest.fail(str(exc), pytrace=False)
            started.start()
            _cluster = started
        return _cluster


@contextlib.contextmanager
def postgres_database(migrated: bool = True) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    server = cluster()
    dsn = server.create_database(migrated)
    try:
        yield dsn
    finally:
        server.drop_database(dsn)
