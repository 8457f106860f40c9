"""Disappearing messages through the real ``e2e-recall`` command and a relay process.

Every step is its own process.  Nothing here asserts how long anything took:
each test waits, with a deadline, for the state the timer must bring, then
checks it — in the JSON the commands print, in the profile's SQLite file
(read directly: no body, and never the plaintext bytes), and on disk for the
files that were saved.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cli_harness import Person
from relay_process import RelayProcess

T = TypeVar("T")
DEADLINE = 40.0  # seconds; a generous ceiling for a loaded machine, never a speed claim


def until(check: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def history(person: Person, name: str) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in person.run("history", name, "--json").json()}


def state_of(person: Person, name: str, message_id: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return history(person, name)[message_id]["state"] if message_id else None

    return check


def expired(person: Person, name: str, message_id: str) -> Callable[[], bool]:
    return lambda: state_of(person, name, message_id)() == "expired"


def stored_row(person: Person, message_id: str) -> tuple[Any, ...]:
    """The profile's own row for the message: (state, body, envelope), read from the file."""
    path = person.profile / "client.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT state, body, envelope FROM messages WHERE hex(message_id) = ?",
            (message_id.upper(),),
        ).fetchone()
    assert row is not None
    return tuple(row)


def profile_bytes(person: Person) -> bytes:
    return b"".join(p.read_bytes() for p in person.profile.rglob("*") if p.is_file())


def test_a_two_second_timer_deletes_every_copy_and_the_saved_file(
    pair: tuple[Person, Person], tmp_path: Path
) -> None:
    alice, bob = pair
    secret = "the vault opens at " + os.urandom(8).hex()
    attachment = tmp_path / "plan.txt"
    attachment.write_bytes(b"plan: " + os.urandom(32).hex().encode())
    downloads = tmp_path / "bob-downloads"
    sent = alice.run(
        "send", "bob", secret, "--file", str(attachment), "--expire", "8s", "--json"
    ).json()
    message_id = sent["id"]
    opened = bob.run("open", message_id[:8], "--downloads", str(downloads), "--json").json()
    assert opened["text"] == secret
    saved = Path(opened["files"][0]["saved_at"])
    assert saved.read_bytes() == attachment.read_bytes()
    sent_at = opened["sent_at"]
    assert opened["expires_at"] == sent_at + 8000
    mine = history(alice, "bob")[message_id]
    assert mine["expires_at"] == sent_at + 8000  # the sender's own copy goes at the same moment

    until(expired(bob, "alice", message_id), "Bob's copy to expire")
    entry = history(bob, "alice")[message_id]
    assert entry["text"] is None
    assert entry["files"] == []
    assert not saved.exists()
    assert "(expired: its timer ran out" in bob.run("history", "alice").out
    state, body, envelope = stored_row(bob, message_id)
    assert (state, body, envelope) == ("expired", None, None)
    assert secret.encode() not in profile_bytes(bob)
    refused = bob.run("open", message_id[:8], expect=1)
    assert "expired" in refused.err
    assert "Traceback" not in refused.text

    until(expired(alice, "bob", message_id), "Alice's own copy to expire")
    assert history(alice, "bob")[message_id]["text"] is None
    assert stored_row(alice, message_id)[1] is None

    def reported() -> dict[str, Any] | None:
        report = alice.run("report", message_id[:8], "--json").json()
        return report if report["state"] == "expired" else None

    report = until(reported, "the relay's report to say expired")
    (device,) = report["devices"]
    # Bob's device confirmed with a signed deletion receipt after the relay destroyed it.
    assert device["state"] in ("expired", "deleted")
    assert "possibly already read" in device["sentence"]
    assert "unknown time" not in device["sentence"]
    assert report["files"]["destroyed"] is True
    assert "Nothing to recall" in alice.run("recall", message_id[:8]).out


def test_watch_deletes_at_the_moment_and_says_so(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    watch = bob.start("watch", "--json", "--timeout", "60")
    try:
        watch.expect_json("connected")
        message_id = alice.run("send", "bob", "brief", "--expire", "2s", "--json").json()["id"]
        assert watch.expect_json("message")["id"] == message_id
        gone = watch.expect_json("expired")
        assert gone["id"] == message_id
        assert gone["contact"] == "alice"
        assert watch.interrupt() == 130
    finally:
        watch.kill()
    assert history(bob, "alice")[message_id]["state"] == "expired"


def test_a_from_opened_timer_starts_when_this_device_opens_it(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    message_id = alice.run(
        "send", "bob", "read me once", "--expire", "2s", "--expire-from", "opened", "--json"
    ).json()["id"]
    (waiting,) = bob.run("inbox", "--json").json()
    assert waiting["expires_at"] is None  # unopened: no moment yet, it stays sealed
    opened = bob.run("open", message_id[:8], "--json").json()
    assert opened["text"] == "read me once"
    assert opened["expires_at"] is not None
    assert opened["expires_at"] > opened["sent_at"]
    until(expired(bob, "alice", message_id), "Bob's opened copy to expire")
    assert stored_row(bob, message_id)[1] is None


def test_the_conversation_default_applies_and_off_sends_one_without(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    assert "disappear 5m after sending" in alice.run("expire", "bob", "5m").out
    set_json = alice.run("expire", "bob", "10s", "--json").json()
    assert set_json == {"name": "bob", "expire": {"after_ms": 10000, "from": "sent"}}
    (contact,) = alice.run("contacts", "list", "--json").json()
    assert contact["expire"] == {"after_ms": 10000, "from": "sent"}
    assert "new messages disappear 10s after sending" in alice.run("history", "bob").out

    timed = alice.run("send", "bob", "with the default", "--json").json()["id"]
    kept = alice.run("send", "bob", "without", "--expire", "off", "--json").json()["id"]
    inbox = {m["id"]: m for m in bob.run("inbox", "--json").json()}
    assert inbox[timed]["expires_at"] == inbox[timed]["sent_at"] + 10000
    assert inbox[kept]["expires_at"] is None
    until(expired(bob, "alice", timed), "the defaulted message to expire")
    assert history(bob, "alice")[kept]["state"] == "sealed"

    assert alice.run("expire", "bob", "off", "--json").json()["expire"] is None
    assert alice.run("contacts", "list", "--json").json()[0]["expire"] is None
    bad = alice.run("expire", "bob", "2y", expect=2)
    assert "not a timer" in bad.err
    too_short = alice.run("send", "bob", "x", "--expire", "0s", expect=2)
    assert "1 second to one year" in too_short.err


def test_an_offline_recipient_deletes_on_its_next_command(
    pair: tuple[Person, Person], relay: RelayProcess
) -> None:
    alice, bob = pair
    secret = "offline secret " + os.urandom(6).hex()
    message_id = alice.run("send", "bob", secret, "--expire", "3s", "--json").json()["id"]
    opened = bob.run("open", message_id[:8], "--json").json()
    assert opened["text"] == secret
    relay.stop()
    deadline = opened["expires_at"] / 1000
    while time.time() < deadline + 0.5:  # wait for the moment on the wall clock, not a guess
        time.sleep(0.1)
    listed = bob.run("history", "alice", "--json")  # the relay is down: local store only
    assert "Showing what this device already has" in listed.err
    (entry,) = listed.json()
    assert (entry["state"], entry["text"]) == ("expired", None)
    assert stored_row(bob, message_id)[:2] == ("expired", None)
    assert secret.encode() not in profile_bytes(bob)
