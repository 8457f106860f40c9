"""The relays a bench run starts: N ``serve`` processes on one database, and that database.

Every process gets the same data directory, so the first one creates the
relay key and every other one reads it: one relay identity, as
docs/operators.md asks of processes behind a load balancer.  The first is
started alone, so that it alone creates the key and the schema; the others
follow once it listens.  The database URL goes to each process in its
environment, never on its command line, where any user of the machine
could read a password in it.

With ``--postgres`` a throwaway PostgreSQL server is started first
(:mod:`.postgres_server`) and removed after the relays stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BenchFailed, BenchUsageError
from .options import BenchOptions
from .postgres_server import PostgresServer, PostgresUnavailable, find_bindir
from .processes import ServerProcess, relay_command
from .progress import Display
from .relay_options import redact

__all__ = ["MISSING_POSTGRES", "Backend", "started_relays"]

MISSING_POSTGRES = (
    "--postgres needs PostgreSQL's server programs (initdb, pg_ctl, postgres, psql), which "
    "were not found: install them (apt-get install postgresql), or put their directory on "
    "PATH or in E2E_RECALL_PG_BIN."
)
DATABASE_ENV = "E2E_RECALL_RELAY_DATABASE_URL"
SHARED_BUFFERS = "128MB"


@dataclass(frozen=True)
class Backend:
    """What the figures' header says about the database the relays ran on."""

    kind: str  # sqlite or postgresql
    started_server: bool  # a throwaway PostgreSQL server the bench started itself
    version: str | None  # the PostgreSQL server's, when the bench started it
    database: str  # the URL without a password, or where the SQLite file was

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "started_server": self.started_server,
            "version": self.version,
            "database": self.database,
        }


def _start_postgres(options: BenchOptions, display: Display) -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        raise BenchUsageError(MISSING_POSTGRES)
    # Room for every process's pool, the migration's connection and a psql.
    connections = max(100, options.relays.processes * 40)
    try:
        server = PostgresServer(
            bindir,
            max_connections=connections,
            shared_buffers=SHARED_BUFFERS,
            prefix="e2e-recall-bench-pg-",
        )
    except PostgresUnavailable as exc:
        raise BenchUsageError(f"--postgres: {exc}.") from None
    display.step(f"starting a throwaway PostgreSQL server from {bindir}")
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        raise BenchFailed(f"PostgreSQL did not start: {exc}") from None
    return server


@contextlib.contextmanager
def _database(
    options: BenchOptions, work: Path, display: Display
) -> Iterator[tuple[str | None, Backend]]:
    """The database URL to give the relays (None: their default SQLite file) and its header."""
    setup = options.relays
    if not setup.postgres:
        url = setup.database_url
        kind = setup.backend
        shown = redact(url) if url else f"sqlite:///{work / 'data' / 'relay.db'} (temporary)"
        yield url, Backend(kind, False, None, shown)
        return
    server = _start_postgres(options, display)
    try:
        try:
            version = server.version()
            url = server.create_database("relay_bench")
        except RuntimeError as exc:
            raise BenchFailed(f"PostgreSQL did not make the bench's database: {exc}") from None
        yield url, Backend("postgresql", True, version, f"{url} (temporary)")
    finally:
        server.stop()


@contextlib.contextmanager
def started_relays(
    options: BenchOptions, work: Path, display: Display
) -> Iterator[tuple[list[ServerProcess], Backend]]:
    """Start the relays (and their database); stop them all whatever happens."""
    count = options.relays.processes
    relays: list[ServerProcess] = []
    with _database(options, work, display) as (url, backend):
        env = {DATABASE_ENV: url} if url else {}
        display.step(
            f"starting {count} relay process{'es' if count > 1 else ''} on 127.0.0.1 "
            f"({backend.kind}) with a temporary data directory"
        )
        try:
            for index in range(count):
                name = "relay" if count == 1 else f"relay {index + 1}"
                port_file = work / f"{name.replace(' ', '-')}.port"
                command = relay_command(
                    port_file, work / "data", options.devices, options.relay_config
                )
                relay = ServerProcess(name, command, work, port_file, env)
                relays.append(relay)
                relay.start()
            yield relays, backend
        finally:
            for relay in relays:
                relay.stop()
