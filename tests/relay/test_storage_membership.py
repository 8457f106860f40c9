"""The Storage contract, continued: the membership rule a group send is stored under.

``insert_message`` and ``change_message`` (for the messages a change adds)
take a ``membership`` rule and must give it the group row of the message's
conversation as the storing transaction reads it, before writing anything;
a rule that raises writes nothing.  Same fixture and backends as
test_storage_contract.py.
"""

from __future__ import annotations

import os

import pytest
from test_storage_contract import storage  # storage: the fixture, on every backend

from relay.storage.base import (
    Changes,
    DeliveryRecord,
    DeviceRecord,
    EventKind,
    MessageRecord,
    MessageView,
    NewEvent,
    Storage,
    UserRecord,
)
from relay.storage.group_records import (
    GroupChangeRecord,
    GroupRecord,
    GroupView,
    GroupWrite,
    MemberRecord,
)

__all__ = ["storage"]

T0 = 1_800_000_000_000


class Refused(Exception):
    pass


async def _people(storage: Storage) -> tuple[UserRecord, DeviceRecord, DeviceRecord]:
    alice, bob = (
        UserRecord(b"a" * 32, os.urandom(32), None, T0),
        UserRecord(b"b" * 32, os.urandom(32), None, T0),
    )
    alice_device = DeviceRecord(os.urandom(16), alice.user_id, b"certificate", os.urandom(32), T0)
    bob_device = DeviceRecord(os.urandom(16), bob.user_id, b"certificate", os.urandom(32), T0)
    await storage.add_device(alice, alice_device)
    await storage.add_device(bob, bob_device)
    return alice, alice_device, bob_device


async def _group(storage: Storage, seq: int, previous: GroupRecord | None) -> GroupRecord:
    """Create the group (seq 0) or move its head to ``seq``, as an accepted change does."""
    group_id = previous.group_id if previous else os.urandom(16)
    conversation = previous.conversation_id if previous else os.urandom(16)
    record = GroupRecord(group_id, conversation, seq, os.urandom(32), T0, T0 + seq)

    def decide(view: GroupView | None) -> tuple[GroupWrite, None]:
        change = GroupChangeRecord(group_id, seq, b"change %d" % seq, record.head, T0)
        members = [
            MemberRecord(group_id, b"a" * 32, True, 0),
            MemberRecord(group_id, b"b" * 32, False, 0),
        ]
        return GroupWrite(record, change, members if view is None else []), None

    await storage.change_group(group_id, seq, decide)
    return record


def _message(alice: UserRecord, device: DeviceRecord, conversation: bytes) -> MessageRecord:
    return MessageRecord(
        message_id=os.urandom(16),
        conversation_id=conversation,
        sender=alice.user_id,
        sender_device=device.device_id,
        header=b"header",
        envelope=b"ciphertext",
        size=10,
        sent_at=T0,
        received_at=T0,
    )


async def test_insert_gives_the_rule_the_group_row_as_stored_and_a_refusal_writes_nothing(
    storage: Storage,
) -> None:
    alice, alice_device, bob_device = await _people(storage)
    created = await _group(storage, 0, None)
    seen: list[GroupRecord | None] = []

    def accept(current: GroupRecord | None) -> None:
        seen.append(current)

    def refuse(current: GroupRecord | None) -> None:
        raise Refused

    message = _message(alice, alice_device, created.conversation_id)
    delivery = DeliveryRecord(message.message_id, bob_device.device_id, b"b" * 32, b"w", False)
    notice = NewEvent(bob_device.device_id, EventKind.MESSAGE, message.message_id, b"n")
    moved = await _group(storage, 1, created)
    with pytest.raises(Refused):
        await storage.insert_message(message, [delivery], [notice], membership=refuse)
    assert await storage.get_message(message.message_id) is None
    assert await storage.events_since(bob_device.device_id, 0, 10) == []
    assert await storage.stored_bytes(alice.user_id) == 0

    assert await storage.insert_message(message, [delivery], [notice], membership=accept) is message
    assert seen == [moved]  # the row as it is now, not as it was created
    # A retry of the stored message is answered before the rule runs.
    await storage.insert_message(message, [delivery], [notice], membership=refuse)
    # A conversation no group has: the rule is told so.
    direct = _message(alice, alice_device, os.urandom(16))
    await storage.insert_message(direct, [], [], membership=accept)
    assert seen == [moved, None]


async def test_change_runs_the_rule_on_the_messages_it_adds(storage: Storage) -> None:
    alice, alice_device, _ = await _people(storage)
    group = await _group(storage, 0, None)
    original = _message(alice, alice_device, group.conversation_id)
    await storage.insert_message(original, [], [])
    added = _message(alice, alice_device, group.conversation_id)
    seen: list[GroupRecord | None] = []

    def replace_it(view: MessageView) -> tuple[Changes, None]:
        return Changes(new_messages=[(added, [])]), None

    def refuse(current: GroupRecord | None) -> None:
        seen.append(current)
        raise Refused

    with pytest.raises(Refused):
        await storage.change_message(original.message_id, replace_it, membership=refuse)
    assert seen == [group]
    assert await storage.get_message(added.message_id) is None
    await storage.change_message(original.message_id, replace_it, membership=seen.append)
    assert seen == [group, group]
    assert await storage.get_message(added.message_id) is not None
