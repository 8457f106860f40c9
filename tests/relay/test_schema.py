"""Schema versions: a version 1 database is upgraded; a newer one is refused, untouched.

The version 1 database is built from the version 1 migration itself, with
rows a version 1 relay wrote, so the upgrade is tested against what an
operator really has on disk.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from relay.storage.base import MessageRecord, QuotaExceeded, SchemaTooNew
from relay.storage.sqlite import SqliteStorage
from relay.storage.sqlite_engine import SCHEMA_VERSION

from relay_process import relay_cli

T0 = 1_800_000_000_000
MIGRATIONS = Path(__file__).parents[2] / "relay" / "storage" / "migrations" / "sqlite"
ALICE, BOB = b"a" * 32, b"b" * 32


def _message(conn: sqlite3.Connection, sender: bytes, size: int, state: str) -> bytes:
    message_id = os.urandom(16)
    envelope = os.urandom(size) if state == "live" else None
    conn.execute(
        "INSERT INTO messages (message_id, conversation_id, sender, sender_device, header, "
        "envelope, size, sent_at, received_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message_id, b"c" * 16, sender, b"d" * 16, b"header", envelope, size, T0, T0, state),
    )
    return message_id


def _version_1_database(path: Path) -> None:
    """What a version 1 relay left: users, live and recalled messages, a challenge."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript((MIGRATIONS / "0001_initial.sql").read_text())
    for user in (ALICE, BOB):
        conn.execute(
            "INSERT INTO users (user_id, identity_key, handle, created_at) VALUES (?, ?, ?, ?)",
            (user, os.urandom(32), None, T0),
        )
    _message(conn, ALICE, 100, "live")
    _message(conn, ALICE, 200, "live")
    _message(conn, ALICE, 50, "recalled")
    _message(conn, BOB, 70, "live")
    conn.execute("INSERT INTO challenges VALUES (?, ?)", (os.urandom(32), T0 + 1))
    conn.execute("PRAGMA user_version=1")
    conn.close()


def _version(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_the_code_knows_every_schema_version() -> None:
    assert SCHEMA_VERSION == 8
    assert sorted(p.name[:4] for p in MIGRATIONS.glob("*.sql")) == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
    ]


async def test_a_version_1_database_is_upgraded_with_its_quota_counters(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    _version_1_database(db)
    storage = SqliteStorage(db, clock=lambda: T0)
    await storage.open()
    try:
        assert _version(db) == SCHEMA_VERSION
        assert await storage.stored_bytes(ALICE) == 300  # live messages only, not the recalled
        assert await storage.stored_bytes(BOB) == 70
        assert await storage.check() == []
        stats = await storage.stats()
        assert (stats["messages_live"], stats["messages_recalled"]) == (3, 1)
        assert stats["ciphertext_bytes"] == 370
        assert await storage.forget_challenges(T0 + 2) == 1  # the new expiry index serves it
    finally:
        await storage.close()
    with sqlite3.connect(db) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "challenges_by_expiry" in indexes


async def test_the_upgraded_counter_enforces_the_quota(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    _version_1_database(db)
    storage = SqliteStorage(db, clock=lambda: T0)
    await storage.open()
    try:
        record = MessageRecord(
            os.urandom(16), b"c" * 16, ALICE, b"d" * 16, b"h", b"e" * 60, 60, T0, T0
        )
        with pytest.raises(QuotaExceeded):
            await storage.insert_message(record, [], [], quota=350)
        await storage.insert_message(record, [], [], quota=360)
        assert await storage.stored_bytes(ALICE) == 360
    finally:
        await storage.close()


def test_migrate_and_check_upgrade_a_version_1_database_from_the_command_line(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _version_1_database(data / "relay.db")
    migrate = relay_cli(tmp_path, "migrate", "--data-dir", data)
    assert migrate.returncode == 0, migrate.stderr
    assert f"schema version {SCHEMA_VERSION}" in migrate.stdout
    check = relay_cli(tmp_path, "check", "--data-dir", data)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")


def test_check_finds_a_quota_counter_that_drifted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _version_1_database(data / "relay.db")
    assert relay_cli(tmp_path, "migrate", "--data-dir", data).returncode == 0
    with sqlite3.connect(data / "relay.db") as conn:
        conn.execute("UPDATE users SET stored_bytes = 5 WHERE user_id = ?", (ALICE,))
    check = relay_cli(tmp_path, "check", "--data-dir", data)
    assert check.returncode == 1
    assert "quota counter says 5 bytes" in check.stdout
    assert "hold 300" in check.stdout


def _newer_database(path: Path) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript((MIGRATIONS / "0001_initial.sql").read_text())
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    digest = _newer_database(db)
    storage = SqliteStorage(db, clock=lambda: T0)
    with pytest.raises(SchemaTooNew) as refused:
        await storage.open()
    message = str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "newer e2e-recall-relay" in message
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not db.with_name("relay.db-wal").exists()  # not even switched to WAL mode


@pytest.mark.parametrize("command", ["serve", "migrate", "check"])
def test_every_command_refuses_a_newer_database_in_one_sentence(
    tmp_path: Path, command: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    digest = _newer_database(data / "relay.db")
    result = relay_cli(tmp_path, command, "--data-dir", data, "--port", "0")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("e2e-recall-relay: the database ")
    assert "newer e2e-recall-relay" in errors[0]
    assert _version(data / "relay.db") == SCHEMA_VERSION + 1
    assert hashlib.sha256((data / "relay.db").read_bytes()).hexdigest() == digest
