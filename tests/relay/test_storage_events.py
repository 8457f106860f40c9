"""The Storage contract for event queues under concurrent writers.

A device reads its queue after the last sequence number it has seen and
acknowledges up to it, so a backend must never let an event commit with a
number below one a reader could already have seen: such an event would be
skipped for ever.  SQLite's single writer gives this by construction;
PostgreSQL's identity column does not (numbers are drawn at insert, not at
commit), so the test races many senders against a reader that follows and
acknowledges the queue, as a connected device does.  Same fixture and
backends as test_storage_contract.py.
"""

from __future__ import annotations

import asyncio
import os

from test_storage_contract import _device, _message, _user, storage  # storage: the fixture

from relay.storage.base import DeliveryRecord, EventKind, NewEvent, Storage

__all__ = ["storage"]

SENDERS = 8
EACH = 20


async def test_a_device_following_its_queue_misses_no_event(storage: Storage) -> None:
    bob = _user(b"b")
    bob_device = _device(bob)
    await storage.add_device(bob, bob_device)
    senders = [_user(bytes([index + 1])) for index in range(SENDERS)]
    devices = [_device(sender) for sender in senders]
    for sender, device in zip(senders, devices, strict=True):
        await storage.add_device(sender, device)
    sent: set[bytes] = set()
    seen: list[bytes] = []
    done = asyncio.Event()

    async def send(index: int) -> None:
        for _ in range(EACH):
            message = _message(senders[index], devices[index])
            sent.add(message.message_id)
            delivery = DeliveryRecord(
                message.message_id, bob_device.device_id, bob.user_id, os.urandom(80), False
            )
            notice = NewEvent(bob_device.device_id, EventKind.MESSAGE, message.message_id, b"n")
            await storage.insert_message(message, [delivery], [notice])

    async def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()  # read before the queue: one more pass after the last send
            events = await storage.events_since(bob_device.device_id, cursor, 1000)
            if events:
                assert [e.seq for e in events] == sorted(e.seq for e in events)
                seen.extend(event.message_id for event in events)
                cursor = events[-1].seq
                await storage.ack_events({bob_device.device_id: cursor})
            elif finished:
                return
            await asyncio.sleep(0)

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(send(index) for index in range(SENDERS)))
    done.set()
    await reader
    assert len(sent) == SENDERS * EACH
    assert sorted(seen) == sorted(sent)  # every notice read once: none skipped, none twice
    device = await storage.get_device(bob_device.device_id)
    assert device is not None
    assert device.acked_seq > 0
    assert await storage.events_since(bob_device.device_id, 0, 10) == []
