"""The local tables for groups: each group's verified chain, and the people in groups.

``groups`` holds, per group, the local name, the chain of signed changes this
device verified (as the exact bytes, in order) and the state the chain gives.
Only a chain that verified from its create to its last change is ever
written, so the state here is always one the group's own members signed.

``group_people`` caches what the relay's directory said about members who are
not contacts: their identity key (accepted only because its fingerprint is
the member's user id, so it cannot be swapped) and their device
certificates as last verified, for sending while the relay is unreachable
and for checking their deletion receipts.
"""

from __future__ import annotations

import re
import sqlite3
import weakref
from dataclasses import dataclass, fields
from typing import Any

from e2e_recall import GroupState, wire

from .store import LocalStore

__all__ = [
    "GROUP_NAME",
    "Person",
    "StoredGroup",
    "by_conversation",
    "by_id",
    "by_name",
    "delete_group",
    "list_groups",
    "person",
    "save_group",
    "save_person",
]

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_LIMITS = wire.Limits(max_size=16 << 20, max_bin=1 << 20, max_array=8192)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS groups (
        group_id BLOB PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        conversation_id BLOB NOT NULL UNIQUE,
        chain BLOB NOT NULL,
        seq INTEGER NOT NULL,
        head BLOB NOT NULL,
        members BLOB NOT NULL,
        admins BLOB NOT NULL,
        member INTEGER NOT NULL,
        named INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS group_people (
        user_id BLOB PRIMARY KEY,
        identity_key BLOB NOT NULL,
        handle TEXT,
        devices BLOB,
        seen_at INTEGER NOT NULL
    )""",
)
_ready: weakref.WeakSet[LocalStore] = weakref.WeakSet()


@dataclass
class StoredGroup:
    group_id: bytes
    name: str
    conversation_id: bytes
    chain: bytes  # msgpack list of the signed changes, in order
    seq: int
    head: bytes
    members: bytes  # msgpack sorted list of user ids
    admins: bytes
    member: int  # 1 while this user is a member
    named: int  # 1 once a person chose the name (0: named after the group id)
    updated_at: int

    def changes(self) -> list[bytes]:
        found = wire.decode(self.chain, limits=_LIMITS)
        return [bytes(c) for c in found]

    def member_ids(self) -> list[bytes]:
        return [bytes(m) for m in wire.decode(self.members, limits=_LIMITS)]

    def admin_ids(self) -> list[bytes]:
        return [bytes(m) for m in wire.decode(self.admins, limits=_LIMITS)]

    @classmethod
    def of(
        cls,
        state: GroupState,
        chain: list[bytes],
        *,
        name: str,
        me: bytes,
        named: bool,
        now: int,
    ) -> StoredGroup:
        return cls(
            group_id=state.group_id,
            name=name,
            conversation_id=state.conversation_id,
            chain=wire.encode(chain),
            seq=state.seq,
            head=state.head,
            members=wire.encode(sorted(state.members)),
            admins=wire.encode(sorted(state.admins)),
            member=int(me in state.members),
            named=int(named),
            updated_at=now,
        )


@dataclass
class Person:
    """A member who is not (necessarily) a contact, as the directory last showed them."""

    user_id: bytes
    identity_key: bytes
    handle: str | None
    devices: bytes | None  # msgpack list of signed certificates, verified when stored
    seen_at: int


def _db(store: LocalStore) -> LocalStore:
    if store not in _ready:
        for statement in _SCHEMA:  # inside the caller's transaction, if there is one
            store.execute(statement)
        _ready.add(store)
    return store


def _rows(store: LocalStore, cls: type[Any], sql: str, args: tuple[Any, ...]) -> list[Any]:
    names = ", ".join(f.name for f in fields(cls))
    cursor: sqlite3.Cursor = _db(store).execute(sql.format(names=names), args)
    return [cls(*row) for row in cursor]


def _upsert(store: LocalStore, table: str, row: StoredGroup | Person, key: str) -> None:
    names = [f.name for f in fields(row)]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names)
    _db(store).execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # noqa: S608
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
        tuple(getattr(row, n) for n in names),
    )


def list_groups(store: LocalStore) -> list[StoredGroup]:
    return _rows(store, StoredGroup, "SELECT {names} FROM groups ORDER BY name", ())


def by_name(store: LocalStore, name: str) -> StoredGroup | None:
    found = _rows(store, StoredGroup, "SELECT {names} FROM groups WHERE name = ?", (name,))
    return found[0] if found else None


def by_id(store: LocalStore, group_id: bytes) -> StoredGroup | None:
    found = _rows(store, StoredGroup, "SELECT {names} FROM groups WHERE group_id = ?", (group_id,))
    return found[0] if found else None


def by_conversation(store: LocalStore, conversation_id: object) -> StoredGroup | None:
    if type(conversation_id) is not bytes:
        return None
    found = _rows(
        store,
        StoredGroup,
        "SELECT {names} FROM groups WHERE conversation_id = ?",
        (conversation_id,),
    )
    return found[0] if found else None


def save_group(store: LocalStore, group: StoredGroup) -> None:
    """Write ``group`` (inside the caller's transaction)."""
    _upsert(store, "groups", group, "group_id")


def delete_group(store: LocalStore, group_id: bytes) -> None:
    _db(store).execute("DELETE FROM groups WHERE group_id = ?", (group_id,))


def person(store: LocalStore, user_id: bytes) -> Person | None:
    found = _rows(store, Person, "SELECT {names} FROM group_people WHERE user_id = ?", (user_id,))
    return found[0] if found else None


def save_person(store: LocalStore, who: Person) -> None:
    _upsert(store, "group_people", who, "user_id")
