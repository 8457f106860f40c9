"""The group store and the blob quota, below the relay's rules, on every backend.

A change is a read-decide-write: these tests hold each backend to writing
the rows and events of an accepted change together, nothing of a refused
one, and to letting exactly one of several changes racing for the same seq
through (on PostgreSQL the racers really run at once, on pooled connections).
The blob quota is raced the same way: the usage is read in the write.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from relay.blobs.rules import create_rule
from relay.errors import Conflict, PayloadTooLarge, RelayError
from relay.storage.base import EventKind, EventRecord, NewEvent, Storage
from relay.storage.blob_records import BlobRecord
from relay.storage.group_records import (
    GroupChangeRecord,
    GroupRecord,
    GroupView,
    GroupWrite,
    MemberRecord,
)
from relay.storage.postgres import PostgresStorage
from relay.storage.sqlite import SqliteStorage

T0 = 1_800_000_000_000
Decide = Callable[[GroupView | None], tuple[GroupWrite | None, str]]


@pytest.fixture
async def storage(tmp_path: Path, database_options: dict[str, Any]) -> AsyncIterator[Storage]:
    opened: Storage
    if "database_url" in database_options:
        opened = PostgresStorage(database_options["database_url"], lambda: T0)
    else:
        opened = SqliteStorage(tmp_path / "relay.db", clock=lambda: T0)
    await opened.open()
    yield opened
    await opened.close()


class Group:
    """A group's ids and the writes that build its chain (no signatures: below the rules)."""

    def __init__(self) -> None:
        self.group_id = os.urandom(16)
        self.conversation_id = os.urandom(16)
        self.users = [os.urandom(32) for _ in range(3)]
        self.devices = [os.urandom(16) for _ in range(3)]

    def write(self, seq: int, members: list[MemberRecord], tag: bytes = b"") -> GroupWrite:
        digest = bytes([seq]) * 31 + (tag or b"\x00")
        group = GroupRecord(self.group_id, self.conversation_id, seq, digest, T0, T0 + seq)
        change = GroupChangeRecord(self.group_id, seq, b"change %d %s" % (seq, tag), digest, T0)
        events = [
            NewEvent(device, EventKind.GROUP, self.group_id, b"payload %d" % seq)
            for device in self.devices
        ]
        return GroupWrite(group, change, members, events)

    def member(self, index: int, seq: int, left: int | None = None) -> MemberRecord:
        return MemberRecord(self.group_id, self.users[index], index == 0, seq, left)


def _accept(write: GroupWrite, result: str = "accepted") -> Decide:
    """A decision that writes ``write`` on whatever it finds (the store must catch a stale one)."""
    return lambda view: (write, result)


async def test_a_change_writes_its_rows_and_events_and_reads_back(storage: Storage) -> None:
    heard: list[EventRecord] = []
    storage.on_events(lambda _devices, events: heard.extend(events or []))
    group = Group()
    first = group.write(1, [group.member(0, 1), group.member(1, 1)])
    seen: list[GroupView | None] = []

    def create(view: GroupView | None) -> tuple[GroupWrite | None, str]:
        seen.append(view)
        return first, "created"

    assert await storage.change_group(group.group_id, 1, create) == "created"
    assert seen[-1] is None  # an unknown group reads as None
    assert [e.device_id for e in heard] == group.devices
    assert [e.seq for e in heard] == sorted({e.seq for e in heard})  # distinct, in order
    assert all(e.kind is EventKind.GROUP and e.created_at == T0 for e in heard)

    second = group.write(2, [group.member(1, 1, left=2), group.member(2, 2)])
    assert await storage.change_group(group.group_id, 2, _accept(second)) == "accepted"
    view = await storage.get_group(conversation_id=group.conversation_id)
    assert view is not None
    assert view.group == second.group
    assert view.current == {group.users[0], group.users[2]}
    assert view.admins == {group.users[0]}
    assert view.member(group.users[1]) == group.member(1, 1, left=2)
    assert [m.user_id for m in view.members] == sorted(group.users)
    assert await storage.get_group(group_id=group.group_id) == view
    assert await storage.get_group(group_id=os.urandom(16)) is None

    assert await storage.group_changes(group.group_id) == [
        first.change.change,
        second.change.change,
    ]
    assert await storage.group_changes(group.group_id, upto=1) == [first.change.change]

    retried: list[GroupView | None] = []

    def retry(view: GroupView | None) -> tuple[GroupWrite | None, str]:
        retried.append(view)
        return None, "stored"

    assert await storage.change_group(group.group_id, 2, retry) == "stored"
    assert retried[-1] is not None
    assert retried[-1].change_at == second.change.change
    assert len(heard) == 6  # a decision that writes nothing queues nothing


async def test_a_stale_or_refused_change_writes_nothing(storage: Storage) -> None:
    heard: list[EventRecord] = []
    storage.on_events(lambda _devices, events: heard.extend(events or []))
    group = Group()
    await storage.change_group(group.group_id, 1, _accept(group.write(1, [group.member(0, 1)])))
    before = await storage.get_group(group.group_id)
    heard.clear()

    with pytest.raises(Conflict) as taken:  # the seq is already in the chain
        await storage.change_group(
            group.group_id, 1, _accept(group.write(1, [group.member(1, 1)], b"x"))
        )
    assert taken.value.code == "stale_head"

    def refuse(view: GroupView | None) -> tuple[GroupWrite | None, str]:
        raise Conflict("No.", "refused")

    with pytest.raises(Conflict):
        await storage.change_group(group.group_id, 2, refuse)

    clash = Group()  # another group id, but the conversation id is taken
    clash.conversation_id = group.conversation_id
    with pytest.raises(Conflict) as exists:
        await storage.change_group(clash.group_id, 1, _accept(clash.write(1, [])))
    assert exists.value.code == "group_exists"
    assert await storage.get_group(clash.group_id) is None

    assert await storage.get_group(group.group_id) == before
    assert await storage.group_changes(group.group_id) == [b"change 1 "]
    assert heard == []


async def test_of_changes_racing_for_one_seq_exactly_one_is_stored(storage: Storage) -> None:
    group = Group()
    await storage.change_group(group.group_id, 1, _accept(group.write(1, [group.member(0, 1)])))

    def decide_on_what_is_read(tag: bytes) -> Decide:
        def decide(view: GroupView | None) -> tuple[GroupWrite | None, str]:
            assert view is not None
            if view.group.seq >= 2:  # what a rule does on finding the change it wanted taken
                raise Conflict("The group changed meanwhile.", "stale_head")
            return group.write(2, [group.member(1, 2)], tag), tag.decode()

        return decide

    tags = [b"%d" % i for i in range(8)]
    outcomes = await asyncio.gather(
        *(storage.change_group(group.group_id, 2, decide_on_what_is_read(t)) for t in tags),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, str)]
    assert len(won) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if not isinstance(o, str))
    changes = await storage.group_changes(group.group_id)
    assert changes == [b"change 1 ", b"change 2 " + won[0].encode()]


async def test_blob_creates_racing_for_one_quota_pass_it_together_never(storage: Storage) -> None:
    user_id = os.urandom(32)
    blobs = [BlobRecord(os.urandom(16), user_id, 40, os.urandom(32), T0) for _ in range(6)]
    outcomes = await asyncio.gather(
        *(storage.create_blob(b, create_rule(b, quota=100)) for b in blobs),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, tuple)]
    assert len(created) == 2, outcomes  # 40 + 40 fit in 100; a third would not
    assert all(isinstance(o, PayloadTooLarge) for o in outcomes if not isinstance(o, tuple))
    assert all(isinstance(o, RelayError | tuple) for o in outcomes)
    kept = await storage.known_blobs([b.blob_id for b in blobs])
    assert kept == {record.blob_id for record, _ in created}
    done = await storage.complete_blob(created[0][0].blob_id, T0 + 5)
    assert done is not None
    assert done.completed_at == T0 + 5
    again = await storage.complete_blob(created[0][0].blob_id, T0 + 9)
    assert again is not None
    assert again.completed_at == T0 + 5
    assert await storage.complete_blob(os.urandom(16), T0) is None
    assert await storage.message_of_blob(created[0][0].blob_id) is None
