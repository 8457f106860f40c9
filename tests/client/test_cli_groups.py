"""Groups through the real ``e2e-recall`` command and a relay process on loopback.

Four people: Alice makes a group; Bob has Alice as a contact, Carol does not
(and stays offline for most of it), Dave joins later.  Every step is its own
process, as from a shell.  The forged changes are fed to a member's client
as a dishonest relay would hand them over: through the client's own event
path, with the real relay behind it for everything else.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from client.account import authed
from client.client import Client
from client.errors import RelayRefused
from client.live import apply_event
from e2e_recall import (
    GroupAction,
    SigningKey,
    fingerprint,
    group_conversation_id,
    sign_group_change,
    wire,
)

from cli_harness import Person
from json_shapes import conforms
from relay_process import RelayProcess


@pytest.fixture
def carol(tmp_path: Path, relay: RelayProcess) -> Person:
    person = Person(tmp_path / "people", "carol")
    person.setup(relay.url())
    return person


@pytest.fixture
def dave(tmp_path: Path, relay: RelayProcess) -> Person:
    person = Person(tmp_path / "people", "dave")
    person.setup(relay.url())
    return person


@pytest.fixture
def team(
    alice: Person, bob: Person, carol: Person, dave: Person
) -> tuple[Person, Person, Person, Person, dict[str, object]]:
    """Alice's group "team" of Alice, Bob and Carol; Dave is only Alice's contact."""
    for name in ("bob", "carol", "dave"):
        alice.run("contacts", "add", name, name)
    bob.run("contacts", "add", "alice", "alice")
    created = alice.run("group", "create", "team", "bob", "carol", "--json").json()
    return alice, bob, carol, dave, created


def _people(report: dict[str, object]) -> list[str]:
    devices = report["devices"]
    assert isinstance(devices, list)
    return sorted(d["person"] for d in devices)


def test_a_group_from_create_to_recall_with_a_member_offline(
    team: tuple[Person, Person, Person, Person, dict[str, object]],
) -> None:
    alice, bob, carol, dave, created = team
    conforms("group", created)
    assert created["admin"] is True
    assert sorted(m["name"] for m in created["members"]) == ["bob", "carol", "you"]
    assert [m["name"] for m in created["members"] if m["admin"]] == ["you"]

    # Bob learns of the group from the relay, verifies it and names it himself.
    synced = bob.run("sync", "--json").json()
    (joined,) = [u for u in synced["updates"] if u["kind"] == "group"]
    assert "alice added you to a group of 3" in joined["detail"]
    (seen,) = bob.run("group", "list", "--json").json()
    conforms("group list", [seen])
    assert seen["group_id"] == created["group_id"]
    assert seen["name"] == created["group_id"][:8]
    assert (seen["member"], seen["admin"]) == (True, False)
    # Carol is no contact of Bob's: shown by her handle, from a key checked by its user id.
    assert sorted(m["name"] for m in seen["members"]) == ["alice", "carol", "you"]
    renamed = bob.run("group", "rename", seen["name"], "work", "--json").json()
    conforms("group", renamed)
    assert renamed["name"] == "work"
    assert "work: 3 member(s), you are a member" in bob.run("group", "list").out

    first = alice.run("send", "team", "the offsite is on friday", "--json").json()
    assert first["queued"] is False
    assert first["problem"] is None
    (waiting,) = bob.run("inbox", "--json").json()
    assert (waiting["id"], waiting["group"], waiting["contact"]) == (first["id"], "work", "alice")
    assert waiting["text"] is None
    opened = bob.run("open", first["id"][:8], "--json").json()
    assert opened["text"] == "the offsite is on friday"
    assert opened["group"] == "work"

    report = alice.run("report", first["id"][:8], "--json").json()
    conforms("report", report)
    assert report["group"] == "team"
    assert _people(report) == ["bob", "carol"]  # every member device but the sender's
    assert report["counts"] == {"opened": 1, "queued": 1}
    compact = alice.run("report", first["id"][:8]).out
    assert "to group team" in compact
    assert "Devices: 1 queued, 1 opened (2 in all)." in compact
    assert "  bob (1 device): 1 opened" in compact
    assert "  carol (1 device): 1 queued" in compact
    assert "--details" in compact
    detailed = alice.run("report", first["id"][:8], "--details").out
    assert "bob device" in detailed
    assert "possibly already read" in detailed

    # Dave joins; Bob leaves the conversation by being removed.
    added = alice.run("group", "add", "team", "dave", "--json").json()
    conforms("group", added)
    assert sorted(m["name"] for m in added["members"]) == ["bob", "carol", "dave", "you"]
    removed = alice.run("group", "remove", "team", "bob").out
    assert "Removed bob from team" in removed
    second = alice.run("send", "team", "bob is not to know", "--json").json()
    after = alice.run("report", second["id"][:8], "--json").json()
    assert _people(after) == ["carol", "dave"]  # the relay's answer: no device of Bob's

    updates = bob.run("sync", "--json").json()["updates"]
    assert any(u["kind"] == "group" and "removed you from work" in u["detail"] for u in updates), (
        updates
    )
    assert [m["id"] for m in bob.run("history", "work", "--json").json()] == [first["id"]]
    assert bob.run("inbox", "--json").json() == []
    (mine,) = bob.run("group", "list", "--json").json()
    assert mine["member"] is False
    refused = bob.run("send", "work", "can I still?", expect=1)
    assert "no longer a member of work" in refused.err

    sent_to_dave = dave.run("inbox", "--json").json()
    assert [m["id"] for m in sent_to_dave] == [second["id"]]  # nothing from before he joined
    assert dave.run("open", second["id"][:8], "--json").json()["text"] == "bob is not to know"

    # Alice recalls the first message: Bob had opened it, Carol has not been online at all.
    recalled = alice.run("recall", first["id"][:8], "--json").json()
    conforms("recall", recalled)
    assert recalled["state"] == "recalled"
    assert recalled["relay_receipt"] == "verified"
    states = {d["person"]: d["state"] for d in recalled["devices"]}
    assert states == {"bob": "pending", "carol": "never_delivered"}
    bob.run("sync")
    assert [m["state"] for m in bob.run("history", "work", "--json").json()] == ["recalled"]
    final = alice.run("report", first["id"][:8], "--json").json()
    assert {d["person"]: (d["state"], d["receipt"]) for d in final["devices"]} == {
        "bob": ("deleted", "verified"),  # removed since, and still his signed receipt
        "carol": ("never_delivered", None),
    }

    # Carol comes online at last: the group, and only what is still there for her.
    carol.run("sync")
    (hers,) = carol.run("group", "list", "--json").json()
    assert sorted(m["name"] for m in hers["members"]) == ["alice", "dave", "you"]
    history = carol.run("history", hers["name"], "--json").json()
    assert [m["id"] for m in history] == [second["id"]]
    again = alice.run("recall", second["id"][:8], "--json").json()
    assert {d["person"]: d["state"] for d in again["devices"]} == {
        "carol": "delivered_sealed",
        "dave": "pending",
    }
    carol.run("sync")
    dave.run("sync")
    last = alice.run("report", second["id"][:8], "--json").json()
    assert last["counts"] == {"deleted": 2}
    assert "Devices: 2 deleted (2 in all)." in alice.run("report", second["id"][:8]).out


def test_only_admins_change_a_group_and_a_member_can_leave(
    team: tuple[Person, Person, Person, Person, dict[str, object]],
) -> None:
    alice, bob, _, _, _ = team
    bob.run("sync")
    bob.run("contacts", "add", "dave", "dave")
    name = bob.run("group", "list", "--json").json()[0]["name"]
    refused = bob.run("group", "add", name, "dave", expect=1)
    assert f"Only an admin of {name} can add members." in refused.err
    refused = bob.run("group", "remove", name, "carol", expect=1)
    assert "Only an admin" in refused.err
    assert "already" in alice.run("group", "add", "team", "bob", expect=1).err
    assert "not a member" in alice.run("group", "remove", "team", "dave", expect=2).err
    assert "group leave team" in alice.run("group", "remove", "team", "you", expect=1).err
    assert "No group named" in alice.run("group", "add", "nope", "bob", expect=2).err
    assert "No contact named" in alice.run("group", "create", "x", "zed", expect=2).err
    assert "name of a contact" in alice.run("group", "create", "bob", "carol", expect=2).err
    assert "already a group" in alice.run("group", "create", "team", "carol", expect=2).err
    assert "not a usable group name" in alice.run("group", "create", "../x", "bob", expect=2).err

    left = bob.run("group", "leave", name, "--json").json()
    conforms("group", left)
    assert left["member"] is False
    assert "bob" not in [
        m["name"] for m in alice.run("group", "list", "team", "--json").json()[0]["members"]
    ]
    sent = alice.run("send", "team", "only carol now", "--json").json()
    assert _people(alice.run("report", sent["id"][:8], "--json").json()) == ["carol"]
    assert bob.run("inbox", "--json").json() == []


def _client(person: Person) -> Client:
    return Client.open(person.profile, person.passphrase)


def test_forged_membership_changes_are_dropped_and_change_nothing(
    team: tuple[Person, Person, Person, Person, dict[str, object]],
) -> None:
    """What a dishonest relay could hand a member: a change by a non-admin, or by nobody."""
    alice, bob, carol, dave, created = team
    bob.run("sync")
    carol.run("sync")
    before = bob.run("group", "list", "--json").json()
    group_id = bytes.fromhex(str(created["group_id"]))
    dave_id = bytes.fromhex(dave.run("whoami", "--json").json()["user_id"])
    alice_id = bytes.fromhex(alice.run("whoami", "--json").json()["user_id"])

    async def feed() -> list[str]:
        async with _client(bob) as client, _client(carol) as as_carol:
            from client.group_store import by_id

            group = by_id(client.core.store, group_id)
            assert group is not None
            cursor = client.core.store.get_int("cursor")

            def event(
                kind: str, payload: dict[str, object], message_id: bytes
            ) -> dict[str, object]:
                return {
                    "seq": cursor,
                    "kind": kind,
                    "message_id": message_id,
                    "payload": wire.encode(payload),
                }

            forged = []
            # Carol is a member but no admin: her "add Dave" verifies as hers, and is not allowed.
            by_carol = sign_group_change(
                as_carol.core.keys.identity,
                group_id=group_id,
                seq=group.seq + 1,
                previous=group.head,
                action=GroupAction.ADD,
                members=[dave_id],
                issued_at=client.core.clock(),
            )
            forged.append(by_carol.signed)
            # Signed by no one who may: an outsider's key, claiming to be Alice's change.
            outsider = SigningKey.generate()
            fake = sign_group_change(
                outsider,
                group_id=group_id,
                seq=group.seq + 1,
                previous=group.head,
                action=GroupAction.ADD,
                members=[dave_id],
                issued_at=client.core.clock(),
            ).signed
            forged.append(fake.replace(fingerprint(outsider.public_key), alice_id))
            forged.append(os.urandom(200))  # not a change at all
            said = []
            for signed in forged:
                update = await apply_event(
                    client.core,
                    event(
                        "group",
                        {"group_id": group_id, "seq": group.seq + 1, "change": signed},
                        group_id,
                    ),
                )
                assert update is not None
                said.append(f"{update.kind}: {update.detail}")
            # A group message from someone who is not a member is dropped before it is fetched.
            notice = {
                "message_id": os.urandom(16),
                "conversation_id": group_conversation_id(group_id),
                "sender": dave_id,
                "sender_device": os.urandom(16),
                "size": 100,
                "sent_at": client.core.clock(),
            }
            update = await apply_event(client.core, event("message", notice, notice["message_id"]))
            assert update is not None
            said.append(f"{update.kind}: {update.detail}")
            # The relay refuses Carol's change as well, so no honest member is ever offered it.
            with pytest.raises(RelayRefused) as refused:
                await authed(
                    as_carol.core,
                    "POST",
                    f"/v1/groups/{group_id.hex()}/changes",
                    {"change": by_carol.signed},
                )
            assert 400 <= refused.value.status < 500
            return said

    said = asyncio.run(feed())
    assert all(line.startswith("dropped: ") for line in said), said
    assert all("does not verify was ignored" in line for line in said[:3]), said
    assert "not a member was dropped" in said[3]
    assert bob.run("group", "list", "--json").json() == before  # the state is unchanged
    assert "dave" not in [m["name"] for m in before[0]["members"]]


def _second_device(first: Person, name: str, url: str) -> Person:
    """Another device of ``first``'s identity (what 'device link' will do; here by the library)."""
    device = Person(first.profile.parent, name, passphrase=first.passphrase)

    async def make() -> None:
        async with _client(first) as old:
            identity = old.core.keys.identity
            async with Client.create(
                device.profile, device.passphrase, strength="interactive", identity=identity
            ) as new:
                await new.register(url, first.name, approver=old)

    asyncio.run(make())
    return device


def test_every_device_of_every_member_and_the_senders_own_other_device(
    relay: RelayProcess, alice: Person, bob: Person, carol: Person
) -> None:
    # The second devices exist before the group: a device added later learns of the
    # groups it is in once device linking (a later part of issue 8) tells it.
    bob_laptop = _second_device(bob, "bob-laptop", relay.url())
    alice_laptop = _second_device(alice, "alice-laptop", relay.url())
    for name in ("bob", "carol"):
        alice.run("contacts", "add", name, name)
    alice.run("group", "create", "team", "bob", "carol")
    sent = alice.run("send", "team", "to every screen", "--json").json()
    report = alice.run("report", sent["id"][:8], "--json").json()
    assert _people(report) == ["bob", "bob", "carol", "you"]
    compact = alice.run("report", sent["id"][:8]).out
    assert "Devices: 4 queued (4 in all)." in compact
    assert "  bob (2 devices): 2 queued" in compact
    assert "  your other devices (1 device): 1 queued" in compact

    # Alice's laptop learns of the group (made on her phone) and holds a copy of what she sent.
    synced = alice_laptop.run("sync", "--json").json()
    assert any("from another of your devices" in (u["detail"] or "") for u in synced["updates"])
    (copy,) = alice_laptop.run("inbox", "--json").json()
    assert (copy["id"], copy["contact"]) == (sent["id"], "you")
    assert alice_laptop.run("open", sent["id"][:8], "--json").json()["text"] == "to every screen"
    assert bob_laptop.run("open", sent["id"][:8], "--json").json()["text"] == "to every screen"
    bob.run("sync")  # Bob's phone has it sealed

    # A recall with a correction reaches every device, and the correction goes to each.
    recalled = alice.run("recall", sent["id"][:8], "--replace", "to some screens", "--json").json()
    states = sorted((d["person"], d["state"]) for d in recalled["devices"])
    assert states == [
        ("bob", "delivered_sealed"),
        ("bob", "pending"),
        ("carol", "never_delivered"),
        ("you", "pending"),
    ]
    correction = recalled["replacement_id"]
    for device in (alice_laptop, bob_laptop, bob):
        history = device.run(
            "history", device.run("group", "list", "--json").json()[0]["name"], "--json"
        ).json()
        by_id = {m["id"]: m for m in history}
        assert by_id[sent["id"]]["state"] == "recalled"
        assert by_id[sent["id"]]["replaced_by"] == correction
    assert carol.run("open", correction[:8], "--json").json()["text"] == "to some screens"
    final = alice.run("report", sent["id"][:8], "--json").json()
    assert final["counts"] == {"deleted": 3, "never_delivered": 1}
    receipts = {d["receipt"] for d in final["devices"] if d["state"] == "deleted"}
    assert receipts == {"verified"}  # the laptop's and Bob's two, each checked by its certificate


def test_a_chain_the_relay_rewrote_is_refused_whole(
    relay: RelayProcess, team: tuple[Person, Person, Person, Person, dict[str, object]]
) -> None:
    """The relay's database gets a change that no admin signed: no client believes it."""
    alice, bob, carol, dave, created = team
    bob.run("sync")
    before = bob.run("group", "list", "--json").json()
    group_id = bytes.fromhex(str(created["group_id"]))
    dave_id = bytes.fromhex(dave.run("whoami", "--json").json()["user_id"])

    async def bobs_change() -> tuple[bytes, bytes]:
        async with _client(bob) as client:
            from client.group_store import by_id

            group = by_id(client.core.store, group_id)
            assert group is not None
            signed = sign_group_change(
                client.core.keys.identity,
                group_id=group_id,
                seq=1,
                previous=group.head,
                action=GroupAction.ADD,
                members=[dave_id],
                issued_at=client.core.clock(),
            )
            return signed.signed, signed.digest

    forged, digest = asyncio.run(bobs_change())
    relay.kill()
    with sqlite3.connect(relay.data_dir / "relay.db") as db:
        db.execute("INSERT INTO group_changes VALUES (?, 1, ?, ?, 0)", (group_id, forged, digest))
        db.execute("UPDATE groups SET seq = 1, head = ? WHERE group_id = ?", (digest, group_id))
        db.execute("INSERT INTO group_members VALUES (?, ?, 0, 1, NULL)", (group_id, dave_id))
    relay.restart()

    # Carol, new to the group, replays the whole chain and refuses it: no group at all.
    updates = carol.run("sync", "--json").json()["updates"]
    assert [u["kind"] for u in updates] == ["dropped"], updates
    assert "does not verify was ignored" in updates[0]["detail"]
    assert carol.run("group", "list", "--json").json() == []
    # Bob, who had the group, keeps what he verified and will not send on the forged chain.
    refused = bob.run("send", before[0]["name"], "hello dave?", expect=5)
    assert "does not verify" in refused.err
    assert bob.run("group", "list", "--json").json() == before
    # Alice too: nothing is wrapped to Dave on the relay's word.
    assert alice.run("send", "team", "only the real members", expect=5).code == 5
    assert dave.run("inbox", "--json").json() == []
