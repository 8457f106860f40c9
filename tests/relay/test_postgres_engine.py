"""The PostgreSQL engine on a real server: migrations, retried writes, NOTIFY between processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import pytest
from postgres import postgres_database

from relay.storage.base import EventKind, EventRecord, SchemaTooNew, StorageError
from relay.storage.postgres_engine import SCHEMA_VERSION, PostgresEngine, Tx


@pytest.fixture
def empty_dsn() -> Iterator[str]:
    with postgres_database(migrated=False) as dsn:
        yield dsn


def _event(device_id: bytes, seq: int = 1) -> EventRecord:
    return EventRecord(seq, device_id, EventKind.MESSAGE, os.urandom(16), b"{}", 0)


async def _versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row[0] for row in await conn.fetch("SELECT version FROM schema_version")]
    finally:
        await conn.close()


async def test_a_new_database_is_migrated_once_even_by_engines_starting_together(
    empty_dsn: str,
) -> None:
    engines = [PostgresEngine(empty_dsn, pool_size=2) for _ in range(3)]
    await asyncio.gather(*(engine.start() for engine in engines))
    try:
        assert await _versions(empty_dsn) == list(range(1, SCHEMA_VERSION + 1))
        tables = await engines[0].read(
            lambda conn: conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        assert {"messages", "deliveries", "events", "groups", "wrap_keys"} <= {
            row["tablename"] for row in tables
        }
    finally:
        await asyncio.gather(*(engine.stop() for engine in engines))
    again = PostgresEngine(empty_dsn, pool_size=1)
    await again.start()
    await again.stop()
    assert await _versions(empty_dsn) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_database_from_a_newer_relay_is_refused_untouched(empty_dsn: str) -> None:
    conn = await asyncpg.connect(empty_dsn)
    await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
    await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION + 1)
    await conn.close()
    engine = PostgresEngine(empty_dsn, pool_size=1)
    with pytest.raises(SchemaTooNew, match="newer"):
        await engine.start()
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('messages')") is None
    finally:
        await conn.close()


async def test_conflicting_read_modify_writes_are_retried_until_each_counts(
    empty_dsn: str,
) -> None:
    engine = PostgresEngine(empty_dsn, pool_size=8)
    await engine.start()
    try:
        await engine.write(lambda tx: tx.conn.execute("CREATE TABLE counter (n bigint)"))
        await engine.write(lambda tx: tx.conn.execute("INSERT INTO counter VALUES (0)"))

        async def increment(tx: Tx) -> None:
            value = await tx.conn.fetchval("SELECT n FROM counter")
            await asyncio.sleep(0.005)  # hold the snapshot so that the writers collide
            await tx.conn.execute("UPDATE counter SET n = $1", value + 1)

        await asyncio.gather(*(engine.write(increment) for _ in range(40)))
        assert await engine.read(lambda conn: conn.fetchval("SELECT n FROM counter")) == 40
    finally:
        await engine.stop()


async def test_events_reach_the_other_process_after_commit_and_never_after_rollback(
    empty_dsn: str,
) -> None:
    writer, other = PostgresEngine(empty_dsn, pool_size=2), PostgresEngine(empty_dsn, pool_size=2)
    await writer.start()
    await other.start()
    heard_here: list[set[bytes]] = []
    heard_there: list[set[bytes]] = []
    announced: list[list[EventRecord]] = []
    writer.on_devices(heard_here.append)
    other.on_devices(heard_there.append)
    writer.announce = announced.append
    after: list[str] = []
    many = {os.urandom(16) for _ in range(600)}  # more than one NOTIFY payload holds
    try:

        async def queue(tx: Tx) -> None:
            tx.announce([_event(device) for device in many])
            tx.after_commit(lambda: after.append("committed"))

        await writer.write(queue)

        async def fail(tx: Tx) -> None:
            tx.announce([_event(b"\x01" * 16)])
            tx.after_commit(lambda: after.append("rolled back"))
            raise LookupError("the rule refused")

        with pytest.raises(LookupError):
            await writer.write(fail)
        for _ in range(100):
            if set().union(*heard_there) >= many:
                break
            await asyncio.sleep(0.02)
        assert set().union(*heard_there) == many
        assert heard_here == []  # a process is not told of its own events twice
        assert [len(batch) for batch in announced] == [600]
        assert after == ["committed"]
    finally:
        await writer.stop()
        await other.stop()


async def test_an_unreachable_server_is_a_storage_error_without_the_password() -> None:
    engine = PostgresEngine("postgresql://relay:hunter2@/relay?host=/nonexistent-dir", 1)
    with pytest.raises(StorageError) as caught:
        await engine.start()
    assert "hunter2" not in str(caught.value)
    with pytest.raises(StorageError, match="not open"):
        await engine.read(lambda conn: conn.fetchval("SELECT 1"))


async def test_signals_reach_the_other_process_and_one_process_leads_a_job(
    empty_dsn: str,
) -> None:
    first, second = PostgresEngine(empty_dsn, pool_size=2), PostgresEngine(empty_dsn, pool_size=2)
    await first.start()
    await second.start()
    heard_first: list[tuple[str, list[bytes]]] = []
    heard_second: list[tuple[str, list[bytes]]] = []
    first.on_signal(lambda kind, values: heard_first.append((kind, values)))
    second.on_signal(lambda kind, values: heard_second.append((kind, values)))
    try:
        await first.signal("revoked", [b"\x07" * 16])
        for _ in range(100):
            if heard_second:
                break
            await asyncio.sleep(0.02)
        assert heard_second == [("revoked", [b"\x07" * 16])]
        assert heard_first == []
        assert await first.lead(2)
        assert await first.lead(2)  # held: asking again does not give it up
        assert not await second.lead(2)
        assert await second.lead(1)  # another job is another lock
    finally:
        await first.stop()
    try:
        assert await second.lead(2)  # the leader stopped: the next attempt takes the job over
    finally:
        await second.stop()


async def _backends(dsn: str) -> int:
    """Connections to this test's database other than the one asking."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


async def test_jobs_asking_to_lead_at_once_share_one_connection_that_stop_closes(
    empty_dsn: str,
) -> None:
    # The relay starts its retention and timer jobs together, and both ask at once: each
    # opening its own lock connection would leave one behind, holding its lock after stop.
    engine = PostgresEngine(empty_dsn, pool_size=1)
    await engine.start()
    before = await _backends(empty_dsn)  # the pool's connection and the LISTEN one
    try:
        assert await asyncio.gather(engine.lead(1), engine.lead(2), engine.lead(3)) == [
            True,
            True,
            True,
        ]
        assert await _backends(empty_dsn) == before + 1
    finally:
        await engine.stop()
    for _ in range(100):  # a closed connection's backend exits just after the close
        if await _backends(empty_dsn) == 0:
            break
        await asyncio.sleep(0.02)
    assert await _backends(empty_dsn) == 0
    other = PostgresEngine(empty_dsn, pool_size=1)
    await other.start()
    try:
        assert await other.lead(1)  # the lock went with the connection
    finally:
        await other.stop()
