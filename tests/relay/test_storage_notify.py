"""Events queued by the group and device stores reach another relay process's storage.

PostgreSQL only: two ``PostgresStorage`` objects on one database stand for
two relay processes.  Each store must hand the events it inserts to its
transaction, so the committing process announces them with their numbers
and the other one hears which devices to read -- a store that inserted
events without announcing them would leave the other process's sockets
silent until the next unrelated wake-up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from postgres import postgres_database

from relay.storage.base import DeviceRecord, EventKind, EventRecord, NewEvent, UserRecord
from relay.storage.device_records import LinkRecord
from relay.storage.group_records import GroupChangeRecord, GroupRecord, GroupWrite
from relay.storage.postgres import PostgresStorage

T0 = 1_800_000_000_000


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database() as url:
        yield url


class Heard:
    """What one storage's event listener was told, and a way to wait for more."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.devices: set[bytes] = set()
        self.events: list[EventRecord] = []
        self.changed = asyncio.Event()
        storage.on_events(self._told)

    def _told(self, devices: set[bytes], events: list[EventRecord] | None) -> None:
        self.devices |= devices
        self.events.extend(events or [])
        self.changed.set()

    async def until(self, devices: set[bytes]) -> None:
        while not devices <= self.devices:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=10)


@pytest.fixture
async def pair(dsn: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    a, b = PostgresStorage(dsn, lambda: T0), PostgresStorage(dsn, lambda: T0)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def test_a_group_change_through_one_process_is_heard_by_the_other(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = pair
    here, there = Heard(a), Heard(b)
    group_id, devices = os.urandom(16), [os.urandom(16) for _ in range(3)]
    write = GroupWrite(
        GroupRecord(group_id, os.urandom(16), 1, b"h" * 32, T0, T0),
        GroupChangeRecord(group_id, 1, b"change", b"h" * 32, T0),
        [],
        [NewEvent(d, EventKind.GROUP, group_id, b"payload") for d in devices],
    )
    await a.change_group(group_id, 1, lambda view: (write, None))
    assert [e.device_id for e in here.events] == devices  # this process: the records
    await there.until(set(devices))  # the other: which devices to read
    assert there.events == []
    for event in here.events:
        assert await b.events_since(event.device_id, 0, 10) == [event]


async def test_a_link_request_and_a_revocation_are_heard_by_the_other_process(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = pair
    there = Heard(b)
    user = UserRecord(os.urandom(32), os.urandom(32), None, T0)
    kept, revoked = (DeviceRecord(os.urandom(16), user.user_id, b"c", b"k", T0) for _ in "ab")
    await a.add_device(user, kept)
    await a.add_device(user, revoked)
    link = LinkRecord(os.urandom(16), user.user_id, kept.device_id, None, None, T0, T0 + 100)
    await b.create_link(link, max_open=3)
    told = NewEvent(kept.device_id, EventKind.LINK, link.link_id, b"a request")
    await a.put_link_request(link.link_id, b"request", told)
    await there.until({kept.device_id})
    notice = NewEvent(kept.device_id, EventKind.DEVICE, revoked.device_id, b"revoked")
    there.devices.clear()
    outcome = await a.revoke_device(revoked.device_id, T0 + 1, [notice])
    assert outcome.newly
    await there.until({kept.device_id})
    queued = await b.events_since(kept.device_id, 0, 10)
    assert [(e.kind, e.message_id) for e in queued] == [
        (EventKind.LINK, link.link_id),
        (EventKind.DEVICE, revoked.device_id),
    ]
