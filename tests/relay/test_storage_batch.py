"""The Storage contract for batched changes (``change_messages``, ``message_senders``).

The timer job destroys many messages in one write transaction; a backend
must still keep each message's change whole or absent: a message whose
rule or rows fail is rolled back alone, and only what was committed is
announced.  Same fixture and backends as test_storage_contract.py.
"""

from __future__ import annotations

import os
from dataclasses import replace

from test_storage_contract import _message, _pair, storage  # storage: the fixture

from e2e_recall.report import DeviceState
from relay.errors import Conflict, NotFound
from relay.storage.base import (
    Changes,
    DeliveryRecord,
    EventKind,
    EventRecord,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    Storage,
)

__all__ = ["storage"]


async def _stored(storage: Storage, count: int) -> tuple[list[MessageRecord], bytes]:
    """``count`` messages from Alice to Bob's one device; Bob's device id."""
    alice, alice_device, _, bob_device = await _pair(storage)
    messages = []
    for _ in range(count):
        message = _message(alice, alice_device)
        delivery = DeliveryRecord(
            message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
        )
        await storage.insert_message(message, [delivery], [])
        messages.append(message)
    return messages, bob_device.device_id


async def test_a_batch_writes_each_message_or_rolls_it_back_alone(storage: Storage) -> None:
    messages, bob = await _stored(storage, 4)
    refused, broken = messages[1].message_id, messages[2].message_id
    seen: list[list[EventRecord] | None] = []
    storage.on_events(lambda devices, events: seen.append(events))

    def expire(view: MessageView) -> tuple[Changes, str]:
        message = view.message
        if message.message_id == refused:
            raise Conflict("this rule says no", code="no")
        changes = Changes(
            message=replace(message, envelope=None, state=MessageState.EXPIRED),
            deliveries=[replace(view.deliveries[0], wrap=None, state=DeviceState.EXPIRED)],
            events=[NewEvent(bob, EventKind.EXPIRED, message.message_id, b"e")],
            purge=True,
        )
        if message.message_id == broken:
            # Its message and delivery rows are written before the clash is found: the
            # savepoint must undo them.
            changes.new_messages = [(messages[0], [])]
        return changes, message.message_id.hex()

    missing = os.urandom(16)
    ids = [m.message_id for m in messages] + [missing]
    outcomes = await storage.change_messages(ids, expire)

    assert outcomes[0] == messages[0].message_id.hex()
    assert outcomes[3] == messages[3].message_id.hex()
    assert isinstance(outcomes[1], Conflict)
    assert isinstance(outcomes[2], Conflict)
    assert isinstance(outcomes[4], NotFound)
    for index, message in enumerate(messages):
        view = await storage.get_message(message.message_id)
        assert view is not None
        if index in (0, 3):
            assert (view.message.state, view.message.envelope) == (MessageState.EXPIRED, None)
            assert view.deliveries[0].wrap is None
        else:
            assert view.message == message  # untouched, the broken one's first writes undone
            assert view.deliveries[0].wrap == b"w" * 80
    expected = {messages[0].message_id, messages[3].message_id}
    queued = await storage.events_since(bob, 0, 10)
    assert {e.message_id for e in queued} == expected
    announced = [e for events in seen if events for e in events]
    assert {e.message_id for e in announced} == expected  # nothing of a rolled-back message
    assert sorted(e.seq for e in announced) == sorted(e.seq for e in queued)
    alice = messages[0].sender
    assert await storage.stored_bytes(alice) == messages[1].size + messages[2].size
    assert await storage.change_messages([], expire) == []


async def test_the_senders_of_messages_are_read_in_one_call(storage: Storage) -> None:
    messages, _ = await _stored(storage, 3)
    ids = [m.message_id for m in messages]
    found = await storage.message_senders([*ids, os.urandom(16)])
    assert found == {m.message_id: m.sender for m in messages}
    assert await storage.message_senders([]) == {}
