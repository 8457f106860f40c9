"""``e2e-recall-relay``'s operator commands on a PostgreSQL database (``--database-url``).

The same subprocess runs as test_cli.py, against a real server: every
command that opens storage works there, says what it did in PostgreSQL's
terms, and refuses a database it cannot use with one sentence, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from postgres import postgres_database
from test_cli import _assert_no_traceback, _error_lines, _run

from relay.storage.base import DeviceRecord, UserRecord
from relay.storage.postgres import PostgresStorage
from relay.storage.postgres_engine import SCHEMA_VERSION

T0 = 1_800_000_000_000


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database(migrated=False) as fresh:
        yield fresh


def _relay(tmp_path: Path, dsn: str, *args: str) -> tuple[int, str, str]:
    result = _run(tmp_path, *args, "--data-dir", tmp_path / "d", "--database-url", dsn)
    _assert_no_traceback(result)
    return result.returncode, result.stdout, result.stderr


async def _sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _register(dsn: str, handle: str) -> bytes:
    storage = PostgresStorage(dsn, lambda: T0, pool_size=1)
    await storage.open()
    try:
        user = UserRecord(os.urandom(32), os.urandom(32), handle, T0)
        await storage.add_device(
            user, DeviceRecord(os.urandom(16), user.user_id, b"certificate", os.urandom(32), T0)
        )
        return user.user_id
    finally:
        await storage.close()


def test_the_operator_commands_work_on_postgresql(tmp_path: Path, dsn: str) -> None:
    code, out, err = _relay(tmp_path, dsn, "migrate")
    assert code == 0, err
    assert out.strip() == f"schema version {SCHEMA_VERSION}: up to date"

    code, out, err = _relay(tmp_path, dsn, "stats")
    assert code == 0, err
    counts = json.loads(out)
    assert counts["users"] == counts["devices"] == counts["events"] == 0

    code, out, err = _relay(tmp_path, dsn, "check")
    assert (code, out.strip()) == (0, "ok"), err

    code, out, err = _relay(tmp_path, dsn, "purge-expired")
    assert code == 0, err
    assert "expired 0 message(s)" in out

    code, out, err = _relay(tmp_path, dsn, "scrub")
    assert code == 0, err
    assert re.match(
        r"rewrote the content tables \(VACUUM FULL\) in \d+\.\d\d s, checkpointed, switched", out
    )
    assert not (tmp_path / "d" / "relay.db").exists()  # nothing went to SQLite on the side


def test_release_handle_and_stats_see_the_accounts(tmp_path: Path, dsn: str) -> None:
    _relay(tmp_path, dsn, "migrate")
    user_id = asyncio.run(_register(dsn, "carol"))
    code, out, err = _relay(tmp_path, dsn, "stats")
    assert json.loads(out)["users"] == 1
    code, out, err = _relay(tmp_path, dsn, "release-handle", "carol")
    assert code == 0, err
    assert user_id.hex() in out
    code, out, err = _relay(tmp_path, dsn, "release-handle", "carol")
    assert code == 1
    assert "no account holds the handle 'carol'" in err


def test_check_reports_a_quota_counter_that_disagrees(tmp_path: Path, dsn: str) -> None:
    _relay(tmp_path, dsn, "migrate")
    user_id = asyncio.run(_register(dsn, "dave"))
    asyncio.run(_sql(dsn, "UPDATE users SET stored_bytes = 4096"))
    code, out, _ = _relay(tmp_path, dsn, "check")
    assert code == 1
    assert f"user {user_id.hex()[:16]}: the quota counter says 4096 bytes" in out
    assert out.strip().splitlines()[-1] == "1 problem(s) found"


def test_a_database_from_a_newer_relay_is_refused_untouched(tmp_path: Path, dsn: str) -> None:
    _relay(tmp_path, dsn, "migrate")
    asyncio.run(_sql(dsn, f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1})"))
    for command in ("migrate", "stats", "check"):
        code, out, err = _relay(tmp_path, dsn, command)
        assert code == 1, command
        assert out == ""
        assert "newer" in " ".join(_error_lines(err))


def test_a_database_that_does_not_exist_fails_in_one_sentence(tmp_path: Path, dsn: str) -> None:
    missing = re.sub(r"/relay_[0-9a-f]+\?", "/no_such_database?", dsn)
    assert missing != dsn
    code, out, err = _relay(tmp_path, missing, "stats")
    assert code == 1
    assert out == ""
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("e2e-recall-relay: the database failed: PostgreSQL")
