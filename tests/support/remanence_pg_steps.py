"""What each step of a PostgreSQL scrub removes: the figures in docs/operators.md.

``python reliability/remanence.py --postgres-steps`` runs this.  A relay
process with its automatic scrub off (``scrub_interval`` 0) stores messages
on a server of its own, fetched and opened as in the suite; then the steps
are taken one by one, by hand, and after each every file of the server is
scanned (tests/support/remanence_harness.py) and the windows found are
counted by where they are: which table's file, pg_statistic, the WAL.

1. stored (after a CHECKPOINT, so the rows reached the table files);
2. ANALYZE, as autovacuum runs it (``statistics``: with the statistics
   target the relay's migration 2 sets to 0 put back to the default first,
   to show what that migration prevents);
3. every message recalled, and a CHECKPOINT;
4. a plain VACUUM of the content tables, and a CHECKPOINT;
5. VACUUM FULL of each (each timed), and a CHECKPOINT;
6. pg_switch_wal() and a CHECKPOINT, twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from relay.bench.postgres_server import PostgresServer
from relay.storage.postgres_scrub import CONTENT_TABLES

from driver import Person
from relay_process import RelayProcess, free_port, target
from remanence_harness import RemanenceFindings, Windows, _send_all
from remanence_pg import read_present, scrub_server, server_files

_CONTENT_COLUMNS = (
    ("messages", "envelope"),
    ("deliveries", "wrap"),
    ("events", "payload"),
    ("links", "request"),
    ("links", "answer"),
    ("sessions", "token_hash"),
)


@dataclass
class Steps:
    settings: dict[str, str]
    statistics: bool
    wal_segment_mb: int
    messages: int = 0
    windows: int = 0
    found: list[tuple[str, Counter[str]]] = field(default_factory=list)  # step, windows by place
    vacuum_full_ms: dict[str, float] = field(default_factory=dict)


def query(server: PostgresServer, database: str, statement: str) -> str:
    """One statement through psql; its unaligned output."""
    return server.run(
        "psql", "-h", str(server.socket_dir), "-U", "postgres", "-d", database,
        "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement,
    )  # fmt: skip


def _places(server: PostgresServer) -> dict[str, str]:
    """Each relation file's number, by name (``pg_statistic``, ``deliveries``, a toast table)."""
    names = {}
    rows = query(server, "relay", "SELECT pg_relation_filenode(oid), relname FROM pg_class")
    for line in rows.splitlines():
        number, _, name = line.partition("|")
        if number:
            names[number] = name
    return names


def _where(path: Path, server: PostgresServer, names: dict[str, str]) -> str:
    if not path.is_relative_to(server.data):
        return path.name  # the server's log
    parts = path.relative_to(server.data).parts
    if parts[0] == "base" and len(parts) == 3:
        number = parts[2].split(".")[0].split("_")[0]
        return names.get(number, f"base/{parts[2]} (unlinked table)")
    return parts[0]


def _count(server: PostgresServer, secrets: Windows) -> Counter[str]:
    names = _places(server)
    where: Counter[str] = Counter()
    for path, data in read_present(server_files(server)):
        _, confirmed = secrets.hits(data, confirm=True)
        if confirmed:
            where[_where(path, server, names)] += len(confirmed)
    return where


async def postgres_steps(
    work: Path,
    count: int,
    *,
    settings: dict[str, str],
    statistics: bool = False,
    wal_segment_mb: int = 1,
) -> Steps:
    server = scrub_server(settings, in_pytest=False, wal_segment_mb=wal_segment_mb)
    steps = Steps(settings, statistics, wal_segment_mb, messages=count)
    relay = RelayProcess(
        work,
        work / "data",
        "--database-url",
        server.create_database("relay"),
        port=free_port(),
        E2E_RECALL_RELAY_SCRUB_INTERVAL="0",
        E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY="0",
    )
    relay.start()
    try:
        async with aiohttp.ClientSession() as http:
            relay_target = await target(http, relay.url())
            alice = Person("alice", relay_target, http)  # type: ignore[arg-type]
            bob = Person("bob", relay_target, http)  # type: ignore[arg-type]
            await alice.add_device()
            await bob.add_device()
            await bob.add_device()
            headers, secrets, _ = await _send_all(alice, bob, count, False, RemanenceFindings())
            secrets.seal()
            steps.windows = secrets.distinct

            def step(name: str, *statements: str) -> None:
                for statement in (*statements, "CHECKPOINT"):
                    query(server, "relay", statement)
                steps.found.append((name, _count(server, secrets)))

            step("stored")
            if statistics:
                for table, column in _CONTENT_COLUMNS:
                    query(server, "relay", f"ALTER TABLE {table} ALTER {column} SET STATISTICS -1")
            step("after ANALYZE", "ANALYZE")
            for header in headers:
                await alice.recall(header)  # type: ignore[arg-type]
            await asyncio.sleep(1.0)
            step("after the recalls")
            step("after plain VACUUM", "VACUUM " + ", ".join(CONTENT_TABLES))
            for table in CONTENT_TABLES:
                started = time.perf_counter()
                query(server, "relay", f"VACUUM (FULL) {table}")
                steps.vacuum_full_ms[table] = (time.perf_counter() - started) * 1000
            step("after VACUUM FULL")
            step("after one WAL switch", "SELECT pg_switch_wal()")
            step("after a second WAL switch", "SELECT pg_switch_wal()")
    finally:
        relay.kill()
        server.stop()
    return steps


def print_steps(steps: Steps) -> None:
    print(
        f"settings {steps.settings or 'defaults'}, {steps.wal_segment_mb} MB WAL segments; "
        f"statistics of content: {steps.statistics}"
    )
    print(f"messages {steps.messages}, distinct 16-byte windows {steps.windows}")
    for name, where in steps.found:
        places = ", ".join(f"{place} {n}" for place, n in sorted(where.items())) or "none"
        print(f"  {name:28} {sum(where.values()):6} windows: {places}")
    full = ", ".join(f"{table} {ms:.0f}" for table, ms in steps.vacuum_full_ms.items())
    print(f"  VACUUM FULL ms (psql round trip included): {full}")


def run_steps(work: Path, count: int) -> None:
    """The runs the operator's documentation reports: settings, segment size, statistics."""
    runs: tuple[tuple[dict[str, str], bool, int], ...] = (
        ({"wal_recycle": "off"}, False, 1),
        ({"wal_recycle": "off"}, False, 16),
        ({}, False, 16),
        ({"wal_recycle": "off"}, True, 1),
    )
    for index, (settings, statistics, segment) in enumerate(runs):
        folder = work / f"steps-{index}"
        folder.mkdir()
        found = postgres_steps(
            folder, count, settings=settings, statistics=statistics, wal_segment_mb=segment
        )
        print_steps(asyncio.run(found))
