"""Link slots, revocation and key rotation below the relay's rules, on every backend.

Each is a read-decide-write that SQLite's single writer serialises for
free; on PostgreSQL several relay processes run them at once.  So besides
what one call writes, these tests race several calls on the same rows
(pooled connections on PostgreSQL) and hold the store to the outcome a
serial run gives: the slot limit holds, one revocation counts, one
rotation wins.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from e2e_recall.report import DeviceState
from relay.errors import BadRequest, Conflict, NotFound, RateLimited
from relay.storage.base import (
    Changes,
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    MessageRecord,
    MessageView,
    NewEvent,
    SessionRecord,
    Storage,
    UserRecord,
)
from relay.storage.device_records import LinkRecord
from relay.storage.postgres import PostgresStorage
from relay.storage.sqlite import SqliteStorage
from relay.storage.wrap_key_records import WrapKeyRecord

T0 = 1_800_000_000_000


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


async def _user_with_devices(storage: Storage, count: int) -> tuple[UserRecord, list[DeviceRecord]]:
    user = UserRecord(os.urandom(32), os.urandom(32), None, T0)
    devices = [
        DeviceRecord(os.urandom(16), user.user_id, b"cert %d" % i, os.urandom(32), T0)
        for i in range(count)
    ]
    for device in devices:
        await storage.add_device(user, device)
    return user, devices


def _link(user: UserRecord, device: DeviceRecord, expires_at: int = T0 + 100) -> LinkRecord:
    return LinkRecord(os.urandom(16), user.user_id, device.device_id, None, None, T0, expires_at)


async def test_a_slot_takes_its_request_and_answer_once(storage: Storage) -> None:
    user, (device,) = await _user_with_devices(storage, 1)
    heard: list[bytes] = []
    storage.on_events(lambda _devices, events: heard.extend(e.message_id for e in events or []))
    link = _link(user, device)
    await storage.create_link(link, max_open=3)
    with pytest.raises(Conflict):
        await storage.create_link(link, max_open=3)
    assert await storage.get_link(link.link_id, T0) == link
    assert await storage.take_link_answer(link.link_id, T0) == (True, None)
    with pytest.raises(Conflict):  # no request yet
        await storage.put_link_answer(link.link_id, user.user_id, b"answer")
    event = NewEvent(device.device_id, EventKind.LINK, link.link_id, b"notice")
    await storage.put_link_request(link.link_id, b"request", event)
    assert heard == [link.link_id]
    with pytest.raises(Conflict):
        await storage.put_link_request(link.link_id, b"other", event)
    with pytest.raises(NotFound):  # another user's slot reads as none
        await storage.put_link_answer(link.link_id, os.urandom(32), b"answer")
    await storage.put_link_answer(link.link_id, user.user_id, b"answer")
    with pytest.raises(Conflict):
        await storage.put_link_answer(link.link_id, user.user_id, b"again")
    assert await storage.take_link_answer(link.link_id, T0) == (True, b"answer")
    assert await storage.take_link_answer(link.link_id, T0) == (False, None)  # gone with it
    with pytest.raises(NotFound):
        await storage.put_link_request(os.urandom(16), b"request", event)


async def test_expired_slots_are_invisible_then_forgotten(storage: Storage) -> None:
    user, (device,) = await _user_with_devices(storage, 1)
    old, new = _link(user, device, T0 + 10), _link(user, device, T0 + 100)
    for link in (old, new):
        await storage.create_link(link, max_open=5)
    assert await storage.get_link(old.link_id, T0 + 10) is None
    assert await storage.get_link(new.link_id, T0 + 10) == new
    assert await storage.forget_links(T0 + 10) == 1
    assert await storage.forget_links(T0 + 10) == 0
    assert await storage.get_link(new.link_id, T0) == new


async def test_slots_created_at_once_stay_within_the_limit(storage: Storage) -> None:
    user, (device,) = await _user_with_devices(storage, 1)
    outcomes = await asyncio.gather(
        *(storage.create_link(_link(user, device), max_open=3) for _ in range(8)),
        return_exceptions=True,
    )
    assert outcomes.count(None) == 3, outcomes
    assert all(isinstance(o, RateLimited) for o in outcomes if o is not None)


async def _message_to(
    storage: Storage, sender: DeviceRecord, target: DeviceRecord, message_id: bytes | None = None
) -> bytes:
    message = MessageRecord(
        message_id=message_id or os.urandom(16),
        conversation_id=os.urandom(16),
        sender=sender.user_id,
        sender_device=sender.device_id,
        header=b"header",
        envelope=b"ciphertext",
        size=10,
        sent_at=T0,
        received_at=T0,
    )
    delivery = DeliveryRecord(
        message.message_id, target.device_id, target.user_id, b"wrap", False, key_id=b"k"
    )
    notice = NewEvent(target.device_id, EventKind.MESSAGE, message.message_id, b"notice")
    await storage.insert_message(message, [delivery], [notice])
    return message.message_id


async def test_a_revocation_withdraws_the_device_once(storage: Storage) -> None:
    _, (sender_device,) = await _user_with_devices(storage, 1)
    user, (kept, revoked) = await _user_with_devices(storage, 2)
    waiting = await _message_to(storage, sender_device, revoked)
    opened = await _message_to(storage, sender_device, revoked)
    await storage.change_message(opened, _opened_by(revoked.device_id))
    await storage.put_session(SessionRecord(b"t" * 32, user.user_id, revoked.device_id, T0, T0 + 9))
    await storage.create_link(_link(user, revoked), max_open=3)
    assert await storage.pending_by_key(revoked.device_id) == {b"k": 2}

    told = NewEvent(kept.device_id, EventKind.DEVICE, revoked.device_id, b"revoked")
    outcomes = await asyncio.gather(
        *(storage.revoke_device(revoked.device_id, T0 + 5 + i, [told]) for i in range(4))
    )
    assert [o.newly for o in outcomes].count(True) == 1
    first = next(o for o in outcomes if o.newly)
    assert first.wraps_destroyed == 2
    assert all(o.revoked_at == first.revoked_at for o in outcomes)
    assert await storage.pending_by_key(revoked.device_id) == {}
    assert await storage.get_session(b"t" * 32) is None
    assert await storage.events_since(revoked.device_id, 0, 100) == []
    assert [e.kind for e in await storage.events_since(kept.device_id, 0, 100)] == [
        EventKind.DEVICE
    ]  # one revocation, so one event
    states = {}
    for message_id in (waiting, opened):
        view = await storage.get_message(message_id)
        assert view is not None
        (line,) = view.deliveries
        assert line.wrap is None
        states[message_id] = line.state
    assert states == {waiting: DeviceState.NEVER_DELIVERED, opened: DeviceState.OPENED}
    with pytest.raises(NotFound):
        await storage.revoke_device(os.urandom(16), T0, [])


async def test_no_wrap_is_stored_for_a_device_revoked_before_the_send_committed(
    storage: Storage,
) -> None:
    """The relay checks a send's devices through a cache, before the storing transaction.

    A revocation that commits in between (another relay process's, whose notice has
    not arrived yet) must still keep the wrap out: the transaction refuses it.
    """
    _, (sender_device,) = await _user_with_devices(storage, 1)
    _, (kept, revoked) = await _user_with_devices(storage, 2)
    await storage.revoke_device(revoked.device_id, T0 + 5, [])
    refused_id = os.urandom(16)
    with pytest.raises(BadRequest) as refused:
        await _message_to(storage, sender_device, revoked, refused_id)
    assert refused.value.code == "unknown_device"
    assert await storage.get_message(refused_id) is None
    assert await storage.events_since(revoked.device_id, 0, 100) == []
    assert await storage.get_message(await _message_to(storage, sender_device, kept)) is not None


def _opened_by(device_id: bytes) -> Callable[[MessageView], tuple[Changes, None]]:
    def decide(view: MessageView) -> tuple[Changes, None]:
        line = next(d for d in view.deliveries if d.device_id == device_id)
        return Changes(deliveries=[replace(line, state=DeviceState.OPENED)]), None

    return decide


async def test_of_rotations_racing_from_one_certificate_one_wins(storage: Storage) -> None:
    _, (device,) = await _user_with_devices(storage, 1)

    def previous(tag: bytes) -> WrapKeyRecord:
        return WrapKeyRecord(device.device_id, b"old key", b"cert 0", T0, T0 + 50 + len(tag), T0)

    tags = [b"new %d" % i for i in range(6)]
    outcomes = await asyncio.gather(
        *(storage.rotate_certificate(device.device_id, b"cert 0", t, previous(t)) for t in tags),
        return_exceptions=True,
    )
    assert outcomes.count(True) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if o is not True)
    winner = tags[outcomes.index(True)]
    retried = await storage.rotate_certificate(
        device.device_id, b"cert 0", winner, previous(winner)
    )
    assert retried is False  # a retry of the winner writes nothing
    (kept,) = await storage.previous_keys(device.device_id, T0)
    assert kept == previous(winner)
    assert await storage.previous_keys(device.device_id, kept.usable_until) == []
    with pytest.raises(NotFound):
        await storage.rotate_certificate(os.urandom(16), b"a", b"b", previous(b""))
