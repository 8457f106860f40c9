"""The Storage contract: every backend must pass these, with the same rules on top.

Parametrised by backend (the ``backend`` fixture of conftest.py), so SQLite
and PostgreSQL are held to the same tests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from e2e_recall.report import DeviceState
from relay.blobs.rules import bind_rule, create_rule
from relay.errors import Conflict, NotFound, PayloadTooLarge
from relay.storage.base import (
    Changes,
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    EventRecord,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    SessionRecord,
    Storage,
    UserRecord,
)
from relay.storage.blob_records import BlobRecord
from relay.storage.postgres import PostgresStorage
from relay.storage.sqlite import SqliteStorage

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


def _user(tag: bytes) -> UserRecord:
    return UserRecord(tag * 32, os.urandom(32), None, T0)


def _device(user: UserRecord) -> DeviceRecord:
    return DeviceRecord(os.urandom(16), user.user_id, b"certificate", os.urandom(32), T0)


def _message(
    sender: UserRecord, device: DeviceRecord, envelope: bytes = b"ciphertext" * 10
) -> MessageRecord:
    return MessageRecord(
        message_id=os.urandom(16),
        conversation_id=os.urandom(16),
        sender=sender.user_id,
        sender_device=device.device_id,
        header=b"header",
        envelope=envelope,
        size=len(envelope),
        sent_at=T0,
        received_at=T0,
    )


async def _pair(storage: Storage) -> tuple[UserRecord, DeviceRecord, UserRecord, DeviceRecord]:
    alice, bob = _user(b"a"), _user(b"b")
    alice_device, bob_device = _device(alice), _device(bob)
    await storage.add_device(alice, alice_device)
    await storage.add_device(bob, bob_device)
    return alice, alice_device, bob, bob_device


async def test_accounts(storage: Storage) -> None:
    alice, alice_device, _, _ = await _pair(storage)
    assert await storage.get_user(user_id=alice.user_id) == alice
    assert await storage.get_devices(alice.user_id) == [alice_device]
    assert await storage.get_device(alice_device.device_id) == alice_device
    with pytest.raises(Conflict):
        await storage.add_device(alice, alice_device)
    with pytest.raises(Conflict):
        await storage.add_device(replace(alice, identity_key=os.urandom(32)), _device(alice))
    named = UserRecord(b"c" * 32, os.urandom(32), "carol", T0)
    await storage.add_device(named, _device(named))
    assert await storage.get_user(handle="carol") == named
    other = UserRecord(b"d" * 32, os.urandom(32), "carol", T0)
    with pytest.raises(Conflict):
        await storage.add_device(other, _device(other))
    assert await storage.get_user(user_id=b"d" * 32) is None  # the refused add left nothing


async def test_a_released_handle_is_free_for_another_identity(storage: Storage) -> None:
    carol = UserRecord(b"c" * 32, os.urandom(32), "carol", T0)
    await storage.add_device(carol, _device(carol))
    assert await storage.release_handle("nobody") is None
    assert await storage.release_handle("carol") == carol.user_id
    assert await storage.get_user(handle="carol") is None
    assert await storage.get_user(user_id=carol.user_id) == replace(carol, handle=None)
    newcomer = UserRecord(b"n" * 32, os.urandom(32), "carol", T0)
    await storage.add_device(newcomer, _device(newcomer))
    assert await storage.get_user(handle="carol") == newcomer


async def test_a_handle_no_user_can_hold_is_simply_not_found(storage: Storage) -> None:
    # The directory looks up whatever a request's path says; PostgreSQL's text cannot hold a
    # NUL, and the lookup must still be "no such user", not a database failure.
    carol = UserRecord(b"c" * 32, os.urandom(32), "carol", T0)
    await storage.add_device(carol, _device(carol))
    for odd in ("carol\x00", "\x00", "car\x00ol", "\u00ef\x1f\u00d6\x00"):
        assert await storage.get_user(handle=odd) is None
        assert await storage.release_handle(odd) is None
    assert await storage.get_user(handle="carol") == carol


async def test_challenges_are_single_use_and_expire(storage: Storage) -> None:
    assert await storage.put_challenge(b"c" * 32, T0 + 10, limit=10)
    assert await storage.take_challenge(b"c" * 32, T0)
    assert not await storage.take_challenge(b"c" * 32, T0)
    assert await storage.put_challenge(b"d" * 32, T0 + 10, limit=10)
    assert not await storage.take_challenge(b"d" * 32, T0 + 11)


async def test_outstanding_challenges_are_capped_and_expired_ones_forgotten(
    storage: Storage,
) -> None:
    for index in range(3):
        assert await storage.put_challenge(bytes([index]) * 32, T0 + 1 + index, limit=3)
    assert not await storage.put_challenge(b"x" * 32, T0 + 100, limit=3)  # full
    assert await storage.take_challenge(bytes([2]) * 32, T0)  # a used one leaves room
    assert await storage.put_challenge(b"y" * 32, T0 + 100, limit=3)
    assert await storage.forget_challenges(T0 + 2) == 1  # the one that expired at T0 + 1
    assert await storage.forget_challenges(T0 + 2) == 0
    assert not await storage.take_challenge(bytes([0]) * 32, T0)  # it is gone
    assert await storage.take_challenge(bytes([1]) * 32, T0 + 2)  # expiring now: still valid


async def test_sessions(storage: Storage) -> None:
    session = SessionRecord(b"h" * 32, b"u" * 32, b"d" * 16, T0, T0 + 1000)
    await storage.put_session(session)
    assert await storage.get_session(b"h" * 32) == session
    await storage.delete_session(b"h" * 32)
    assert await storage.get_session(b"h" * 32) is None


async def test_insert_is_idempotent_and_atomic(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
    )
    notice = NewEvent(bob_device.device_id, EventKind.MESSAGE, message.message_id, b"notice")
    assert await storage.insert_message(message, [delivery], [notice]) is message
    again = await storage.insert_message(replace(message, envelope=b"other"), [delivery], [notice])
    assert again == message  # the stored row, unchanged
    events = await storage.events_since(bob_device.device_id, 0, 10)
    assert [e.payload for e in events] == [b"notice"]  # the retry queued nothing
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert view.deliveries == (delivery,)
    assert await storage.stored_bytes(alice.user_id) == message.size


async def test_a_refusing_decision_writes_nothing(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
    )
    await storage.insert_message(message, [delivery], [])

    def refuse(view: MessageView) -> tuple[Changes, None]:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await storage.change_message(message.message_id, refuse)
    with pytest.raises(NotFound):
        await storage.change_message(os.urandom(16), refuse)
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert view.message == message


async def test_a_change_writes_rows_and_events_together(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
    )
    await storage.insert_message(message, [delivery], [])
    seen: list[tuple[set[bytes], list[EventRecord] | None]] = []
    storage.on_events(lambda devices, events: seen.append((devices, events)))

    def purge(view: MessageView) -> tuple[Changes, str]:
        changes = Changes(
            message=replace(
                view.message,
                envelope=None,
                state=MessageState.RECALLED,
                recalled_at=T0,
                revocation=b"revocation",
            ),
            deliveries=[replace(view.deliveries[0], wrap=None, state=DeviceState.NEVER_DELIVERED)],
            events=[NewEvent(bob_device.device_id, EventKind.REVOCATION, message.message_id, b"r")],
            purge=True,
        )
        return changes, "done"

    assert await storage.change_message(message.message_id, purge, recalls_since=T0 - 1) == "done"
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert (view.message.envelope, view.message.state, view.deliveries[0].wrap) == (
        None,
        MessageState.RECALLED,
        None,
    )
    ((devices, events),) = seen
    assert devices == {bob_device.device_id}
    assert events is not None
    (announced,) = events  # the committed event itself, with the number it was queued under
    assert (announced.kind, announced.message_id, announced.payload) == (
        EventKind.REVOCATION,
        message.message_id,
        b"r",
    )
    stored = await storage.events_since(bob_device.device_id, 0, 10)
    assert [e.seq for e in stored][-1] == announced.seq

    def count(view: MessageView) -> tuple[Changes, int]:
        return Changes(), view.recalls_since

    assert await storage.change_message(message.message_id, count, recalls_since=T0) == 1
    assert await storage.change_message(message.message_id, count, recalls_since=T0 + 1) == 0
    await storage.checkpoint()
    assert await storage.stored_bytes(alice.user_id) == 0


async def test_events_are_ordered_per_device_and_acknowledged(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    for index in range(5):
        message = _message(alice, alice_device)
        notice = NewEvent(
            bob_device.device_id, EventKind.MESSAGE, message.message_id, bytes([index])
        )
        await storage.insert_message(message, [], [notice])
    events = await storage.events_since(bob_device.device_id, 0, 10)
    assert [e.payload for e in events] == [bytes([i]) for i in range(5)]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert await storage.events_since(alice_device.device_id, 0, 10) == []
    await storage.ack_events({bob_device.device_id: events[2].seq})
    rest = await storage.events_since(bob_device.device_id, 0, 10)
    assert [e.payload for e in rest] == [bytes([3]), bytes([4])]
    device = await storage.get_device(bob_device.device_id)
    assert device is not None
    assert device.acked_seq == events[2].seq
    await storage.ack_events({bob_device.device_id: events[0].seq, alice_device.device_id: 7})
    device = await storage.get_device(bob_device.device_id)
    assert device is not None
    assert device.acked_seq == events[2].seq  # an older ack never moves the cursor back
    assert len(await storage.events_since(bob_device.device_id, 0, 10)) == 2


async def test_retention_queries_and_forgetting(storage: Storage) -> None:
    alice, alice_device, _, _ = await _pair(storage)
    old = replace(_message(alice, alice_device), received_at=T0 - 10)
    new = _message(alice, alice_device)
    await storage.insert_message(old, [], [])
    await storage.insert_message(new, [], [])
    assert await storage.messages_to_expire(T0, 10) == [old.message_id]

    def expire(view: MessageView) -> tuple[Changes, None]:
        return Changes(
            message=replace(view.message, envelope=None, state=MessageState.EXPIRED)
        ), None

    await storage.change_message(old.message_id, expire)
    assert await storage.forget_tombstones(T0) == 1
    assert await storage.get_message(old.message_id) is None
    assert await storage.get_message(new.message_id) is not None
    assert await storage.check() == []
    stats = await storage.stats()
    assert stats["messages_live"] == 1


# blobs ------------------------------------------------------------------------------------------
def _blob(owner: UserRecord, size: int = 100, at: int = T0) -> BlobRecord:
    return BlobRecord(os.urandom(16), owner.user_id, size, os.urandom(32), at)


async def test_blob_rows_bind_with_their_message_and_go_with_it(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    destroyed: list[bytes] = []
    storage.on_blobs_destroyed(destroyed.extend)
    blob = _blob(alice)
    assert await storage.create_blob(blob, create_rule(blob, quota=150)) == (blob, True)
    assert await storage.create_blob(blob, create_rule(blob, quota=150)) == (blob, False)
    second = _blob(alice)
    with pytest.raises(PayloadTooLarge):  # 100 + 100 > 150: the usage is read in the write
        await storage.create_blob(second, create_rule(second, quota=150))
    assert await storage.known_blobs([blob.blob_id, second.blob_id]) == {blob.blob_id}

    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w", False
    )
    with pytest.raises(Conflict):  # not complete: the whole insert is refused
        await storage.insert_message(message, [delivery], [], blobs=(blob.blob_id,), bind=bind_rule)
    assert await storage.get_message(message.message_id) is None
    completed = await storage.complete_blob(blob.blob_id, T0 + 1)
    assert completed is not None
    assert completed.completed_at == T0 + 1
    await storage.insert_message(message, [delivery], [], blobs=(blob.blob_id,), bind=bind_rule)
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert [(f.blob_id, f.size, f.present) for f in view.files] == [(blob.blob_id, 100, True)]
    assert await storage.message_of_blob(blob.blob_id) == message.message_id

    def downloaded(view: MessageView) -> tuple[Changes, None]:
        return Changes(blob_downloads=[(blob.blob_id, bob_device.device_id, T0 + 2)]), None

    await storage.change_message(message.message_id, downloaded)
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert view.downloads == {(blob.blob_id, bob_device.device_id)}

    def recalled(view: MessageView) -> tuple[Changes, None]:
        gone = replace(view.message, envelope=None, state=MessageState.RECALLED)
        return Changes(message=gone, destroy_blobs=True), None

    await storage.change_message(message.message_id, recalled)
    assert destroyed == [blob.blob_id]
    assert await storage.get_blob(blob.blob_id) is None
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert [f.present for f in view.files] == [False]  # the content-free record stays
    assert view.downloads == frozenset()
    await storage.forget_tombstones(T0 + 10)
    assert await storage.message_of_blob(blob.blob_id) is None


async def test_unbound_uploads_expire_and_a_discard_spares_bound_blobs(storage: Storage) -> None:
    alice, _, _, _ = await _pair(storage)
    destroyed: list[bytes] = []
    storage.on_blobs_destroyed(destroyed.extend)
    old, new = _blob(alice, at=T0), _blob(alice, at=T0 + 100)
    for blob in (old, new):
        await storage.create_blob(blob, create_rule(blob, quota=1000))
    assert await storage.expire_uploads(T0 + 50, limit=10) == [old.blob_id]
    assert destroyed == [old.blob_id]
    assert await storage.discard_blob(new.blob_id)
    assert not await storage.discard_blob(new.blob_id)
    assert await storage.known_blobs([old.blob_id, new.blob_id]) == set()
