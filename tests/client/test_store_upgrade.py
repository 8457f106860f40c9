"""Profiles written by earlier versions open, and gain the columns added since."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nacl.utils

from client import store as store_module
from client.store import LocalStore


def test_a_version_1_profile_gains_the_timer_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "client.db"
    old_schema = store_module._SCHEMA.replace(
        "    problem TEXT,\n    expire_after INTEGER,\n"
        "    expire_from TEXT,\n    expires_at INTEGER,\n    key_id BLOB\n",
        "    problem TEXT\n",
    )
    assert old_schema != store_module._SCHEMA
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (b"1",))
        conn.execute(
            "INSERT INTO messages (message_id, conversation_id, peer, outgoing, sender_device, "
            "sent_at, received_at, state, recall_sealed_until, recall_opened_until) "
            "VALUES (?, ?, ?, 0, ?, 1, 2, 'sealed', 3, 3)",
            (b"m" * 16, b"c" * 16, b"p" * 32, b"d" * 16),
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    assert "expires_at" not in columns

    local = LocalStore(path, nacl.utils.random(32))
    try:
        row = local.message(b"m" * 16)
        assert row is not None
        assert (row.state, row.expire_after, row.expire_from, row.expires_at) == (
            "sealed",
            None,
            None,
            None,
        )
        assert local.get_meta("schema_version") == b"3"
        assert local.expiring(10**15) == []
        row.expires_at = 5
        local.save_message(row)
        assert [r.message_id for r in local.expiring(5)] == [b"m" * 16]
        assert local.expiring(4) == []
        assert local.next_expiry() == 5
    finally:
        local.close()


def test_a_version_2_profile_gains_the_key_id_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "client.db"
    old_schema = store_module._SCHEMA.replace(
        "    expires_at INTEGER,\n    key_id BLOB\n", "    expires_at INTEGER\n"
    )
    assert old_schema != store_module._SCHEMA
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (b"2",))
        conn.execute(
            "INSERT INTO messages (message_id, conversation_id, peer, outgoing, sender_device, "
            "sent_at, received_at, state, recall_sealed_until, recall_opened_until, expires_at) "
            "VALUES (?, ?, ?, 0, ?, 1, 2, 'sealed', 3, 3, 9)",
            (b"m" * 16, b"c" * 16, b"p" * 32, b"d" * 16),
        )
    local = LocalStore(path, nacl.utils.random(32))
    try:
        row = local.message(b"m" * 16)
        assert row is not None
        assert (row.state, row.expires_at, row.key_id) == ("sealed", 9, None)
        assert local.get_meta("schema_version") == b"3"
        row.key_id = b"k" * 16
        local.save_message(row)
        again = local.message(b"m" * 16)
        assert again is not None
        assert again.key_id == b"k" * 16
    finally:
        local.close()
