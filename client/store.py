"""The local store: contacts, conversations' messages and the outbox, in SQLite.

Bodies and session tokens are sealed with the keystore's storage key
(``SecretBox``), so the database file alone holds no message content.
``secure_delete`` is on, and after a recall the WAL is checkpointed and
truncated, so a deleted body does not linger in free pages or the log.

Rows are plain dataclasses; the client decides what they mean.  Several
commands may run at once on one profile (``watch`` in one terminal, ``send``
in another), so every write is a short transaction and readers wait for a
busy writer instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils

from .errors import KeystoreError

__all__ = ["Contact", "LocalStore", "OutboxItem", "StoredFile", "StoredMessage"]

_NONCE_LEN = nacl.secret.SecretBox.NONCE_SIZE

_SCHEMA_VERSION = 3
# Version 2: the header's disappearing-message timer on each message, and when this copy
# expires.  Version 3: the id of this device's key a received message's wrap was made to,
# as the fetch answer names it.  Both are added to an older profile's table on opening.
_ADDED_COLUMNS = (
    ("expire_after", "INTEGER"),
    ("expire_from", "TEXT"),
    ("expires_at", "INTEGER"),
    ("key_id", "BLOB"),
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB
);
CREATE TABLE IF NOT EXISTS contacts (
    name TEXT PRIMARY KEY,
    user_id BLOB NOT NULL UNIQUE,
    identity_key BLOB NOT NULL,
    handle TEXT,
    added_at INTEGER NOT NULL,
    verified_at INTEGER,
    changed_key BLOB,
    changed_at INTEGER,
    unsolicited INTEGER NOT NULL DEFAULT 0,
    devices BLOB
);
CREATE TABLE IF NOT EXISTS messages (
    message_id BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL,
    peer BLOB NOT NULL,
    outgoing INTEGER NOT NULL,
    sender_device BLOB NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'text',
    envelope BLOB,
    body BLOB,
    replaces BLOB,
    replaced_by BLOB,
    recall_sealed_until INTEGER NOT NULL,
    recall_opened_until INTEGER NOT NULL,
    opened_at INTEGER,
    recalled_at INTEGER,
    report BLOB,
    problem TEXT,
    expire_after INTEGER,
    expire_from TEXT,
    expires_at INTEGER,
    key_id BLOB
);
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (peer, sent_at);
CREATE TABLE IF NOT EXISTS outbox (
    message_id BLOB NOT NULL,
    action TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (message_id, action)
);
CREATE TABLE IF NOT EXISTS early_revocations (
    message_id BLOB PRIMARY KEY,
    sender BLOB NOT NULL,
    revocation BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    message_id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE IF NOT EXISTS notifications (
    message_id BLOB PRIMARY KEY,
    sender BLOB NOT NULL,
    at INTEGER NOT NULL
);
"""


@dataclass
class Contact:
    name: str
    user_id: bytes
    identity_key: bytes
    handle: str | None
    added_at: int
    verified_at: int | None = None
    changed_key: bytes | None = None
    changed_at: int | None = None
    unsolicited: int = 0
    devices: bytes | None = None  # msgpack list of the signed device certificates last seen


@dataclass
class StoredMessage:
    """One message as this device knows it; ``body`` is sealed at rest."""

    message_id: bytes
    conversation_id: bytes
    peer: bytes
    outgoing: int
    sender_device: bytes
    sent_at: int
    received_at: int
    state: str
    kind: str
    envelope: bytes | None
    body: bytes | None
    replaces: bytes | None
    replaced_by: bytes | None
    recall_sealed_until: int
    recall_opened_until: int
    opened_at: int | None = None
    recalled_at: int | None = None
    report: bytes | None = None
    problem: str | None = None
    expire_after: int | None = None  # the header's timer (ms), None without one
    expire_from: str | None = None  # "sent" or "opened"
    expires_at: int | None = None  # when this copy is deleted here (None: no timer, or unopened)
    key_id: bytes | None = None  # the key of ours its wrap is made to (None: sent, or no key id)


@dataclass
class OutboxItem:
    """A request to repeat, byte for byte, until the relay acknowledges it."""

    message_id: bytes
    action: str
    sealed: bytes
    created_at: int
    attempts: int = 0
    last_error: str | None = None


@dataclass
class StoredFile:
    """One file of a message; what is known of it (name, size, key, where saved) is sealed."""

    message_id: bytes
    idx: int
    state: str  # sending, sent, waiting (opened, not yet saved), saved
    sealed: bytes


Row = TypeVar("Row", Contact, StoredMessage, OutboxItem, StoredFile)


def _columns(cls: type[Any]) -> str:
    return ", ".join(f.name for f in fields(cls))


class LocalStore:
    """The profile's database, with the storage key to seal what it holds."""

    def __init__(self, path: Path, storage_key: bytes) -> None:
        self.path = path
        self._key = bytes(nacl.secret.SecretBox(storage_key))  # checks the key as it always did
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError:
            raise KeystoreError(
                f"The local database {path} is damaged or is not an e2e-recall database.",
                "store_damaged",
            ) from None
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            version = self.get_meta("schema_version")
            if version is not None and int(version) > _SCHEMA_VERSION:
                raise KeystoreError(
                    "This profile was written by a newer e2e-recall; upgrade first.",
                    "newer_profile",
                )
            have = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS messages_expiring ON messages (expires_at) "
                "WHERE expires_at IS NOT NULL"
            )
            if version is None or int(version) < _SCHEMA_VERSION:
                self.set_meta("schema_version", str(_SCHEMA_VERSION).encode())
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (taken at once, so two writers queue)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def scrub(self) -> None:
        """Push deleted pages out of the WAL so removed bodies leave the disk."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # sealing ------------------------------------------------------------------------------------
    # SecretBox's own format, nonce || MAC || ciphertext, straight from the bindings it
    # calls: several items are sealed for every message sent or received.
    def seal(self, plain: bytes) -> bytes:
        nonce = nacl.utils.random(_NONCE_LEN)
        return nonce + nacl.bindings.crypto_secretbox_easy(plain, nonce, self._key)

    def unseal(self, sealed: bytes) -> bytes:
        if len(sealed) < _NONCE_LEN:
            raise nacl.exceptions.ValueError(f"The nonce must be exactly {_NONCE_LEN} bytes long")
        try:
            return nacl.bindings.crypto_secretbox_open_easy(
                sealed[_NONCE_LEN:], sealed[:_NONCE_LEN], self._key
            )
        except nacl.exceptions.CryptoError:
            raise KeystoreError(
                "A stored item does not decrypt with this profile's key; the database "
                "belongs to another profile or is damaged.",
                "store_damaged",
            ) from None

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One statement, for tables kept by other modules (``group_store``)."""
        return self._db.execute(sql, args)

    # meta ---------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.get_meta(key)
        return default if value is None else int(value)

    def set_int(self, key: str, value: int) -> None:
        self.set_meta(key, str(value).encode())

    # generic rows -------------------------------------------------------------------------------
    def _select(self, cls: type[Row], table: str, where: str, args: tuple[Any, ...]) -> list[Row]:
        rows = self._db.execute(f"SELECT {_columns(cls)} FROM {table} {where}", args)  # noqa: S608
        return [cls(*row) for row in rows]

    def _upsert(
        self, table: str, row: Contact | StoredMessage | OutboxItem | StoredFile, keys: str
    ) -> None:
        names = [f.name for f in fields(row)]
        values = [getattr(row, n) for n in names]
        updates = ", ".join(f"{n} = excluded.{n}" for n in names)
        self._db.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # noqa: S608
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}",
            values,
        )

    # contacts -----------------------------------------------------------------------------------
    def contacts(self) -> list[Contact]:
        return self._select(Contact, "contacts", "ORDER BY name", ())

    def contact_by_name(self, name: str) -> Contact | None:
        found = self._select(Contact, "contacts", "WHERE name = ?", (name,))
        return found[0] if found else None

    def contact_by_user(self, user_id: bytes) -> Contact | None:
        found = self._select(Contact, "contacts", "WHERE user_id = ?", (user_id,))
        return found[0] if found else None

    def save_contact(self, contact: Contact) -> None:
        self._upsert("contacts", contact, "name")

    def remove_contact(self, name: str) -> None:
        self._db.execute("DELETE FROM contacts WHERE name = ?", (name,))

    # messages -----------------------------------------------------------------------------------
    def message(self, message_id: bytes) -> StoredMessage | None:
        found = self._select(StoredMessage, "messages", "WHERE message_id = ?", (message_id,))
        return found[0] if found else None

    def messages_matching(self, hex_prefix: str) -> list[StoredMessage]:
        """Up to three messages whose id starts with ``hex_prefix`` (short ids people type)."""
        return self._select(
            StoredMessage,
            "messages",
            "WHERE hex(message_id) LIKE ? LIMIT 3",
            (hex_prefix.upper() + "%",),
        )

    def conversation(self, peer: bytes) -> list[StoredMessage]:
        return self._select(StoredMessage, "messages", "WHERE peer = ? ORDER BY sent_at", (peer,))

    def in_conversation(self, conversation_id: bytes) -> list[StoredMessage]:
        return self._select(
            StoredMessage,
            "messages",
            "WHERE conversation_id = ? ORDER BY sent_at",
            (conversation_id,),
        )

    def incoming_in_state(self, *states: str) -> list[StoredMessage]:
        marks = ", ".join("?" * len(states))
        return self._select(
            StoredMessage,
            "messages",
            f"WHERE outgoing = 0 AND state IN ({marks}) ORDER BY sent_at",
            states,
        )

    def expiring(self, now: int) -> list[StoredMessage]:
        """Messages whose copy here is due to be deleted at ``now`` and still holds anything."""
        return self._select(
            StoredMessage,
            "messages",
            "WHERE expires_at IS NOT NULL AND expires_at <= ? "
            "AND state NOT IN ('expired', 'recalled', 'deleted') ORDER BY expires_at",
            (now,),
        )

    def next_expiry(self) -> int | None:
        """The earliest moment a copy here is to be deleted, for ``watch`` to wake at."""
        row = self._db.execute(
            "SELECT min(expires_at) FROM messages "
            "WHERE expires_at IS NOT NULL AND state NOT IN ('expired', 'recalled', 'deleted')"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def save_message(self, message: StoredMessage) -> None:
        self._upsert("messages", message, "message_id")

    def delete_message(self, message_id: bytes) -> None:
        self._db.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))

    # outbox -------------------------------------------------------------------------------------
    def outbox(self) -> list[OutboxItem]:
        return self._select(OutboxItem, "outbox", "ORDER BY created_at", ())

    def outbox_item(self, message_id: bytes, action: str) -> OutboxItem | None:
        found = self._select(
            OutboxItem, "outbox", "WHERE message_id = ? AND action = ?", (message_id, action)
        )
        return found[0] if found else None

    def save_outbox(self, item: OutboxItem) -> None:
        self._upsert("outbox", item, "message_id, action")

    def drop_outbox(self, message_id: bytes, action: str | None = None) -> None:
        if action is None:
            self._db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        else:
            self._db.execute(
                "DELETE FROM outbox WHERE message_id = ? AND action = ?", (message_id, action)
            )

    # files of a message ------------------------------------------------------------------------
    def files(self, message_id: bytes) -> list[StoredFile]:
        return self._select(StoredFile, "files", "WHERE message_id = ? ORDER BY idx", (message_id,))

    def save_file(self, row: StoredFile) -> None:
        self._upsert("files", row, "message_id, idx")

    def delete_files(self, message_id: bytes) -> None:
        self._db.execute("DELETE FROM files WHERE message_id = ?", (message_id,))

    # revocations that came before their message ---------------------------------------------
    def early_revocation(self, message_id: bytes) -> tuple[bytes, bytes] | None:
        row = self._db.execute(
            "SELECT sender, revocation FROM early_revocations WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def remember_revocation(
        self, message_id: bytes, sender: bytes, revocation: bytes, at: int
    ) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO early_revocations VALUES (?, ?, ?, ?)",
            (message_id, sender, revocation, at),
        )

    # notifications (sender and time only) -------------------------------------------------------
    def notify(self, message_id: bytes, sender: bytes, at: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO notifications VALUES (?, ?, ?)", (message_id, sender, at)
        )

    def notifications(self) -> list[tuple[bytes, bytes, int]]:
        rows = self._db.execute("SELECT message_id, sender, at FROM notifications ORDER BY at")
        return [(bytes(m), bytes(s), int(a)) for m, s, a in rows]

    def clear_notification(self, message_id: bytes) -> None:
        self._db.execute("DELETE FROM notifications WHERE message_id = ?", (message_id,))
