"""Trust through the CLI: pinned identities, safety numbers, a key change that is loud."""

from __future__ import annotations

from pathlib import Path

from cli_harness import Person
from relay_process import RelayProcess, relay_cli


def _digits(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and all(part.isdigit() for part in stripped.split()):
            return stripped
    raise AssertionError(f"no safety number in {text!r}")


def test_both_sides_compute_the_same_safety_number(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    theirs = _digits(bob.run("contacts", "verify", "alice").out)
    ours = _digits(alice.run("contacts", "verify", "bob").out)
    assert ours == theirs
    assert len(ours.replace(" ", "")) >= 30
    assert alice.run("contacts", "list", "--json").json()[0]["verified"] is False


def test_a_changed_identity_is_refused_until_accepted(
    tmp_path: Path, relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    before = _digits(alice.run("contacts", "verify", "bob", "--confirm").out)
    first = alice.run("send", "bob", "before the change", "--json").json()["id"]

    # Bob loses his laptop and starts over; the operator frees his handle for the new key.
    released = relay_cli(tmp_path / "relay", "release-handle", "bob", "--data-dir", relay.data_dir)
    assert released.returncode == 0, released.stderr
    assert "released 'bob'" in released.stdout
    new_bob = Person(tmp_path / "people", "bob-reinstalled")
    new_bob.setup(relay.url(), handle="bob")

    refused = alice.run("send", "bob", "are you still you?", expect=5)
    assert "WARNING" in refused.err
    assert "identity key has changed" in refused.err
    assert "e2e-recall contacts accept bob" in refused.err
    assert alice.run("send", "bob", "again?", expect=5).code == 5  # still refused
    (listed,) = alice.run("contacts", "list", "--json").json()
    assert listed["key_changed"] is True

    after = _digits(alice.run("contacts", "verify", "bob").out)
    assert after != before  # the number shown is the new key's, to compare out of band
    new_bob.run("contacts", "add", "alice", "alice")
    assert after == _digits(new_bob.run("contacts", "verify", "alice").out)

    accepted = alice.run("contacts", "accept", "bob")
    assert "not verified" in accepted.out
    (listed,) = alice.run("contacts", "list", "--json").json()
    assert listed["key_changed"] is False
    assert listed["verified"] is False
    sent = alice.run("send", "bob", "welcome back", "--json").json()["id"]
    assert new_bob.run("open", sent[:8], "--json").json()["text"] == "welcome back"
    # The old identity never got the new message, and the reinstalled one never the old.
    assert [m["id"] for m in new_bob.run("history", "alice", "--json").json()] == [sent]
    assert [m["id"] for m in bob.run("history", "alice", "--json").json()] == [first]


def test_accept_without_a_change_and_unknown_contacts_are_usage_errors(
    pair: tuple[Person, Person],
) -> None:
    alice, _ = pair
    assert "has not changed" in alice.run("contacts", "accept", "bob", expect=2).err
    assert "No contact named" in alice.run("contacts", "verify", "carol", expect=2).err
    assert "No contact named" in alice.run("send", "carol", "hi", expect=2).err
    assert "knows no user" in alice.run("contacts", "add", "carol", "carol", expect=2).err
    assert "already" in alice.run("contacts", "add", "bob2", "bob", expect=2).err
    assert "That is you" in alice.run("contacts", "add", "me", "alice", expect=2).err
    assert "not a usable contact name" in alice.run("contacts", "add", "../x", "bob", expect=2).err


def test_remove_keeps_the_history(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    alice.run("send", "bob", "kept", "--json")
    removed = alice.run("contacts", "remove", "bob")
    assert "history stays" in removed.out
    assert alice.run("contacts", "list", "--json").json() == []
    alice.run("contacts", "add", "robert", "bob")
    assert [m["text"] for m in alice.run("history", "robert", "--json").json()] == ["kept"]
    assert bob.run("inbox", "--json").json()[0]["contact"] == "alice"
