"""A throwaway PostgreSQL server started from the installed binaries.

``e2e-recall-relay bench --postgres`` measures relays on PostgreSQL without
asking the operator to set one up, and the tests need one per test process;
both start it the same way, so the code lives here once (the tests' fixture
in ``tests/support/postgres.py`` builds on :class:`PostgresServer`).

The server is made with ``initdb`` in a new temporary directory and listens
on a Unix socket in that directory only: no TCP port, nothing another user
of the machine can reach.  ``fsync`` stays on, as in production, so figures
measured on it include the cost of durable commits.  PostgreSQL refuses to
run as root, so as root it runs as the ``postgres`` system user (Debian's
package creates it) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir"]

PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")


class PostgresUnavailable(Exception):
    """The server cannot be started here: its programs or its system user are missing."""


def find_bindir() -> Path | None:
    """The directory holding PostgreSQL's programs: E2E_RECALL_PG_BIN, PATH, then Debian's.

    Debian keeps the server programs out of PATH, in one directory per major
    version; the newest installed wins.  A directory named in
    E2E_RECALL_PG_BIN is the only one looked at: an operator who names one
    means that installation, not whichever else is found.
    """
    named = os.environ.get("E2E_RECALL_PG_BIN")
    if named:
        folder = Path(named)
        return folder if all((folder / p).is_file() for p in PROGRAMS) else None
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((folder / program).is_file() for program in PROGRAMS):
            return folder
    return None


class PostgresServer:
    """One PostgreSQL server on a socket in its own temporary directory, until :meth:`stop`."""

    def __init__(
        self,
        bindir: Path,
        *,
        max_connections: int = 300,
        shared_buffers: str = "32MB",
        prefix: str = "e2e-recall-pg-",
        settings: dict[str, str] | None = None,
        wal_segment_mb: int | None = None,
    ) -> None:
        self.bindir = bindir
        self.settings = dict(settings or {})  # more server settings (``-c name=value``)
        self.wal_segment_mb = wal_segment_mb  # initdb's --wal-segsize; None: its 16 MB
        self.max_connections = max_connections
        self.shared_buffers = shared_buffers
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "PostgreSQL cannot run as root and there is no `postgres` user to run it "
                    "as; `apt-get install postgresql` creates one"
                ) from None
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.socket_dir.mkdir()
        if self._as_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self.started = False

    def run(self, program: str, *args: str) -> str:
        """One of the server's programs, as the server's user; its stdout, or RuntimeError."""
        command = [*self._as_user, str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self) -> PostgresServer:
        """initdb, then pg_ctl start, waiting until the server accepts connections."""
        segments = [f"--wal-segsize={self.wal_segment_mb}"] if self.wal_segment_mb else []
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-sync", "--no-instructions", *segments)  # fmt: skip
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.socket_dir}'",
                "-c fsync=on",
                f"-c max_connections={self.max_connections}",
                f"-c shared_buffers={self.shared_buffers}",
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                 "-l", str(self.log), "start")  # fmt: skip
        self.started = True

    def postmaster_pid(self) -> int:
        """The running server's process id (the first line of ``postmaster.pid``)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def kill(self, wait: float = 30.0) -> None:
        """SIGKILL the postmaster, as a crash or the OOM killer would, and wait for its backends.

        A killed postmaster leaves its children running for a moment: each
        notices its parent's death and exits.  A new postmaster refuses to
        start while any of them still holds the old shared memory, so this
        waits for them all (and SIGKILLs any left after ``wait`` seconds).
        """
        pid = self.postmaster_pid()
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while True:
            alive = [child for child in [pid, *children] if _alive(child)]
            if not alive:
                break
            if time.monotonic() > deadline:
                for child in alive:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
            time.sleep(0.02)
        self.started = False

    def restart(self) -> None:
        """Start the server again on the same data directory: it recovers from its WAL.

        The killed postmaster may linger as a zombie nobody reaps (a
        container's init often reaps nothing), and the new one would take it
        for a live server named in ``postmaster.pid``.  :meth:`kill` waited
        until every process of the old server was gone or a zombie, so its
        lock files (the data directory's and the socket's) are stale and are
        removed, as an operator would after a crash.
        """
        for lock in [self.data / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if not _alive(int(lock.read_text().split("\n", 1)[0])):
                    lock.unlink()
        self._pg_ctl_start()

    def stop(self) -> None:
        """Stop the server at once (nothing in it is kept) and remove its directory."""
        if self.started:
            with contextlib.suppress(Exception):
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def version(self) -> str:
        """The server's version, such as ``15.8``, from ``postgres (PostgreSQL) 15.8 (...)``."""
        found = re.search(r"\(PostgreSQL\) (\S+)", self.run("postgres", "--version"))
        return found.group(1) if found else "unknown"

    def dsn(self, database: str) -> str:
        """A URL for ``database`` on this server's socket, as the relay's database_url."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def sql(self, database: str, statement: str) -> None:
        """One statement through psql (CREATE DATABASE cannot run in a transaction)."""
        self.run("psql", "-h", str(self.socket_dir), "-U", "postgres", "-d", database,
                 "-v", "ON_ERROR_STOP=1", "-q", "-c", statement)  # fmt: skip

    def create_database(self, name: str, template: str = "template0") -> str:
        """A new, empty database (or a copy of ``template``); its URL."""
        self.sql("postgres", f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.sql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _children(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux: /proc/PID/task/*/children)."""
    found: list[int] = []
    for listing in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            found += [int(part) for part in Path(listing).read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone: it holds no shared memory)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
