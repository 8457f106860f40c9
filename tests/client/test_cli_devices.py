"""Linking, listing and revoking devices with the real ``e2e-recall`` and a relay process.

``device link`` and ``device join`` run as two processes at once, as on two
computers; everything else is one process per command, as from a shell.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from cli_harness import Person, Stream
from json_shapes import conforms
from relay_process import RelayProcess


def _start_link(person: Person, *extra: str) -> tuple[Stream, dict[str, object]]:
    link = person.start("device", "link", "--json", *extra)
    first = json.loads(link.expect(lambda line: '"code"' in line))
    conforms("device link", first)
    return link, first


def _link(old: Person, new: Person) -> dict[str, object]:
    """Link ``new`` (a fresh profile) to ``old``'s identity; the join's JSON."""
    link, first = _start_link(old)
    try:
        result = new.run(
            "device",
            "join",
            str(first["code"]),
            str(first["relay"]),
            "--kdf",
            "interactive",
            "--json",
        )
        joined = result.json()
        done = json.loads(link.expect(lambda line: '"linked"' in line))
        assert f"Asked to join as device {str(joined['device_id'])[:8]}" in result.err
        assert link.wait() == 0
    finally:
        link.kill()
    conforms("device join", joined)
    assert done["registered"] is True
    assert done["device_id"] == joined["device_id"]
    return joined  # type: ignore[no-any-return]


def _phone(alice: Person) -> Person:
    return Person(alice.profile.parent, "alice-phone", passphrase=alice.passphrase)


def _updates(person: Person, kind: str) -> list[dict[str, object]]:
    synced = person.run("sync", "--json").json()
    conforms("sync", synced)
    return [u for u in synced["updates"] if u["kind"] == kind]


def test_a_linked_device_knows_contacts_and_groups_and_gets_copies(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    alice.run("contacts", "verify", "bob", "--confirm")
    alice.run("group", "create", "team", "bob")
    bob.run("sync")  # Bob learns of the group
    phone = _phone(alice)
    joined = _link(alice, phone)
    assert (joined["contacts"], joined["groups"], joined["problems"]) == (1, 1, [])
    assert joined["user_id"] == alice.run("whoami", "--json").json()["user_id"]
    (bob_there,) = phone.run("contacts", "list", "--json").json()
    assert (bob_there["name"], bob_there["verified"]) == ("bob", True)
    listed = alice.run("device", "list", "--json").json()
    conforms("device list", listed)
    assert sorted(d["this_device"] for d in listed) == [False, True]
    assert {d["device_id"] for d in listed} >= {joined["device_id"]}

    # A message sent after the link reaches the new device; Bob's client notes the device.
    bob.run("send", "alice", "after the link")
    (noted,) = _updates(bob, "device")
    assert f"alice linked a new device {str(joined['device_id'])[:8]}" == noted["detail"]
    (waiting,) = phone.run("inbox", "--json").json()
    assert phone.run("open", waiting["id"], "--json").json()["text"] == "after the link"

    # The group: the phone verified its chain; it receives and sends group messages.
    (group,) = phone.run("group", "list", "--json").json()
    assert sorted(m["name"] for m in group["members"]) == ["bob", "you"]
    (bobs,) = bob.run("group", "list", "--json").json()  # Bob's own name for it
    sent = bob.run("send", bobs["name"], "group hello", "--json").json()
    phone.run("sync")
    assert phone.run("open", sent["id"], "--json").json()["text"] == "group hello"
    from_phone = phone.run("send", group["name"], "from the phone", "--json").json()
    bob.run("sync")
    assert bob.run("open", from_phone["id"], "--json").json()["text"] == "from the phone"
    alice.run("sync")  # the laptop's copy of what the phone sent
    assert alice.run("open", from_phone["id"], "--json").json()["text"] == "from the phone"

    # A direct message from the laptop: the phone keeps a copy, and the recall reaches it.
    copy = alice.run("send", "bob", "copied to my phone", "--json").json()
    phone.run("sync")
    (kept,) = [e for e in phone.run("history", "bob", "--json").json() if e["id"] == copy["id"]]
    assert (kept["direction"], kept["state"]) == ("out", "sealed")
    assert phone.run("open", copy["id"], "--json").json()["text"] == "copied to my phone"
    recalled = alice.run("recall", copy["id"], "--json").json()
    lines = {d["device"]: d for d in recalled["devices"]}
    assert any(str(joined["device_id"]).startswith(key[:8]) for key in lines), lines
    phone.run("sync")
    (gone,) = [e for e in phone.run("history", "bob", "--json").json() if e["id"] == copy["id"]]
    assert (gone["state"], gone["text"]) == ("recalled", None)
    report = alice.run("report", copy["id"], "--json").json()
    phone_line = [d for d in report["devices"] if str(joined["device_id"])[:8] in d["device"]]
    assert [d["state"] for d in phone_line] == ["deleted"]


def test_a_linked_device_shows_the_group_names_the_old_one_shows(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    alice.run("group", "create", "team", "bob")
    alice.run("group", "create", "crew", "bob")
    alice.run("group", "rename", "crew", "night-shift")  # a name on the laptop only
    bob.run("sync")
    laptop = {g["group_id"]: g for g in alice.run("group", "list", "--json").json()}
    assert sorted(g["name"] for g in laptop.values()) == ["night-shift", "team"]
    phone = _phone(alice)
    joined = _link(alice, phone)
    assert (joined["groups"], joined["problems"]) == (2, [])
    # At once, before any sync: the laptop's names, and the members as each chain has them.
    there = {g["group_id"]: g for g in phone.run("group", "list", "--json").json()}
    assert {i: g["name"] for i, g in there.items()} == {i: g["name"] for i, g in laptop.items()}
    for group_id, group in there.items():
        assert group["members"] == laptop[group_id]["members"]
    (crew_id,) = [i for i, g in laptop.items() if g["name"] == "night-shift"]
    (bobs_crew,) = [
        g for g in bob.run("group", "list", "--json").json() if g["group_id"] == crew_id
    ]
    assert bobs_crew["name"] != "night-shift"  # Bob has his own name: names stay with the user
    sent = bob.run("send", bobs_crew["name"], "for the night shift", "--json").json()
    (arrived,) = [u for u in _updates(phone, "message") if u["id"] == sent["id"]]
    assert arrived["contact"] == "bob in night-shift"
    assert phone.run("open", sent["id"], "--json").json()["text"] == "for the night shift"


def test_typos_reuse_and_expiry_are_refused_with_a_sentence(
    relay: RelayProcess, alice: Person
) -> None:
    phone, tablet = _phone(alice), Person(alice.profile.parent, "alice-tablet")
    link, first = _start_link(alice)
    try:
        code = str(first["code"])
        flat = code.replace("-", "")
        typo = flat[:5] + ("A" if flat[5] != "A" else "B") + flat[6:]
        refused = phone.run("device", "join", typo, relay.url(), "--kdf", "interactive", expect=2)
        assert "not a valid link code" in refused.err
        assert not phone.profile.exists()  # nothing was written
        phone.run("device", "join", code.lower(), relay.url(), "--kdf", "interactive")
        link.expect(lambda line: '"linked"' in line)
        assert link.wait() == 0
    finally:
        link.kill()
    again = tablet.run("device", "join", code, relay.url(), "--kdf", "interactive", expect=1)
    assert "knows no link for this code" in again.err
    assert not tablet.profile.exists()

    expiring, quick = _start_link(alice, "--timeout", "1s")
    try:
        assert expiring.wait() == 1
        assert "in time" in expiring.stderr()
    finally:
        expiring.kill()
    late = tablet.run(
        "device", "join", str(quick["code"]), relay.url(), "--kdf", "interactive", expect=1
    )
    assert "knows no link for this code" in late.err


def _wraps_for(relay: RelayProcess, device_id: bytes) -> list[bytes]:
    with sqlite3.connect(relay.data_dir / "relay.db") as conn:
        return [
            bytes(row[0])
            for row in conn.execute(
                "SELECT wrap FROM deliveries WHERE device_id = ? AND wrap IS NOT NULL",
                (device_id,),
            )
        ]


def _stored_bytes(relay: RelayProcess) -> bytes:
    return b"".join(p.read_bytes() for p in Path(relay.data_dir).glob("relay.db*"))


def test_revoking_a_device_with_the_cli(relay: RelayProcess, pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    phone = _phone(alice)
    phone_id = bytes.fromhex(str(_link(alice, phone)["device_id"]))
    bob.run("send", "alice", "waiting for the phone")
    (pending,) = _wraps_for(relay, phone_id)
    revoked = alice.run("device", "revoke", phone_id.hex()[:6], "--json").json()
    conforms("device revoke", revoked)
    assert (revoked["already_revoked"], revoked["wraps_destroyed"]) == (False, 1)
    assert _wraps_for(relay, phone_id) == []
    deadline = time.monotonic() + 20  # the relay checkpoints its WAL soon after a purge
    while pending in _stored_bytes(relay) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pending not in _stored_bytes(relay)

    # The revoked device is told, whatever it tries, and nothing crashes.
    for command in (("sync",), ("send", "bob", "still here?"), ("device", "list")):
        said = phone.run(*command, expect=7)
        assert "This device was revoked on" in said.err, said
    laptop_prefix = alice.run("whoami", "--json").json()["device_id"][:6]
    assert "revoked" in phone.run("device", "revoke", laptop_prefix, expect=7).err

    listed = {d["device_id"]: d for d in alice.run("device", "list", "--json").json()}
    assert listed[phone_id.hex()]["revoked_at"] is not None
    assert "revoked on" in alice.run("device", "list").out
    again = alice.run("device", "revoke", phone_id.hex()[:6], "--json").json()
    assert again["already_revoked"] is True
    this = alice.run("device", "revoke", laptop_prefix, expect=2)
    assert "this device" in this.err

    # Bob's next send wraps only to the laptop, and his client notes the removal.
    bob.run("send", "alice", "after the revocation")
    notes = [u["detail"] for u in _updates(bob, "device")]
    assert f"alice removed device {phone_id.hex()[:8]}" in notes
    assert f"alice removed device {phone_id.hex()[:8]}" in bob.run("history", "alice").out
    assert _wraps_for(relay, phone_id) == []
    alice.run("sync")
    assert len(alice.run("inbox", "--json").json()) == 2


def test_a_join_that_cannot_register_leaves_no_profile(alice: Person) -> None:
    # Alice's device believes in another handle than the relay has for her, so the relay
    # refuses the new device's registration (409 handle_mismatch) after the answer was
    # taken: the joining profile must not be left half-made.
    with sqlite3.connect(alice.profile / "client.db") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'handle'", (b"not-alice",))
    phone = _phone(alice)
    link, first = _start_link(alice)
    try:
        failed = phone.run(
            "device",
            "join",
            str(first["code"]),
            str(first["relay"]),
            "--kdf",
            "interactive",
            expect=1,
        )
    finally:
        link.kill()
    assert "another handle" in failed.err
    assert not phone.profile.exists()
    assert not phone.profile.is_dir()
