"""Group changes over real HTTP: the chain grows only by valid, signed, current changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from group_driver import Group, create_group

from e2e_recall import GroupAction, GroupState, VerifyKey, replay_group, wire

from driver import Clock, Person, Relay, RelayRefused, start_relay


@pytest.fixture
async def crowd(relay: Relay, http: aiohttp.ClientSession) -> dict[str, Person]:
    people = {}
    for name in ("alice", "bob", "carol", "dave"):
        people[name] = Person(name, relay, http)
        await people[name].add_device(handle=name)
    return people


def _keys(crowd: dict[str, Person]) -> Callable[[bytes], VerifyKey | None]:
    by_id = {p.user_id: p.identity.public_key for p in crowd.values()}
    return by_id.get


async def _replayed(group: Group, reader: Person, crowd: dict[str, Person]) -> GroupState:
    return replay_group(await group.chain(reader), _keys(crowd), group_id=group.group_id)


async def test_create_add_promote_remove_leave_and_every_member_replays_the_chain(
    crowd: dict[str, Person],
) -> None:
    alice, bob, carol, dave = crowd.values()
    group = Group(members=[])
    first = group.sign(alice, GroupAction.CREATE, [alice, bob])
    answer = await group.post(alice, first.signed)
    assert answer == {"seq": 0, "created": True}
    group.changes.append(first)
    group.members = [alice, bob]

    assert (await group.change(alice, GroupAction.ADD, [carol, dave]))["seq"] == 1
    assert (await group.change(alice, GroupAction.PROMOTE, [bob]))["seq"] == 2
    await group.change(bob, GroupAction.REMOVE, [dave])  # a promoted member may remove
    await group.change(carol, GroupAction.LEAVE)  # anyone may leave

    state = await _replayed(group, bob, crowd)
    assert state.seq == 4
    assert state.members == {alice.user_id, bob.user_id}
    assert state.admins == {alice.user_id, bob.user_id}
    assert await group.chain(alice) == [c.signed for c in group.changes]

    # Those removed, or who left, read the chain up to and including their going.
    assert await group.chain(dave) == [c.signed for c in group.changes[:4]]
    assert await group.chain(carol) == [c.signed for c in group.changes]


async def test_a_retry_of_the_same_bytes_is_200_and_changes_nothing(
    crowd: dict[str, Person],
) -> None:
    alice, bob, carol, _ = crowd.values()
    group = await create_group(alice, bob)
    add = group.sign(alice, GroupAction.ADD, [carol])
    assert (await group.post(alice, add.signed))["created"] is True
    group.changes.append(add)
    again = await group.post(alice, add.signed)
    assert again == {"seq": 1, "created": False}
    # A retry of the create is 200 too, and a leave by someone now outside can be retried.
    assert (await group.post(alice, group.changes[0].signed))["created"] is False
    await group.change(carol, GroupAction.LEAVE)
    assert (await group.post(carol, group.changes[-1].signed))["created"] is False
    assert len(await group.chain(alice)) == 3


async def test_a_stale_head_is_409_with_the_current_seq_and_head(
    crowd: dict[str, Person],
) -> None:
    alice, bob, carol, dave = crowd.values()
    group = await create_group(alice, bob, carol)
    both = group.sign(alice, GroupAction.ADD, [dave])  # signed on seq 0 ...
    await group.change(alice, GroupAction.PROMOTE, [bob])  # ... but seq 1 is taken first
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, both.signed)
    assert (refused.value.status, refused.value.code) == (409, "stale_head")
    assert refused.value.body["facts"] == {"seq": 1, "head": group.changes[-1].digest}

    skipped = group.sign(alice, GroupAction.ADD, [dave], seq=5)
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, skipped.signed)
    assert refused.value.code == "stale_head"

    wrong_previous = group.sign(alice, GroupAction.ADD, [dave], previous=bytes(32))
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, wrong_previous.signed)
    assert refused.value.code == "stale_head"


async def test_a_taken_group_id_is_409_group_exists(crowd: dict[str, Person]) -> None:
    alice, bob, carol, _ = crowd.values()
    group = await create_group(alice, bob)
    other = group.sign(alice, GroupAction.CREATE, [alice, carol], seq=0)
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, other.signed)
    assert (refused.value.status, refused.value.code) == (409, "group_exists")
    # A stranger is told only that there is no such group.
    mallory = group.sign(carol, GroupAction.CREATE, [carol], seq=0)
    with pytest.raises(RelayRefused) as refused:
        await group.post(carol, mallory.signed)
    assert refused.value.code == "group_exists"


async def test_forged_and_unauthorised_changes_are_refused(crowd: dict[str, Person]) -> None:
    alice, bob, carol, dave = crowd.values()
    group = await create_group(alice, bob)

    # A flipped bit in the signed body: the signature does not verify.
    add = group.sign(alice, GroupAction.ADD, [carol])
    outer = wire.decode(add.signed)
    body = bytearray(outer["body"])
    body[-1] ^= 1
    forged = wire.encode({"body": bytes(body), "signature": outer["signature"]})
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, forged)
    assert (refused.value.status, refused.value.code) == (403, "bad_signature")

    # Bob signs a change and Carol posts it; or Carol posts a change claiming to be Alice's.
    by_bob = group.sign(bob, GroupAction.ADD, [carol])
    with pytest.raises(RelayRefused) as refused:
        await group.post(carol, by_bob.signed)
    assert (refused.value.status, refused.value.code) == (403, "wrong_signer")

    # A member who is not an admin cannot add anyone.
    with pytest.raises(RelayRefused) as refused:
        await group.post(bob, by_bob.signed)
    assert (refused.value.status, refused.value.code) == (403, "not_authorised")

    # Nobody can add a user the relay does not know.
    stranger = Person("stranger", alice.relay, alice.http)
    unknown = group.sign(alice, GroupAction.ADD, [stranger])
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, unknown.signed)
    assert (refused.value.status, refused.value.code) == (400, "unknown_user")

    # An outsider's change to the group: no such group, whatever it says.
    outsider = group.sign(dave, GroupAction.LEAVE)
    with pytest.raises(RelayRefused) as refused:
        await group.post(dave, outsider.signed)
    assert (refused.value.status, refused.value.code) == (404, "not_found")

    # The rules of the core: no second add, no removal of a non-member, remove not self.
    for bad, code in (
        (group.sign(alice, GroupAction.ADD, [bob]), "already_member"),
        (group.sign(alice, GroupAction.REMOVE, [carol]), "not_a_member"),
        (group.sign(alice, GroupAction.PROMOTE, [alice]), "already_admin"),
    ):
        with pytest.raises(RelayRefused) as refused:
            await group.post(alice, bad.signed)
        assert (refused.value.status, refused.value.code) == (409, code)

    # A change for another group than the address names.
    elsewhere = Group(members=[]).sign(alice, GroupAction.CREATE, [alice])
    with pytest.raises(RelayRefused) as refused:
        await group.post(alice, elsewhere.signed)
    assert (refused.value.status, refused.value.code) == (400, "other_group")

    # None of it changed the chain.
    assert await group.chain(alice) == [group.changes[0].signed]


async def test_the_chain_is_404_to_anyone_never_in_the_group(crowd: dict[str, Person]) -> None:
    alice, bob, carol, _ = crowd.values()
    group = await create_group(alice, bob)
    for reader, path in ((carol, group.path), (alice, "/v1/groups/" + "00" * 16)):
        with pytest.raises(RelayRefused) as refused:
            await reader.call("GET", path)
        assert (refused.value.status, refused.value.code) == (404, "not_found")
    with pytest.raises(RelayRefused) as refused:
        await alice.call("GET", "/v1/groups/XYZ")
    assert refused.value.code == "bad_id"
    # A change to an unknown group that is not a create: no such group.
    lost = Group(members=[]).sign(alice, GroupAction.LEAVE, seq=1, previous=bytes(32))
    with pytest.raises(RelayRefused) as refused:
        await Group(members=[], group_id=lost.change.group_id).post(alice, lost.signed)
    assert refused.value.code == "not_found"


async def test_the_group_size_limit_is_the_operators(
    tmp_path: Path, clock: Clock, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(tmp_path / "small", clock, max_group_members=2, **database_options)
    try:
        people = [Person(n, relay, http) for n in ("a1", "b1", "c1")]
        for person in people:
            await person.add_device()
        group = await create_group(people[0], people[1])
        with pytest.raises(RelayRefused) as refused:
            await group.change(people[0], GroupAction.ADD, [people[2]])
        assert (refused.value.status, refused.value.code) == (409, "too_many_members")
        assert refused.value.body["facts"] == {"max": 2}
    finally:
        await relay.runner.cleanup()
