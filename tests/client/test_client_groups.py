"""The ``Client`` facade's group methods, over a relay process: what each one changes.

Alice, Bob and Carol are library clients in this process; the relay is a real
process on loopback, so every change is signed here, stored there and
verified again by each member's own device.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.client import Client
from client.errors import GroupRefused, NotFound, UsageProblem
from e2e_recall import DeviceState, ExpireFrom

from relay_process import RelayProcess

Trio = tuple[Client, Client, Client]


@pytest.fixture
async def trio(
    clients: tuple[Client, Client], tmp_path: Path, relay: RelayProcess
) -> AsyncIterator[Trio]:
    """Alice (contacts bob and carol), Bob (contact alice) and Carol (contact alice)."""
    alice, bob = clients
    carol = Client.create(tmp_path / "carol", "carol passphrase", strength="interactive")
    try:
        await carol.register(relay.url(), "carol")
        await carol.add_contact("alice", "alice")
        await alice.add_contact("carol", "carol")
        yield alice, bob, carol
    finally:
        await carol.close()


async def test_a_created_group_is_verified_by_every_member_with_its_devices(trio: Trio) -> None:
    alice, bob, carol = trio
    made = await alice.create_group("trip", ["bob", "carol"])
    assert alice.group("trip").group_id == made.group_id
    assert [g.name for g in alice.groups()] == ["trip"]

    members = {m.name: m for m in await alice.group_members("trip")}
    assert set(members) == {"you", "bob", "carol"}
    assert members["you"].admin
    assert members["you"].you
    assert not members["bob"].admin
    assert not members["bob"].you
    assert members["you"].devices == (alice.device_id,)
    assert members["bob"].devices == (bob.device_id,)
    assert members["carol"].devices == (carol.device_id,)
    cached = {m.name: m.devices for m in await alice.group_members("trip", refresh=False)}
    assert cached == {name: m.devices for name, m in members.items()}

    await bob.sync()
    (seen,) = bob.groups()
    assert seen.group_id == made.group_id
    assert seen.name == made.group_id.hex()[:8]  # named after its id until renamed
    renamed = bob.rename_group(seen.name, "holiday")
    assert bob.group("holiday").group_id == made.group_id == renamed.group_id
    assert alice.group("trip").name == "trip"  # a name is local
    bobs_view = {m.name for m in await bob.group_members("holiday")}
    assert bobs_view == {"you", "alice", "carol"}  # Carol by her handle from the directory


async def test_a_group_message_with_a_file_and_a_timer_reaches_every_member(
    trio: Trio, tmp_path: Path
) -> None:
    alice, bob, carol = trio
    await alice.create_group("trip", ["bob", "carol"])
    attachment = tmp_path / "plan.txt"
    attachment.write_text("day 1: the lake\n")
    sent = await alice.send_to_group(
        "trip", "the plan", files=[attachment], timer=(3_600_000, ExpireFrom.SENT)
    )
    assert not sent.queued
    assert sent.problem is None
    for member in (bob, carol):
        await member.sync()
        (waiting,) = member.inbox()
        assert waiting.message_id == sent.message_id
        assert waiting.group is not None
        assert waiting.text is None  # sealed: no preview
    opened = await bob.open_message(sent.message_id, tmp_path / "bob-downloads")
    assert opened.text == "the plan"
    assert opened.expires_at == opened.sent_at + 3_600_000
    (saved,) = opened.files
    assert saved.saved_at is not None
    assert Path(saved.saved_at).read_text() == "day 1: the lake\n"


async def test_the_conversation_timer_of_a_group_is_the_default_of_send_to_group(
    trio: Trio,
) -> None:
    alice, bob, _ = trio
    await alice.create_group("trip", ["bob", "carol"])
    alice.set_conversation_timer("trip", (600_000, ExpireFrom.OPENED))
    sent = await alice.send_to_group("trip", "read once")
    untimed = await alice.send_to_group("trip", "stays", timer=None)
    await bob.sync()
    first = await bob.open_message(sent.message_id)
    second = await bob.open_message(untimed.message_id)
    assert first.expires_at is not None
    assert second.expires_at is None


async def test_a_group_recall_reports_per_member_what_it_undid(trio: Trio) -> None:
    alice, bob, carol = trio
    await alice.create_group("trip", ["bob", "carol"])
    sent = await alice.send_to_group("trip", "wrong group, sorry", timer=None)
    await bob.sync()
    await bob.open_message(sent.message_id)
    recalled = await alice.recall(sent.message_id)
    assert not recalled.already_recalled
    assert not recalled.queued
    await bob.sync()  # Bob's device checks the recall, deletes it and signs a receipt
    assert [e.state for e in bob.history(bob.groups()[0].name)] == ["recalled"]

    report = await alice.report(sent.message_id)
    assert report.group == "trip"
    assert report.state == "recalled"
    assert report.relay_receipt == "verified"
    people = report.by_person()
    assert set(people) == {"bob", "carol"}
    (bobs,) = people["bob"]
    assert bobs.state is DeviceState.DELETED
    assert bobs.receipt == "verified"
    assert "possibly already read" in bobs.sentence
    (carols,) = people["carol"]
    assert carols.state is DeviceState.NEVER_DELIVERED  # recalled before she fetched it
    await carol.sync()
    assert carol.inbox() == []


async def test_added_and_removed_members_get_only_what_is_sent_while_they_are_in(
    trio: Trio,
) -> None:
    alice, _bob, carol = trio
    await alice.create_group("trip", ["bob"])
    before = await alice.send_to_group("trip", "before carol", timer=None)
    added = await alice.add_members("trip", ["carol"])
    assert carol.user_id in added.member_ids()
    with pytest.raises(GroupRefused) as twice:
        await alice.add_members("trip", ["carol"])
    assert twice.value.code == "already_member"
    during = await alice.send_to_group("trip", "with carol", timer=None)
    await carol.sync()
    assert [e.message_id for e in carol.inbox()] == [during.message_id]
    assert before.message_id not in {e.message_id for e in carol.inbox()}

    removed = await alice.remove_members("trip", ["carol"])
    assert carol.user_id not in removed.member_ids()
    after = await alice.send_to_group("trip", "without carol", timer=None)
    assert {line.person for line in (await alice.report(after.message_id)).lines} == {"bob"}
    await carol.sync()
    assert after.message_id not in {e.message_id for e in carol.inbox()}
    assert not carol.groups()[0].member
    with pytest.raises(GroupRefused) as outside:
        await carol.send_to_group(carol.groups()[0].name, "still here?")
    assert outside.value.code == "not_a_member"


async def test_only_an_admin_changes_members_and_a_member_can_leave(trio: Trio) -> None:
    alice, bob, _ = trio
    await alice.create_group("trip", ["bob", "carol"])
    await bob.sync()
    name = bob.groups()[0].name
    with pytest.raises(GroupRefused) as refused:
        await bob.remove_members(name, [alice.user_id.hex()[:8]])
    assert refused.value.code == "not_authorised"

    left = await bob.leave_group(name)
    assert not left.member
    await alice.sync()
    assert {m.name for m in await alice.group_members("trip")} == {"you", "carol"}
    later = await alice.send_to_group("trip", "bob has gone", timer=None)
    assert {line.person for line in (await alice.report(later.message_id)).lines} == {"carol"}


async def test_group_methods_refuse_unknown_groups_and_bad_names(trio: Trio) -> None:
    alice, _, _ = trio
    with pytest.raises(NotFound):
        alice.group("nowhere")
    with pytest.raises(NotFound):
        await alice.group_members("nowhere")
    with pytest.raises(UsageProblem) as bad:
        await alice.create_group("no spaces allowed", ["bob"])
    assert bad.value.code == "bad_name"
    with pytest.raises(UsageProblem) as newline:
        await alice.create_group("team\n", ["bob"])  # `$` alone would let a trailing newline in
    assert newline.value.code == "bad_name"
    with pytest.raises(UsageProblem) as taken:
        await alice.create_group("bob", ["carol"])  # a contact's name
    assert taken.value.code == "name_taken"
    assert alice.groups() == []
