"""The PostgreSQL backend's groups: the chain of changes, the head, the members.

The same rows as :mod:`.sqlite_groups`, written whole from the
:class:`~.group_records.GroupWrite` the relay's rule returns.  SQLite's
single writer serialises a change's read-decide-write for free; here the
group row is read ``FOR UPDATE`` so two relay processes accepting changes to
one group queue behind each other instead of failing serialisation.  A send
to a group's conversation reads the row ``FOR SHARE``
(:func:`.postgres_rows.check_membership`) in the transaction that stores the
message, so a change cannot commit between the membership rule and the
message's write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import asyncpg

from ..errors import Conflict
from . import postgres_rows as rows
from .group_records import GroupRecord, GroupView, GroupWrite, MemberRecord
from .postgres_engine import Conn, PostgresEngine, Tx

__all__ = ["PostgresGroups", "read_group", "write_group"]

T = TypeVar("T")
_GROUP_COLUMNS = "group_id, conversation_id, seq, head, created_at, updated_at"
_MEMBER_COLUMNS = "group_id, user_id, admin, joined_seq, left_seq"
_NO_SEQ_LIMIT = 2**63 - 1


def _to_group(row: asyncpg.Record) -> GroupRecord:
    return GroupRecord(row[0], row[1], row[2], row[3], row[4], row[5])


async def read_group(
    conn: Conn,
    group_id: bytes | None,
    conversation_id: bytes | None,
    change_seq: int | None = None,
    lock: str = "",
) -> GroupView | None:
    """The group by id (or conversation), its members and its change at ``change_seq``.

    ``lock`` is a row-lock clause for the group row (``FOR UPDATE`` in a
    change); read-only snapshots pass none, as PostgreSQL refuses locks there.
    """
    column, value = (
        ("group_id", group_id) if group_id is not None else ("conversation_id", conversation_id)
    )
    row = await conn.fetchrow(
        f"SELECT {_GROUP_COLUMNS} FROM groups WHERE {column} = $1 {lock}", value
    )
    if row is None:
        return None
    group = _to_group(row)
    found = await conn.fetch(
        f"SELECT {_MEMBER_COLUMNS} FROM group_members WHERE group_id = $1 ORDER BY user_id",
        group.group_id,
    )
    members = tuple(MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4]) for r in found)
    change_at = None
    if change_seq is not None:
        change_at = await conn.fetchval(
            "SELECT change FROM group_changes WHERE group_id = $1 AND seq = $2",
            group.group_id,
            change_seq,
        )
    return GroupView(group, members, change_at)


async def write_group(conn: Conn, view: GroupView | None, write: GroupWrite) -> None:
    """Apply an accepted change: the group row, the change, the member rows (no events)."""
    group, change = write.group, write.change
    if view is None:
        created = await conn.fetchval(
            f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            group.group_id,
            group.conversation_id,
            group.seq,
            group.head,
            group.created_at,
            group.updated_at,
        )
        if created is None:
            raise Conflict("A group with this id already exists.", "group_exists")
    else:
        moved = await conn.fetchval(
            "UPDATE groups SET seq = $1, head = $2, updated_at = $3 "
            "WHERE group_id = $4 AND seq = $5 AND head = $6 RETURNING 1",
            group.seq,
            group.head,
            group.updated_at,
            group.group_id,
            view.group.seq,
            view.group.head,
        )
        if moved is None:
            raise Conflict("The group changed meanwhile.", "stale_head")
    stored = await conn.fetchval(
        "INSERT INTO group_changes (group_id, seq, change, digest, received_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        change.group_id,
        change.seq,
        change.change,
        change.digest,
        change.received_at,
    )
    if stored is None:
        raise Conflict("The group already has a change with this seq.", "stale_head")
    if write.members:
        await conn.executemany(
            f"INSERT INTO group_members ({_MEMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (group_id, user_id) DO UPDATE SET admin = EXCLUDED.admin, "
            "joined_seq = EXCLUDED.joined_seq, left_seq = EXCLUDED.left_seq",
            [(m.group_id, m.user_id, m.admin, m.joined_seq, m.left_seq) for m in write.members],
        )


class PostgresGroups:
    """The group store of :class:`~relay.storage.postgres.PostgresStorage`."""

    _engine: PostgresEngine
    _clock: Callable[[], int]

    async def get_group(
        self, group_id: bytes | None = None, conversation_id: bytes | None = None
    ) -> GroupView | None:
        return await self._engine.read(lambda conn: read_group(conn, group_id, conversation_id))

    async def group_changes(self, group_id: bytes, upto: int | None = None) -> list[bytes]:
        limit = _NO_SEQ_LIMIT if upto is None else upto

        async def run(conn: Conn) -> list[bytes]:
            found = await conn.fetch(
                "SELECT change FROM group_changes WHERE group_id = $1 AND seq <= $2 ORDER BY seq",
                group_id,
                limit,
            )
            return [row[0] for row in found]

        return await self._engine.read(run)

    async def change_group(
        self,
        group_id: bytes,
        seq: int,
        decide: Callable[[GroupView | None], tuple[GroupWrite | None, T]],
    ) -> T:
        now = self._clock()

        async def run(tx: Tx) -> T:
            view = await read_group(tx.conn, group_id, None, seq, lock="FOR UPDATE")
            write, result = decide(view)
            if write is not None:
                await write_group(tx.conn, view, write)
                await rows.insert_events(tx, write.events, now)
            return result

        return await self._engine.write(run)
