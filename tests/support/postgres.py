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
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

__all__ = ["MISSING", "PostgresCluster", "cluster", "postgres_database"]

MISSING = (
    "PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found, and the relay's "
    "PostgreSQL tests need them. Install them with `apt-get install postgresql` (Debian, "
    "Ubuntu; `.ci/run` does this), or put their directory on PATH or in E2E_RECALL_PG_BIN."
)
_TEMPLATE = "relay_template"


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: E2E_RECALL_PG_BIN, PATH, then Debian's."""
    named = os.environ.get("E2E_RECALL_PG_BIN")
    candidates = [Path(named)] if named else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


class PostgresCluster:
    """A PostgreSQL server of this test process, on a socket in its own directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="e2e-recall-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL cannot run as root and there is no `postgres` user to run it "
                    "as; `apt-get install postgresql` creates one"
                ) from None
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self.socket_dir.mkdir()
        if self._as_user:
            shutil.chown(self.socket_dir, "postgres")
        self._lock = threading.Lock()

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_user, str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.socket_dir}'",
                "-c fsync=on",
                "-c max_connections=300",
                "-c shared_buffers=32MB",
            ]
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.root / "server.log"), "start")  # fmt: skip
        atexit.register(self.stop)
        self._sql("postgres", f"CREATE DATABASE {_TEMPLATE}")
        _run_alone(lambda: _migrate(self.dsn(_TEMPLATE)))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _sql(self, database: str, statement: str) -> None:
        self._run("psql", "-h", str(self.socket_dir), "-U", "postgres", "-d", database,
                  "-v", "ON_ERROR_STOP=1", "-q", "-c", statement)  # fmt: skip

    def create_database(self, migrated: bool = True) -> str:
        """A new database (with the relay's schema unless ``migrated`` is False); its DSN."""
        name = f"relay_{secrets.token_hex(6)}"
        template = _TEMPLATE if migrated else "template0"
        with self._lock:  # CREATE DATABASE copies the template, which no one may be using
            self._sql("postgres", f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.split("/")[-1].split("?")[0]
        self._sql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
            started = PostgresCluster(bindir)
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
