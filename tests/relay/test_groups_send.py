"""Messages to a group: wrapped to every current member device, recalled from all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from group_driver import create_group, seal_to_group, send_to_group, wraps_to_people

from e2e_recall import GroupAction

from driver import Clock, Person, Relay, RelayRefused, start_relay, states


async def _people(relay: Relay, http: aiohttp.ClientSession, **devices: int) -> list[Person]:
    people = []
    for name, count in devices.items():
        person = Person(name, relay, http)
        for _ in range(count):
            await person.add_device()
        people.append(person)
    return people


async def test_a_group_message_goes_to_every_member_device_and_only_those(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol, dave = await _people(relay, http, alice=2, bob=2, carol=3, dave=1)
    group = await create_group(alice, bob, carol)

    header, answer = await send_to_group(alice, group, "hello all")
    assert answer["created"] is True
    # Every device of bob and carol was told, and alice's other device got its copy.
    for person, device in ((bob, 0), (bob, 1), (carol, 0), (carol, 1), (carol, 2), (alice, 1)):
        notices = [e for e in await person.sync(device=device) if e["kind"] == "message"]
        assert [n["payload"]["conversation_id"] for n in notices] == [group.conversation_id]
    assert await carol.read(alice, header.message_id, device=2) == "hello all"
    report = await alice.report(header.message_id)
    assert {(line["user"], line["device_id"]) for line in report["devices"]} == {
        (p.user_id, d.secrets.device_id) for p in (bob, carol) for d in p.devices
    } | {(alice.user_id, alice.devices[1].secrets.device_id)}

    # The sender's other devices are optional, as for direct messages.
    _, answer = await send_to_group(alice, group, "not to my laptop", to=[bob, carol])
    assert answer["created"] is True

    # One of carol's devices left out: 409, refresh and wrap again.
    header, sealed = seal_to_group(alice, group, "partial")
    wraps = wraps_to_people(alice, [bob, carol], header, sealed.message_key)[:-1]
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert (refused.value.status, refused.value.code) == (409, "missing_devices")

    # A wrap to someone outside the group: 400.
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(alice, group, "leak", to=[bob, carol, dave])
    assert (refused.value.status, refused.value.code) == (400, "bad_recipients")

    # An outsider cannot send to the group, however they wrap it.
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(dave, group, "let me in")
    assert (refused.value.status, refused.value.code) == (403, "not_a_member")


async def test_a_removed_member_gets_no_wraps_and_cannot_send(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await _people(relay, http, alice=2, bob=2, carol=1)
    group = await create_group(alice, bob, carol)
    await send_to_group(alice, group, "before")
    removed = group.members
    await group.change(alice, GroupAction.REMOVE, [bob])

    # Wrapping to bob now is refused, as a sender behind the chain (409: fetch it, wrap
    # again); without him it is accepted.
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(alice, group, "after", to=removed)
    assert (refused.value.status, refused.value.code) == (409, "group_changed")
    assert refused.value.body["facts"] == {"seq": 1, "head": group.changes[-1].digest}
    header, _ = await send_to_group(alice, group, "after")
    report = await alice.report(header.message_id)
    assert {line["user"] for line in report["devices"]} == {carol.user_id, alice.user_id}
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(bob, group, "still here?")
    assert (refused.value.status, refused.value.code) == (403, "not_a_member")

    # Someone who left is in the same place; an added member must be wrapped to at once.
    await group.change(carol, GroupAction.LEAVE)
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(carol, group, "bye")
    assert refused.value.code == "not_a_member"
    await group.change(alice, GroupAction.ADD, [bob])
    with pytest.raises(RelayRefused) as refused:
        await send_to_group(alice, group, "welcome back", to=[alice])
    assert (refused.value.status, refused.value.code) == (409, "missing_devices")
    _, answer = await send_to_group(alice, group, "welcome back")
    assert answer["created"] is True


async def test_a_group_recall_reaches_every_device_and_the_report_lists_each_one(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await _people(relay, http, alice=2, bob=2, carol=2)
    group = await create_group(alice, bob, carol)
    header, _ = await send_to_group(alice, group, "oops")
    # bob's first device opens it, carol's first only fetches it; the others never look.
    assert await bob.read(alice, header.message_id) == "oops"
    await carol.call("GET", f"/v1/messages/{header.message_id.hex()}")

    answer = await alice.recall(header)
    report = answer["report"]
    assert report["state"] == "recalled"
    by_device = {line["device_id"]: line for line in report["devices"]}
    assert set(by_device) == {d.secrets.device_id for p in (bob, carol) for d in p.devices} | {
        alice.devices[1].secrets.device_id
    }
    assert by_device[bob.devices[0].secrets.device_id]["state"] == "pending"
    assert by_device[carol.devices[0].secrets.device_id]["state"] == "delivered_sealed"
    for never in (bob.devices[1], carol.devices[1], alice.devices[1]):
        assert by_device[never.secrets.device_id]["state"] == "never_delivered"

    # The devices that fetched it get the revocation; each deletes and signs a receipt.
    for person, device in ((bob, 0), (carol, 0)):
        revocations = [e for e in await person.sync(device=device) if e["kind"] == "revocation"]
        assert [r["payload"]["conversation_id"] for r in revocations] == [group.conversation_id]
        await person.delete_and_receipt(alice, revocations[0]["payload"]["revocation"], device)
    # The others never had it: its notice is withdrawn, and they learn nothing.
    for person, device in ((bob, 1), (carol, 1)):
        kinds = [e["kind"] for e in await person.sync(device=device)]
        assert kinds == ["group"]  # the create, and no notice or revocation
        with pytest.raises(RelayRefused) as refused:
            await person.call("GET", f"/v1/messages/{header.message_id.hex()}", device=device)
        assert refused.value.status == 404
    final = await alice.report(header.message_id)
    assert sorted(states(final)) == ["deleted", "deleted", *["never_delivered"] * 3]

    # Only the sender recalls; a member's recall of alice's message is refused.
    header, _ = await send_to_group(alice, group, "mine")
    revocation = bob.revocation(header)
    with pytest.raises(RelayRefused) as refused:
        await bob.call(
            "POST",
            f"/v1/messages/{header.message_id.hex()}/recall",
            {"revocation": revocation.signed, "replacement": None},
        )
    assert refused.value.status == 403


async def test_recalls_per_day_count_per_group_conversation(
    tmp_path: Path, clock: Clock, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(
        tmp_path / "r", clock, recalls_per_conversation_per_day=2, **database_options
    )
    try:
        alice, bob = await _people(relay, http, alice=1, bob=1)
        group = await create_group(alice, bob)
        for _ in range(2):
            header, _ = await send_to_group(alice, group, "x")
            await alice.recall(header)
        header, _ = await send_to_group(alice, group, "x")
        with pytest.raises(RelayRefused) as refused:
            await alice.recall(header)
        assert (refused.value.status, refused.value.code) == (429, "rate_limited")
        # The direct conversation with the same person has its own count.
        direct = await alice.send(bob, "direct")
        assert (await alice.recall(direct))["report"]["state"] == "recalled"
    finally:
        await relay.runner.cleanup()


async def test_the_group_directory_gives_every_member_entry_to_members_only(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol, dave = await _people(relay, http, alice=2, bob=1, carol=3, dave=1)
    group = await create_group(alice, bob, carol)
    answer = await bob.call("GET", group.path + "/devices")
    assert answer["group_id"] == group.group_id
    assert answer["seq"] == 0
    members = answer["members"]
    assert [m["user_id"] for m in members] == sorted(p.user_id for p in (alice, bob, carol))
    for person in (alice, bob, carol):
        entry = next(m for m in members if m["user_id"] == person.user_id)
        assert entry == await bob.call("GET", f"/v1/users/{person.user_id.hex()}")
        assert len(entry["devices"]) == len(person.devices)
    await group.change(alice, GroupAction.REMOVE, [carol])
    after = await bob.call("GET", group.path + "/devices")
    assert (after["seq"], len(after["members"])) == (1, 2)
    for outsider in (carol, dave):  # removed, and never a member: the same 404
        with pytest.raises(RelayRefused) as refused:
            await outsider.call("GET", group.path + "/devices")
        assert (refused.value.status, refused.value.code) == (404, "not_found")
