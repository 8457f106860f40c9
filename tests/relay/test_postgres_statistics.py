"""PostgreSQL schema 2: the planner's statistics never hold ciphertext, wraps or key hashes.

The upgrade is tested from what a version 1 relay left: its schema, built
from the version 1 migration itself, rows in it, and statistics gathered by
ANALYZE (as autovacuum would have).  After the upgrade those statistics are
gone for the content columns, kept for the others, the rows are intact, and
a later ANALYZE samples no content column again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from postgres import postgres_database

from relay.storage.postgres_engine import SCHEMA_VERSION, PostgresEngine

MIGRATIONS = Path(__file__).parents[2] / "relay" / "storage" / "migrations" / "postgresql"
CONTENT = {
    ("messages", "envelope"),
    ("deliveries", "wrap"),
    ("events", "payload"),
    ("links", "request"),
    ("links", "answer"),
    ("sessions", "token_hash"),
}
T0 = 1_800_000_000_000


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
def empty_dsn() -> Iterator[str]:
    with postgres_database(migrated=False) as dsn:
        yield dsn


async def _version_1(conn: asyncpg.Connection) -> None:
    """The version 1 schema with messages, wraps and sessions in it, and their statistics."""
    await conn.execute((MIGRATIONS / "0001_initial.sql").read_text())
    await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
    await conn.execute("INSERT INTO schema_version VALUES (1)")
    for _ in range(50):
        message_id = os.urandom(16)
        await conn.execute(
            "INSERT INTO messages (message_id, conversation_id, sender, sender_device, header, "
            "envelope, size, sent_at, received_at, state) "
            "VALUES ($1, $2, $3, $4, $5, $6, 100, $7, $7, 'live')",
            message_id, b"c" * 16, b"a" * 32, b"d" * 16, b"header", os.urandom(100), T0,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO deliveries (message_id, device_id, user_id, wrap, own_device, state) "
            "VALUES ($1, $2, $3, $4, false, 'pending')",
            message_id, os.urandom(16), b"b" * 32, os.urandom(80),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO sessions VALUES ($1, $2, $3, $4, $5)",
            os.urandom(32), b"a" * 32, b"d" * 16, T0, T0 + 1,
        )  # fmt: skip
    await conn.execute("ANALYZE")


async def _sampled(conn: asyncpg.Connection) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT tablename, attname FROM pg_stats WHERE schemaname = 'public' "
        "AND tablename = ANY($1::text[])",
        sorted({table for table, _ in CONTENT}),
    )
    return {(row["tablename"], row["attname"]) for row in rows}


async def test_an_upgrade_drops_the_statistics_of_content_and_analyze_never_takes_them_again(
    empty_dsn: str,
) -> None:
    conn = await asyncpg.connect(empty_dsn)
    try:
        await _version_1(conn)
        before = await _sampled(conn)
        assert {
            ("messages", "envelope"),
            ("deliveries", "wrap"),
            ("sessions", "token_hash"),
        } <= before

        engine = PostgresEngine(empty_dsn, pool_size=1)
        await engine.start()
        await engine.stop()
        assert await conn.fetchval("SELECT max(version) FROM schema_version") == SCHEMA_VERSION

        after = await _sampled(conn)
        assert not after & CONTENT
        assert ("messages", "sent_at") in after  # the other columns keep theirs
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE wrap IS NOT NULL") == 50
        targets = await conn.fetch(
            "SELECT c.relname, a.attname, a.attstattarget FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = ANY($1::text[]) "
            "AND a.attnum > 0",
            sorted({table for table, _ in CONTENT}),
        )
        for row in targets:
            expected = 0 if (row["relname"], row["attname"]) in CONTENT else -1
            assert row["attstattarget"] == expected, (row["relname"], row["attname"])

        await conn.execute("ANALYZE")
        assert not await _sampled(conn) & CONTENT
    finally:
        await conn.close()
