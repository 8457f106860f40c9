"""A group send and a membership change at the same moment: the storing transaction decides.

Two relays share one database here, as two relay processes behind a load
balancer would.  Relay ``a`` keeps the group's membership in its cache (its
cache clock is held still, so it cannot expire during the test); the changes
go through relay ``b``, so ``a``'s cache is behind on every send that
follows.  Only the check made by the transaction that stores the message can
then see the change, and these tests show that it does: a send checked
against the old membership is checked again on the database's, refused
(``409 group_changed`` for a wrap to a removed member, ``409
missing_devices`` for an added member left out) and stores nothing, and the
same envelope wrapped to the new membership is accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from group_driver import create_group, seal_to_group, send_to_group, wraps_to_people

import e2e_recall as er
from e2e_recall import GroupAction, MessageKind
from relay.groups.rules import MembershipMoved
from relay.messaging import Wrap

from driver import Clock, Person, Relay, RelayRefused, start_relay


@dataclasses.dataclass
class Pair:
    a: Relay  # the relay the sender uses, whose membership cache is behind
    b: Relay  # another relay process on the same database, which takes the changes


@pytest.fixture
async def pair(
    tmp_path: Path, clock: Clock, database_options: dict[str, Any]
) -> AsyncIterator[Pair]:
    a = await start_relay(tmp_path / "relay", clock, **database_options)
    b = await start_relay(tmp_path / "relay", clock, **database_options)
    a.services.groups.monotonic = lambda: 0.0  # a's cached membership never expires
    try:
        yield Pair(a, b)
    finally:
        await b.runner.cleanup()
        await a.runner.cleanup()


async def _people(relay: Relay, http: aiohttp.ClientSession, *names: str) -> list[Person]:
    people = []
    for name in names:
        person = Person(name, relay, http)
        await person.add_device()
        await person.add_device()
        people.append(person)
    return people


def _on(person: Person, relay: Relay) -> Person:
    """The same person (identity, devices, sessions) talking to another relay process."""
    return dataclasses.replace(person, relay=relay)


async def _post(sender: Person, envelope: bytes, wraps: list[dict[str, bytes]]) -> dict[str, Any]:
    body = {"envelope": envelope, "wraps": wraps, "blobs": []}
    return await sender.call("POST", "/v1/messages", body)


async def _notices(person: Person, message_id: bytes) -> int:
    """How many of the person's devices were told of the message."""
    told = 0
    for device in range(len(person.devices)):
        events = await person.sync(device=device)
        told += sum(1 for e in events if e["kind"] == "message" and e["message_id"] == message_id)
    return told


async def test_a_send_checked_before_another_process_removed_a_member_is_refused_when_stored(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await _people(pair.a, http, "alice", "bob", "carol")
    group = await create_group(alice, bob, carol)
    await send_to_group(alice, group, "warms a's cache")  # a now holds the membership
    before = list(group.members)
    await group.change(_on(alice, pair.b), GroupAction.REMOVE, [carol])  # acknowledged

    # Wrapped as a's cache still has it: the cached check passes, the storing one does not.
    header, sealed = seal_to_group(alice, group, "not for carol")
    old_wraps = wraps_to_people(alice, before, header, sealed.message_key)
    with pytest.raises(RelayRefused) as refused:
        await _post(alice, sealed.envelope, old_wraps)
    assert (refused.value.status, refused.value.code) == (409, "group_changed")
    assert refused.value.body["facts"] == {"seq": 1, "head": group.changes[-1].digest}
    assert await pair.a.services.storage.get_message(header.message_id) is None
    assert await _notices(carol, header.message_id) == 0

    # The client's answer: the same envelope, wrapped again to the members now.
    answer = await _post(
        alice, sealed.envelope, wraps_to_people(alice, group.members, header, sealed.message_key)
    )
    assert answer["created"] is True
    stored = await pair.a.services.storage.get_message(header.message_id)
    assert stored is not None
    assert {d.user_id for d in stored.deliveries} == {alice.user_id, bob.user_id}
    assert await _notices(carol, header.message_id) == 0
    assert await _notices(bob, header.message_id) == 2


async def test_a_send_checked_before_another_process_added_a_member_is_refused(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    """a's cached membership passes the send; the storing transaction sees the head moved.

    a then checks the send again on the database's membership, which names Dave: the
    refusal is for his devices, as it would be with no cache at all.
    """
    alice, bob, dave = await _people(pair.a, http, "alice", "bob", "dave")
    group = await create_group(alice, bob)
    await send_to_group(alice, group, "warms a's cache")
    before = list(group.members)
    await group.change(_on(alice, pair.b), GroupAction.ADD, [dave])

    header, sealed = seal_to_group(alice, group, "dave must have it too")
    with pytest.raises(RelayRefused) as refused:
        await _post(
            alice, sealed.envelope, wraps_to_people(alice, before, header, sealed.message_key)
        )
    assert (refused.value.status, refused.value.code) == (409, "missing_devices")
    assert await pair.a.services.storage.get_message(header.message_id) is None

    wraps = wraps_to_people(alice, group.members, header, sealed.message_key)
    assert (await _post(alice, sealed.envelope, wraps))["created"] is True
    assert await _notices(dave, header.message_id) == 2


async def test_a_refusal_is_never_the_caches_word_alone(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    """Wrapped to the membership the database has, a send is accepted at once."""
    alice, bob, carol = await _people(pair.a, http, "alice", "bob", "carol")
    group = await create_group(alice, bob, carol)
    await send_to_group(alice, group, "warms a's cache")
    await group.change(_on(alice, pair.b), GroupAction.REMOVE, [carol])
    # a's cache still lists carol, so it would ask for her devices (409 missing_devices);
    # checked again against the database, the send is right as it is.
    header, answer = await send_to_group(alice, group, "without carol")
    assert answer["created"] is True
    assert await _notices(carol, header.message_id) == 0


async def test_a_replacement_to_a_group_that_moved_leaves_the_recall_undone(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await _people(pair.a, http, "alice", "bob", "carol")
    group = await create_group(alice, bob, carol)
    original, _ = await send_to_group(alice, group, "wrong")
    before = list(group.members)
    await group.change(_on(alice, pair.b), GroupAction.REMOVE, [carol])

    header, _ = seal_to_group(alice, group, "right")
    header = dataclasses.replace(header, kind=MessageKind.REPLACEMENT, replaces=original.message_id)
    sealed = er.seal_message(header, er.Body("right"), alice.identity)
    replacement = {
        "envelope": sealed.envelope,
        "wraps": wraps_to_people(alice, before, header, sealed.message_key),
        "blobs": [],
    }
    with pytest.raises(RelayRefused) as refused:
        await alice.recall(original, replacement, replacement_id=header.message_id)
    assert (refused.value.status, refused.value.code) == (409, "group_changed")
    assert (await alice.report(original.message_id))["state"] == "live"  # nothing recalled
    assert await pair.a.services.storage.get_message(header.message_id) is None

    replacement["wraps"] = wraps_to_people(alice, group.members, header, sealed.message_key)
    answer = await alice.recall(original, replacement, replacement_id=header.message_id)
    assert answer["report"]["state"] == "recalled"
    assert await _notices(carol, header.message_id) == 0


@pytest.mark.parametrize("changes_on", ["a", "b"])
async def test_a_send_racing_a_change_is_ordered_before_it_or_refused(
    pair: Pair, http: aiohttp.ClientSession, changes_on: str
) -> None:
    """Real concurrency: a send wrapped to the members before each change, posted with it.

    Each round posts, at the same moment, a send wrapped to the membership as
    it stands (to relay ``a``) and a change that removes or re-adds carol (to
    ``a`` itself, or to ``b``).  Whatever the interleaving, a stored send
    must be ordered before the change, which bob's event queue shows (events
    are numbered in commit order, across processes too); one that would come
    after must have been refused, and its retry, wrapped to the new
    membership, is accepted.
    """
    alice, bob, carol = await _people(pair.a, http, "alice", "bob", "carol")
    admin = alice if changes_on == "a" else _on(alice, pair.b)
    group = await create_group(alice, bob, carol)
    await bob.sync()
    rounds, stored, refused = 30, 0, 0
    codes: dict[str, int] = {}
    for n in range(rounds):
        action = GroupAction.REMOVE if carol in group.members else GroupAction.ADD
        before = list(group.members)
        header, sealed = seal_to_group(alice, group, f"round {n}")
        wraps = wraps_to_people(alice, before, header, sealed.message_key)
        sent, _ = await asyncio.gather(
            _post_or_refusal(alice, sealed.envelope, wraps), group.change(admin, action, [carol])
        )
        events = await bob.sync()
        change_seq = next(e["seq"] for e in events if e["kind"] == "group")
        notice = [e["seq"] for e in events if e["message_id"] == header.message_id]
        if isinstance(sent, RelayRefused):
            assert (sent.status, sent.code) in ((409, "group_changed"), (409, "missing_devices"))
            codes[str(sent.code)] = codes.get(str(sent.code), 0) + 1
            refused += 1
            assert notice == []
            wraps = wraps_to_people(alice, group.members, header, sealed.message_key)
            assert (await _post(alice, sealed.envelope, wraps))["created"] is True
        else:
            stored += 1
            assert notice
            assert notice[0] < change_seq  # stored before the change committed
        view = await pair.a.services.storage.get_message(header.message_id)
        assert view is not None
        wrapped = {d.user_id for d in view.deliveries}
        assert wrapped == {p.user_id for p in (before if notice else group.members)}
    print(
        f"\nchanges on {changes_on}, {rounds} rounds: {stored} sends ordered before the "
        f"change, {refused} refused {codes} and accepted when wrapped again"
    )
    assert stored + refused == rounds


async def _post_or_refusal(
    sender: Person, envelope: bytes, wraps: list[dict[str, bytes]]
) -> dict[str, Any] | RelayRefused:
    try:
        return await _post(sender, envelope, wraps)
    except RelayRefused as exc:
        return exc


async def test_the_storing_rule_sees_what_the_writer_committed_before_it(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    """Two relay-side calls ordered through the one writer: check, removal, store."""
    alice, bob, carol = await _people(relay, http, "alice", "bob", "carol")
    group = await create_group(alice, bob, carol)
    header, sealed = seal_to_group(alice, group, "checked, then stored")
    wraps = _wraps(wraps_to_people(alice, group.members, header, sealed.message_key))
    session = await relay.services.accounts.authenticate(f"Bearer {alice.devices[0].token}")
    prepared = await relay.services.messaging.prepare(session, sealed.envelope, wraps)
    assert prepared.group is not None
    assert prepared.group.seq == 0
    await group.change(alice, GroupAction.REMOVE, [carol])  # committed by the writer
    storage = relay.services.storage
    with pytest.raises(MembershipMoved) as moved:
        await storage.insert_message(
            prepared.record, prepared.deliveries, prepared.events, membership=prepared.membership
        )
    assert moved.value.current is not None
    assert moved.value.current.seq == 1
    assert await storage.get_message(header.message_id) is None


def _wraps(raw: list[dict[str, bytes]]) -> list[Wrap]:
    return [Wrap(w["device_id"], w["wrap"], w["key_id"]) for w in raw]
