"""Racing calls on the account and message stores end as some serial run would.

SQLite has one writer, so a look-then-write there can never interleave;
PostgreSQL runs many transactions at once, from several relay processes.
These tests start the racing calls together (each store call is its own
transaction on its own pooled connection on PostgreSQL) and hold the
outcome to what one-at-a-time calls give: one registration of a handle, a
quota never overshot, a retried send stored once, a message recalled once,
a burst of challenges held to their cap, racing logins all stored.
(Event numbers under racing senders: test_storage_events.py.)  Same fixture
and backends as test_storage_contract.py.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from test_storage_contract import T0, _device, _message, _pair, storage

from e2e_recall.report import DeviceState
from relay.errors import Conflict
from relay.storage.base import (
    Changes,
    DeliveryRecord,
    EventKind,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    QuotaExceeded,
    SessionRecord,
    Storage,
    UserRecord,
)
from relay.storage.postgres_accounts import _CHALLENGE_SLACK, _FAST_CHALLENGES

__all__ = ["storage"]

_RACERS = 8


async def test_racing_registrations_of_one_handle_give_it_to_one_identity(
    storage: Storage,
) -> None:
    users = [UserRecord(os.urandom(32), os.urandom(32), "dora", T0) for _ in range(_RACERS)]
    outcomes = await asyncio.gather(
        *(storage.add_device(user, _device(user)) for user in users), return_exceptions=True
    )
    won = [user for user, outcome in zip(users, outcomes, strict=True) if outcome is None]
    assert len(won) == 1
    for user, outcome in zip(users, outcomes, strict=True):
        if user is not won[0]:
            assert isinstance(outcome, Conflict)
            assert outcome.code == "handle_taken"
            assert await storage.get_user(user_id=user.user_id) is None
    assert await storage.get_user(handle="dora") == won[0]


async def test_racing_devices_of_one_new_user_all_register_under_one_row(
    storage: Storage,
) -> None:
    erin = UserRecord(b"e" * 32, os.urandom(32), "erin", T0)
    devices = [_device(erin) for _ in range(_RACERS)]
    outcomes = await asyncio.gather(
        *(storage.add_device(erin, device) for device in devices), return_exceptions=True
    )
    assert outcomes == [None] * _RACERS
    assert await storage.get_user(handle="erin") == erin
    assert await storage.get_devices(erin.user_id) == sorted(devices, key=lambda d: d.device_id)


async def test_racing_sends_never_take_a_sender_past_the_quota(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    messages = [_message(alice, alice_device) for _ in range(_RACERS)]
    size = messages[0].size
    quota = 3 * size + size // 2  # room for three of them, not four

    async def send(message: MessageRecord) -> MessageRecord:
        delivery = DeliveryRecord(
            message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
        )
        return await storage.insert_message(message, [delivery], [], quota=quota)

    outcomes = await asyncio.gather(*(send(m) for m in messages), return_exceptions=True)
    stored = [m for m, outcome in zip(messages, outcomes, strict=True) if outcome == m]
    assert len(stored) == 3
    assert sum(isinstance(outcome, QuotaExceeded) for outcome in outcomes) == _RACERS - 3
    assert await storage.stored_bytes(alice.user_id) == 3 * size
    for message in messages:
        view = await storage.get_message(message.message_id)
        assert (view is not None) == (message in stored)
    assert await storage.check() == []


async def test_a_send_racing_its_own_retries_is_stored_once(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
    )
    notice = NewEvent(bob_device.device_id, EventKind.MESSAGE, message.message_id, b"n")
    outcomes = await asyncio.gather(
        *(storage.insert_message(message, [delivery], [notice]) for _ in range(_RACERS)),
        return_exceptions=True,
    )
    assert outcomes == [message] * _RACERS
    events = await storage.events_since(bob_device.device_id, 0, 100)
    assert [event.message_id for event in events] == [message.message_id]
    assert await storage.stored_bytes(alice.user_id) == message.size


async def test_racing_recalls_of_one_message_apply_once(storage: Storage) -> None:
    alice, alice_device, _, bob_device = await _pair(storage)
    message = _message(alice, alice_device)
    delivery = DeliveryRecord(
        message.message_id, bob_device.device_id, bob_device.user_id, b"w" * 80, False
    )
    await storage.insert_message(message, [delivery], [])

    def recall(view: MessageView) -> tuple[Changes, str]:
        if view.message.state is not MessageState.LIVE:
            return Changes(), "already"
        return (
            Changes(
                message=replace(
                    view.message, envelope=None, state=MessageState.RECALLED, recalled_at=T0
                ),
                deliveries=[
                    replace(d, wrap=None, state=DeviceState.NEVER_DELIVERED)
                    for d in view.deliveries
                ],
                events=[
                    NewEvent(bob_device.device_id, EventKind.REVOCATION, message.message_id, b"r")
                ],
                purge=True,
            ),
            "applied",
        )

    outcomes = await asyncio.gather(
        *(storage.change_message(message.message_id, recall) for _ in range(_RACERS))
    )
    assert sorted(outcomes) == ["already"] * (_RACERS - 1) + ["applied"]
    events = await storage.events_since(bob_device.device_id, 0, 100)
    assert [event.kind for event in events] == [EventKind.REVOCATION]
    view = await storage.get_message(message.message_id)
    assert view is not None
    assert view.message.envelope is None
    assert [d.wrap for d in view.deliveries] == [None]
    assert await storage.stored_bytes(alice.user_id) == 0


async def test_a_burst_of_challenges_fills_the_cap_and_passes_it_by_little(
    storage: Storage,
) -> None:
    # PostgreSQL stores challenges far below the cap without counting (a count in the
    # write conflicts with every concurrent insert); near the cap it counts.  The cap may
    # be passed only by the uncounted inserts in flight (none on SQLite, one writer).
    limit = _CHALLENGE_SLACK + 40
    outcomes = await asyncio.gather(
        *(storage.put_challenge(os.urandom(32), T0 + 10_000, limit) for _ in range(limit + 200))
    )
    stored = sum(outcomes)
    assert limit <= stored <= limit + _FAST_CHALLENGES
    assert not await storage.put_challenge(os.urandom(32), T0 + 10_000, limit)  # full now
    assert await storage.forget_challenges(T0 + 10_001) == stored  # every True was a row


async def test_racing_logins_all_store_and_a_later_login_sweeps_the_expired(
    storage: Storage,
) -> None:
    # PostgreSQL stores a session with an insert alone and deletes the expired ones in a
    # transaction of its own (at most once a second): the same rows as SQLite's in the end.
    short = [
        SessionRecord(os.urandom(32), b"u" * 32, os.urandom(16), T0, T0 + 1000)
        for _ in range(_RACERS * 4)
    ]
    await asyncio.gather(*(storage.put_session(session) for session in short))
    for session in short:
        assert await storage.get_session(session.token_hash) == session
    later = SessionRecord(os.urandom(32), b"u" * 32, os.urandom(16), T0 + 5000, T0 + 9000)
    await storage.put_session(later)
    for session in short:  # expired before the later login: gone
        assert await storage.get_session(session.token_hash) is None
    assert await storage.get_session(later.token_hash) == later
