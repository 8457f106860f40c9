"""The abuse suite for groups: attacks on membership and group messages, each failing closed.

Alice made the group "team" of herself (its admin), Bob and Carol, and sent
it a message. Mallory is a registered user of the same relay and not a
member; Bob is a member but no admin. Every attack must be refused with a
4xx, a code and a sentence, must reveal nothing of the group (its members,
its conversation, the message's bytes), and must leave the chain exactly as
Alice's clients know it, the message readable by Bob and Carol and Alice's
report unchanged (checked after every test by the ``scene`` fixture).

Backends: the chain, its head and the membership a send is checked against
are rows, so most attacks also run on PostgreSQL (``@on_both_backends``):
changes by outsiders and non-admins against the stored chain, the creation
replayed, a group id taken, a fork from an old head (the head moved under a
concurrent writer), unknown users, and every group message attack
(membership as the send's transaction reads it).  SQLite only, to keep CI
inside its budget: changes the rules in e2e_recall refuse on the same chain
read that ``a member who is no admin adds someone`` makes on both (removing
the admin, self-promotion, leaving someone else); and changes refused before
any row is read: posted by someone other than their signer, for another group
than their address, failing their signature or framing (bit-flipped, not a
signed container), and ids that are not ids.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from backends import RelayPerBackend, on_both_backends, relays_in
from group_driver import Group, create_group, seal_to_group, send_to_group, wraps_to_people

import e2e_recall as er
from e2e_recall import GroupAction, sign_group_change, wire
from e2e_recall.errors import UsageError

from driver import Person, RelayRefused
from relay_process import RelayProcess, Target, target

QUIET = {
    "E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE": "0",
    "E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY": "0",
}


@dataclass
class GroupScene:
    target: Target
    alice: Person
    bob: Person
    carol: Person
    mallory: Person
    group: Group
    header: er.Header
    envelope: bytes

    @property
    def message_path(self) -> str:
        return f"/v1/messages/{self.header.message_id.hex()}"

    def secrets(self) -> list[bytes]:
        """Bytes no answer to an attacker outside the group may contain."""
        found = [self.envelope, self.group.conversation_id]
        found += [p.user_id for p in (self.alice, self.bob, self.carol)]
        found += [c.signed for c in self.group.changes]
        found += [d.secrets.device_id for p in (self.bob, self.carol) for d in p.devices]
        return found

    def leaks(self, answer: Any) -> list[str]:
        raw = answer if isinstance(answer, bytes) else wire.encode(answer)
        return [s[:8].hex() for s in self.secrets() if s in raw]

    async def refused(
        self, by: Person, method: str, path: str, body: dict[str, Any] | None = None
    ) -> RelayRefused:
        """The request must be refused with a code, a sentence and (for Mallory) no leak."""
        with pytest.raises(RelayRefused) as caught:
            await by.call(method, path, body)
        refusal = caught.value
        assert 400 <= refusal.status < 500, refusal
        assert refusal.code
        assert isinstance(refusal.message, str)
        assert refusal.message.endswith(".")
        if by is self.mallory:
            assert self.leaks(refusal.body) == []
        return refusal

    async def post_change(self, by: Person, signed: bytes) -> RelayRefused:
        return await self.refused(by, "POST", f"{self.group.path}/changes", {"change": signed})

    async def still_intact(self) -> None:
        """Alice's chain, Bob's and Carol's copy of the message, Alice's report: unchanged."""
        assert await self.group.chain(self.alice) == [c.signed for c in self.group.changes]
        for member in (self.bob, self.carol):
            fetched = await member.call("GET", self.message_path)
            assert fetched["envelope"] == self.envelope
        report = await self.alice.report(self.header.message_id)
        assert report["state"] == "live"
        users = {d["user"] for d in report["devices"]}
        assert users == {self.bob.user_id, self.carol.user_id}


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayPerBackend]:
    yield from relays_in(tmp_path_factory, "abuse-groups", **QUIET)


@pytest.fixture
def relay(relays: RelayPerBackend, backend: str) -> RelayProcess:
    return relays.get(backend)


@pytest.fixture
async def scene(relays: RelayPerBackend, relay: RelayProcess) -> AsyncIterator[GroupScene]:
    async with aiohttp.ClientSession() as http:
        where = await target(http, relay.url())
        people = [Person(name, where, http) for name in ("alice", "bob", "carol", "mallory")]  # type: ignore[arg-type]
        for person in people:
            await person.add_device()
        alice, bob, carol, mallory = people
        group = await create_group(alice, bob, carol)
        header, answer = await send_to_group(alice, group, "for the team only")
        assert answer["message_id"] == header.message_id
        envelope = (await bob.call("GET", f"/v1/messages/{header.message_id.hex()}"))["envelope"]
        built = GroupScene(where, alice, bob, carol, mallory, group, header, envelope)
        yield built
        await built.still_intact()
        async with http.get(relay.url() + "/healthz") as health:
            assert health.status == 200
    assert relays.new_errors() == []


# -- membership changes ------------------------------------------------------------------------


@on_both_backends
async def test_an_outsider_adds_herself(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.mallory, GroupAction.ADD, [scene.mallory])
    refusal = await scene.post_change(scene.mallory, signed.signed)
    assert (refusal.status, refusal.code) == (404, "not_found")


@on_both_backends
async def test_an_outsider_is_told_the_same_as_for_a_group_that_does_not_exist(
    scene: GroupScene,
) -> None:
    real = await scene.refused(scene.mallory, "GET", scene.group.path)
    nobody = await scene.refused(scene.mallory, "GET", f"/v1/groups/{os.urandom(16).hex()}")
    assert (real.status, real.code, real.message) == (nobody.status, nobody.code, nobody.message)


@on_both_backends
async def test_a_member_who_is_no_admin_adds_someone(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.bob, GroupAction.ADD, [scene.mallory])
    refusal = await scene.post_change(scene.bob, signed.signed)
    assert refusal.status == 403


async def test_a_member_who_is_no_admin_removes_the_admin(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.bob, GroupAction.REMOVE, [scene.alice])
    assert (await scene.post_change(scene.bob, signed.signed)).status == 403


async def test_a_member_who_is_no_admin_promotes_himself(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.bob, GroupAction.PROMOTE, [scene.bob])
    assert (await scene.post_change(scene.bob, signed.signed)).status == 403


async def test_a_member_leaves_someone_else(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.bob, GroupAction.LEAVE, users=[scene.carol.user_id])
    refusal = await scene.post_change(scene.bob, signed.signed)
    assert refusal.status in (400, 403)


async def test_alices_change_posted_by_mallory(scene: GroupScene) -> None:
    signed = scene.group.sign(scene.alice, GroupAction.ADD, [scene.mallory])
    refusal = await scene.post_change(scene.mallory, signed.signed)
    assert (refusal.status, refusal.code) == (403, "wrong_signer")


@on_both_backends
async def test_the_creation_replayed_by_mallory(scene: GroupScene) -> None:
    refusal = await scene.post_change(scene.mallory, scene.group.changes[0].signed)
    assert refusal.code == "wrong_signer"


@on_both_backends
async def test_mallory_creates_a_group_with_the_same_id(scene: GroupScene) -> None:
    signed = sign_group_change(
        scene.mallory.identity,
        group_id=scene.group.group_id,
        seq=0,
        previous=None,
        action=GroupAction.CREATE,
        members=[scene.mallory.user_id],
        issued_at=scene.target.clock.now,
    )
    refusal = await scene.post_change(scene.mallory, signed.signed)
    assert (refusal.status, refusal.code) == (409, "group_exists")


async def test_a_change_for_another_group_than_its_address(scene: GroupScene) -> None:
    other = await create_group(scene.mallory)
    signed = other.sign(scene.mallory, GroupAction.ADD, [scene.bob])
    refusal = await scene.post_change(scene.mallory, signed.signed)
    assert refusal.code == "other_group"


@pytest.mark.parametrize("where", [0, 10, -70, -1])
async def test_a_bit_flipped_change(scene: GroupScene, where: int) -> None:
    signed = bytearray(scene.group.sign(scene.alice, GroupAction.ADD, [scene.mallory]).signed)
    signed[where] ^= 0x01
    refusal = await scene.post_change(scene.alice, bytes(signed))
    assert refusal.status in (400, 403)


async def test_a_change_that_is_not_a_signed_container(scene: GroupScene) -> None:
    refusal = await scene.post_change(scene.mallory, os.urandom(300))
    assert refusal.status == 400


@on_both_backends
async def test_a_fork_from_an_old_head(scene: GroupScene) -> None:
    """Alice signs a change on the creation while the group is already past it."""
    group = scene.group
    await group.change(scene.alice, GroupAction.PROMOTE, [scene.carol])
    fork = group.sign(scene.alice, GroupAction.ADD, [scene.mallory], seq=2, previous=os.urandom(32))
    assert (await scene.post_change(scene.alice, fork.signed)).code == "stale_head"
    stale = group.sign(scene.alice, GroupAction.ADD, [scene.mallory], seq=1)
    assert (await scene.post_change(scene.alice, stale.signed)).code == "stale_head"


@on_both_backends
async def test_naming_users_the_relay_does_not_know(scene: GroupScene) -> None:
    users = sorted(os.urandom(32) for _ in range(1025))
    signed = scene.group.sign(scene.alice, GroupAction.ADD, users=users[:8])
    assert (await scene.post_change(scene.alice, signed.signed)).code == "unknown_user"
    with pytest.raises(UsageError):  # more than a group may hold: refused when signing
        scene.group.sign(scene.alice, GroupAction.ADD, users=users)


async def test_group_ids_that_are_not_ids(scene: GroupScene) -> None:
    for bad in ("..%2F..%2Frelay.db", "ABCD", "0" * 33, "%00", scene.group.group_id.hex().upper()):
        status, _ = await _raw(scene, "GET", f"/v1/groups/{bad}")
        assert status in (400, 404, 405), bad


async def _raw(scene: GroupScene, method: str, path: str) -> tuple[int, bytes]:
    token = scene.mallory.devices[0].token
    async with scene.mallory.http.request(
        method, scene.target.url + path, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        body = await response.read()
    assert scene.leaks(body) == []
    return response.status, body


# -- group messages ----------------------------------------------------------------------------


def _send(sealed: er.SealedMessage, wraps: list[dict[str, bytes]]) -> dict[str, Any]:
    return {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}


@on_both_backends
async def test_an_outsider_sends_to_the_group(scene: GroupScene) -> None:
    header, sealed = seal_to_group(scene.mallory, scene.group, "let me in")
    wraps = wraps_to_people(scene.mallory, scene.group.members, header, sealed.message_key)
    refusal = await scene.refused(
        scene.mallory,
        "POST",
        "/v1/messages",
        {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
    )
    assert (refusal.status, refusal.code) == (403, "not_a_member")


@on_both_backends
async def test_a_member_wraps_to_an_outsider(scene: GroupScene) -> None:
    header, sealed = seal_to_group(scene.bob, scene.group, "psst, mallory")
    wraps = wraps_to_people(
        scene.bob, [*scene.group.members, scene.mallory], header, sealed.message_key
    )
    refusal = await scene.refused(
        scene.bob,
        "POST",
        "/v1/messages",
        {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
    )
    assert (refusal.status, refusal.code) == (400, "bad_recipients")


@on_both_backends
async def test_a_member_leaves_someone_out(scene: GroupScene) -> None:
    header, sealed = seal_to_group(scene.bob, scene.group, "not for carol")
    wraps = wraps_to_people(scene.bob, [scene.alice, scene.bob], header, sealed.message_key)
    refusal = await scene.refused(
        scene.bob,
        "POST",
        "/v1/messages",
        {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
    )
    assert (refusal.status, refusal.code) == (409, "missing_devices")


@on_both_backends
async def test_mallory_recalls_a_group_message(scene: GroupScene) -> None:
    revocation = scene.mallory.revocation(scene.header)
    refusal = await scene.refused(
        scene.mallory,
        "POST",
        scene.message_path + "/recall",
        {"revocation": revocation.signed, "replacement": None},
    )
    assert refusal.status in (403, 404)


@on_both_backends
async def test_a_member_recalls_someone_elses_group_message(scene: GroupScene) -> None:
    """Admins and members alike cannot delete others' messages (threat model, section 9)."""
    for member in (scene.bob, scene.carol):
        revocation = member.revocation(scene.header)
        refusal = await scene.refused(
            member,
            "POST",
            scene.message_path + "/recall",
            {"revocation": revocation.signed, "replacement": None},
        )
        assert refusal.status in (403, 404)


@on_both_backends
async def test_an_outsider_reads_the_group_message_and_its_report(scene: GroupScene) -> None:
    for path in (scene.message_path, scene.message_path + "/report"):
        assert (await scene.refused(scene.mallory, "GET", path)).status == 404
    assert (await scene.refused(scene.bob, "GET", scene.message_path + "/report")).status == 404


@on_both_backends
async def test_a_removed_member_can_no_longer_send_or_read_on(scene: GroupScene) -> None:
    """Carol is removed (for real, in a group of its own): her later sends and reads stop."""
    alice, carol = scene.alice, scene.carol
    group = await create_group(alice, scene.bob, carol)
    await group.change(alice, GroupAction.REMOVE, [carol])
    header, answer = await send_to_group(alice, group, "after carol left")
    reached = {d["user"] for d in (await alice.report(header.message_id))["devices"]}
    assert carol.user_id not in reached
    with pytest.raises(RelayRefused) as unreadable:
        await carol.call("GET", f"/v1/messages/{header.message_id.hex()}")
    assert unreadable.value.status == 404
    late, sealed = seal_to_group(carol, group, "still here?")
    wraps = wraps_to_people(carol, group.members, late, sealed.message_key)
    with pytest.raises(RelayRefused) as refused:
        await carol.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert (refused.value.status, refused.value.code) == (403, "not_a_member")
    chain = await group.chain(carol)  # up to and including her removal, nothing after
    assert chain == [c.signed for c in group.changes]
    await group.change(alice, GroupAction.ADD, [scene.mallory])
    assert await group.chain(carol) == chain
    assert answer["message_id"] == header.message_id
