"""The scrub on PostgreSQL under a relay role without superuser: as far as its grants allow.

An operator's relay role owns its tables, so it may rewrite them (VACUUM
FULL), but CHECKPOINT needs ``pg_checkpoint`` and ``pg_switch_wal()`` an
explicit grant.  Without them the scrub still rewrites the tables, reports
what it could not do, and says so in the log once, not at every scrub; with
each grant it goes one step further.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator

import pytest
from postgres import cluster, postgres_database

from relay.storage.postgres import PostgresStorage


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
def role_dsn() -> Iterator[tuple[str, str, str]]:
    """A database owned by a new ordinary role, and a URL that logs in as that role."""
    server = cluster()
    role = f"relay_role_{secrets.token_hex(4)}"
    dsn = server.create_database(migrated=False)
    database = dsn.split("?")[0].rsplit("/", 1)[-1]
    server.server.sql("postgres", f"CREATE ROLE {role} LOGIN")
    server.server.sql("postgres", f"ALTER DATABASE {database} OWNER TO {role}")
    try:
        yield role, database, dsn.replace("postgresql://postgres@", f"postgresql://{role}@")
    finally:
        server.server.drop_database(database)  # before its owner can go
        server.server.sql("postgres", f"DROP ROLE {role}")


def _limits(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The scrub's once-only warnings (their reason: the missing grant or setting), in order."""
    return [
        str(getattr(r, "reason", ""))
        for r in caplog.records
        if getattr(r, "event", "") == "scrub_limited"
    ]


async def test_the_scrub_does_what_the_role_may_and_warns_once(
    role_dsn: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    role, database, dsn = role_dsn
    caplog.set_level(logging.INFO, logger="relay.storage")
    storage = PostgresStorage(dsn, pool_size=2)
    await storage.open()
    try:
        for _ in range(2):
            await storage.scrub()
            outcome = storage.last_scrub
            assert outcome is not None
            assert not outcome.checkpointed
            assert not outcome.wal_switched
        assert _limits(caplog) == ["checkpoint"]  # once, though the scrub ran twice
        assert "GRANT pg_checkpoint" in caplog.text

        cluster().server.sql("postgres", f"GRANT pg_checkpoint TO {role}")
        await storage.scrub()
        outcome = storage.last_scrub
        assert outcome is not None
        assert outcome.checkpointed
        assert not outcome.wal_switched
        assert "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO" in caplog.text

        # A function's grant is the database's own (pg_proc is per database): in the relay's.
        cluster().server.sql(database, f"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {role}")
        await storage.scrub()
        outcome = storage.last_scrub
        assert outcome is not None
        assert outcome.checkpointed
        assert outcome.wal_switched
        # The shared test cluster runs with the default wal_recycle = on: that is said once too.
        assert _limits(caplog) == ["checkpoint", "recycle", "switch"]
    finally:
        await storage.close()


class _Scrubs:
    """Counts the scrubs a storage reports to its observer (the relay's Metrics hook)."""

    def __init__(self) -> None:
        self.count = 0

    def on_commit(self, jobs: int, seconds: float) -> None:
        pass

    def on_read(self, seconds: float) -> None:
        pass

    def on_scrub(self, seconds: float) -> None:
        self.count += 1


async def _purges_then_wait(dsn: str, interval: float, purges: int, wait: float) -> int:
    scrubs = _Scrubs()
    storage = PostgresStorage(dsn, pool_size=2, observer=scrubs, scrub_interval=interval)
    await storage.open()
    try:
        for _ in range(purges):  # what each purge's commit asks for
            storage._engine.request_checkpoint()
            await asyncio.sleep(0.05)
        await asyncio.sleep(wait)
    finally:
        await storage.close()
    return scrubs.count


async def test_purges_close_together_share_one_scrub_and_an_interval_of_0_runs_none() -> None:
    with postgres_database() as dsn:
        assert await _purges_then_wait(dsn, interval=0.5, purges=5, wait=1.5) == 1
        assert await _purges_then_wait(dsn, interval=0.0, purges=3, wait=1.0) == 0
