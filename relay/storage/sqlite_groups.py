"""The SQLite backend's groups: the chain of changes, the head, the members.

Rows are written whole from the :class:`~.group_records.GroupWrite` the
relay's rule returns, in the transaction that read the group for it, with
the group events; nothing here decides anything.  A send to a group's
conversation has its membership rule run here too (:func:`check_membership`),
on the group row as the transaction that stores the message reads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import Conflict
from . import sqlite_rows as rows
from .base import EventListener, EventRecord
from .group_records import GroupRecord, GroupView, GroupWrite, MemberRecord, MembershipRule
from .sqlite_engine import SqliteEngine

__all__ = ["SqliteGroups", "check_membership"]

T = TypeVar("T")
_GROUP_COLUMNS = "group_id, conversation_id, seq, head, created_at, updated_at"
_MEMBER_COLUMNS = "group_id, user_id, admin, joined_seq, left_seq"


def _to_member(row: Sequence[Any]) -> MemberRecord:
    return MemberRecord(row[0], row[1], bool(row[2]), row[3], row[4])


def read_group(
    conn: sqlite3.Connection,
    group_id: bytes | None,
    conversation_id: bytes | None,
    change_seq: int | None = None,
) -> GroupView | None:
    column, value = (
        ("group_id", group_id) if group_id is not None else ("conversation_id", conversation_id)
    )
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE {column} = ?", (value,)
    ).fetchone()
    if row is None:
        return None
    group = GroupRecord(*row)
    members = tuple(
        _to_member(r)
        for r in conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM group_members WHERE group_id = ? ORDER BY user_id",
            (group.group_id,),
        )
    )
    change_at = None
    if change_seq is not None:
        found = conn.execute(
            "SELECT change FROM group_changes WHERE group_id = ? AND seq = ?",
            (group.group_id, change_seq),
        ).fetchone()
        change_at = bytes(found[0]) if found else None
    return GroupView(group, members, change_at)


def check_membership(
    conn: sqlite3.Connection, conversation_id: bytes, rule: MembershipRule | None
) -> None:
    """Give ``rule`` the group row of ``conversation_id`` as this transaction sees it.

    Only the row (seq and head), one indexed read: the rule compares it with
    the head the send was checked against, which is all it needs.
    """
    if rule is None:
        return
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE conversation_id = ?", (conversation_id,)
    ).fetchone()
    rule(GroupRecord(*row) if row else None)


def write_group(conn: sqlite3.Connection, view: GroupView | None, write: GroupWrite) -> None:
    group, change = write.group, write.change
    if view is None:
        if conn.execute(
            "SELECT 1 FROM groups WHERE group_id = ? OR conversation_id = ?",
            (group.group_id, group.conversation_id),
        ).fetchone():
            raise Conflict("A group with this id already exists.", "group_exists")
        conn.execute(
            f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                group.group_id,
                group.conversation_id,
                group.seq,
                group.head,
                group.created_at,
                group.updated_at,
            ),
        )
    else:
        cursor = conn.execute(
            "UPDATE groups SET seq = ?, head = ?, updated_at = ? "
            "WHERE group_id = ? AND seq = ? AND head = ?",
            (
                group.seq,
                group.head,
                group.updated_at,
                group.group_id,
                view.group.seq,
                view.group.head,
            ),
        )
        if cursor.rowcount != 1:
            raise Conflict("The group changed meanwhile.", "stale_head")
    try:
        conn.execute(
            "INSERT INTO group_changes (group_id, seq, change, digest, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (change.group_id, change.seq, change.change, change.digest, change.received_at),
        )
    except sqlite3.IntegrityError:
        raise Conflict("The group already has a change with this seq.", "stale_head") from None
    conn.executemany(
        f"REPLACE INTO group_members ({_MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        [(m.group_id, m.user_id, int(m.admin), m.joined_seq, m.left_seq) for m in write.members],
    )


class SqliteGroups:
    """The group store of :class:`~relay.storage.sqlite.SqliteStorage`."""

    _engine: SqliteEngine
    _clock: Callable[[], int]
    _listeners: list[EventListener]
    # SqliteStorage's method: hand committed events to the listeners (the hub).
    _announce: Callable[[list[EventRecord]], None]

    async def get_group(
        self, group_id: bytes | None = None, conversation_id: bytes | None = None
    ) -> GroupView | None:
        return await self._engine.read(lambda conn: read_group(conn, group_id, conversation_id))

    async def group_changes(self, group_id: bytes, upto: int | None = None) -> list[bytes]:
        limit = 2**63 - 1 if upto is None else upto

        def run(conn: sqlite3.Connection) -> list[bytes]:
            found = conn.execute(
                "SELECT change FROM group_changes WHERE group_id = ? AND seq <= ? ORDER BY seq",
                (group_id, limit),
            )
            return [bytes(row[0]) for row in found]

        return await self._engine.read(run)

    async def change_group(
        self,
        group_id: bytes,
        seq: int,
        decide: Callable[[GroupView | None], tuple[GroupWrite | None, T]],
    ) -> T:
        now = self._clock()
        written: list[EventRecord] = []

        def run(conn: sqlite3.Connection) -> T:
            nonlocal written
            view = read_group(conn, group_id, None, seq)
            write, result = decide(view)
            if write is not None:
                write_group(conn, view, write)
                written = rows.insert_events(conn, write.events, now)
            return result

        result = await self._engine.write(run)
        self._announce(written)
        return result
