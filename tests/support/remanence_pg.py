"""The remanence scan on PostgreSQL: a server of its own, and every file it keeps.

The scan must see every byte the server wrote, so the relay gets a
PostgreSQL server of its own (not the test process's shared cluster, where
other tests' databases and WAL would be scanned too and would keep
changing): its data directory (``base/``, ``global/``, ``pg_wal/``,
``pg_xact/``, everything) and its log.  Settings are the defaults but for
three an operator who wants recalls to reach the WAL sets as well, as
docs/operators.md says: ``wal_recycle = off`` (a recycled segment is renamed
with its old bytes in it), small WAL segments (so a scan reads megabytes,
not a 16 MB segment per step; the relay's behaviour does not depend on
the size), and autovacuum as it is, on.

As root the server runs as ``postgres``; root can read its files anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres import MISSING

from relay.bench.postgres_server import PostgresServer, PostgresUnavailable, find_bindir

__all__ = ["SCRUB_SETTINGS", "read_present", "scrub_server", "server_files"]

SCRUB_SETTINGS = {"wal_recycle": "off"}


def scrub_server(
    settings: dict[str, str] | None = None, *, in_pytest: bool = True, wal_segment_mb: int = 1
) -> PostgresServer:
    """A started server for one remanence run (the caller stops it)."""
    bindir = find_bindir()
    if bindir is None:
        if in_pytest:
            pytest.fail(MISSING, pytrace=False)
        raise PostgresUnavailable(MISSING)
    server = PostgresServer(
        bindir,
        max_connections=30,
        shared_buffers="16MB",
        prefix="e2e-recall-remanence-pg-",
        settings=SCRUB_SETTINGS if settings is None else settings,
        wal_segment_mb=wal_segment_mb,
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def server_files(server: PostgresServer) -> list[Path]:
    """Every regular file of the server's data directory, and its log.

    ``postmaster.pid`` and friends are tiny and content-free but scanned
    anyway: the point is that nothing is left out by name.  A file the
    server unlinks between the listing and the read is skipped.
    """
    found = [p for p in server.data.rglob("*") if p.is_file()]
    if server.log.exists():
        found.append(server.log)
    return sorted(found)


def read_present(files: list[Path]) -> list[tuple[Path, bytes]]:
    """The files' bytes, without those the server removed since they were listed."""
    read = []
    for path in files:
        try:
            read.append((path, path.read_bytes()))
        except FileNotFoundError:
            continue
    return read
