"""Wrapping-key rotation with the real ``e2e-recall`` command and a relay process.

Time is real: Bob's first certificate is given a lifetime of seconds
(``E2E_RECALL_KEY_LIFETIME``), and the tests wait for it to pass rather than
assert on how long anything took.  What is checked is behaviour: which key
opens which message, which rows the profile's SQLite file still holds, and
that a sender with a stale directory recovers by itself.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_harness import Person
from relay_process import RelayProcess, free_port

FIRST_LIFETIME = "15s"  # Bob's first key: the ~8 commands before expiry take 1-4 s, loaded


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay that completes a message as soon as every device opened it (no open grace)."""
    process = RelayProcess(
        tmp_path / "relay", tmp_path / "relay" / "data", "--open-grace", "0s", port=free_port()
    )
    try:
        yield process.start()
    finally:
        process.kill()


def _people(tmp_path: Path, relay: RelayProcess) -> tuple[Person, Person]:
    alice, bob = Person(tmp_path / "people", "alice"), Person(tmp_path / "people", "bob")
    bob.env["E2E_RECALL_KEY_LIFETIME"] = FIRST_LIFETIME
    alice.setup(relay.url())
    bob.setup(relay.url())
    bob.env["E2E_RECALL_KEY_LIFETIME"] = "1h"  # what Bob's later keys get
    alice.run("contacts", "add", "bob", "bob")
    bob.run("contacts", "add", "alice", "alice")
    return alice, bob


def _rows(person: Person) -> dict[str, tuple[str, bytes]]:
    """key id (hex) -> (state, sealed private key) as the profile's SQLite file holds them."""
    (database,) = [p for p in person.profile.iterdir() if p.suffix == ".db"]
    with sqlite3.connect(database) as conn:
        found = conn.execute("SELECT key_id, state, sealed FROM wrap_keys").fetchall()
    return {bytes(k).hex(): (state, bytes(sealed)) for k, state, sealed in found}


def _profile_bytes(person: Person) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(person.profile.rglob("*")) if p.is_file())


def _relay_key_id(relay: RelayProcess, message_id: str) -> str:
    with sqlite3.connect(relay.data_dir / "relay.db") as conn:
        (key_id,) = conn.execute(
            "SELECT key_id FROM deliveries WHERE message_id = ?", (bytes.fromhex(message_id),)
        ).fetchone()
    return bytes(key_id).hex()


def _metrics(relay: RelayProcess) -> str:
    with urllib.request.urlopen(relay.url() + "/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def _wait_until(ms: int) -> None:
    """Sleep until the wall clock passes ``ms`` (plus a little, for the relay's clock too)."""
    delay = ms / 1000 - time.time() + 0.3
    if delay > 0:
        time.sleep(delay)


def test_old_messages_open_after_rotation_and_the_old_key_goes_when_nothing_needs_it(
    tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    before = alice.run("send", "bob", "wrapped to the first key", "--json").json()
    bob.run("sync")
    assert _relay_key_id(relay, before["id"]) == first["key_id"]

    rotated = bob.run("device", "rotate", "--json").json()
    assert rotated["key_id"] != first["key_id"]
    assert rotated["deleted"] == []
    after = alice.run("send", "bob", "wrapped to the new key", "--json").json()
    assert _relay_key_id(relay, after["id"]) == rotated["key_id"]
    rows = _rows(bob)
    assert rows[first["key_id"]][0] == "previous"
    assert rows[rotated["key_id"]][0] == "current"
    old_sealed = rows[first["key_id"]][1]

    # The first key's certificate expires: the relay refuses new wraps to it, but one
    # message wrapped to it is still waiting, so Bob keeps it.
    _wait_until(first["expires_at"])
    bob.run("sync")
    assert first["key_id"] in _rows(bob)
    opened = bob.run("open", before["id"][:8], "--json").json()
    assert opened["text"] == "wrapped to the first key"

    # Nothing is wrapped to it any more: the next command that talks to the relay deletes
    # it, and neither the row nor the sealed key is anywhere in the profile's files.
    bob.run("sync")
    assert set(_rows(bob)) == {rotated["key_id"]}
    assert old_sealed not in _profile_bytes(bob)
    assert bob.run("open", after["id"][:8], "--json").json()["text"] == "wrapped to the new key"
    keys = bob.run("device", "keys", "--json").json()["keys"]
    assert [(k["key_id"], k["state"]) for k in keys] == [(rotated["key_id"], "current")]


def _client_key_id(person: Person, message_id: str) -> str | None:
    """The key id the profile's messages table keeps for a received message (the fetch's)."""
    (database,) = [p for p in person.profile.iterdir() if p.suffix == ".db"]
    with sqlite3.connect(database) as conn:
        (key_id,) = conn.execute(
            "SELECT key_id FROM messages WHERE message_id = ?", (bytes.fromhex(message_id),)
        ).fetchone()
    return None if key_id is None else bytes(key_id).hex()


def test_a_message_fetched_after_a_rotation_names_the_old_key_and_opens(
    tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    before = alice.run("send", "bob", "sealed before the rotation", "--json").json()
    rotated = bob.run("device", "rotate", "--json").json()
    assert rotated["key_id"] != first["key_id"]
    bob.run("sync")  # the fetch comes after the rotation
    assert _client_key_id(bob, before["id"]) == first["key_id"]
    after = alice.run("send", "bob", "sealed after it", "--json").json()
    bob.run("sync")
    assert _client_key_id(bob, after["id"]) == rotated["key_id"]
    opened = bob.run("open", before["id"][:8], "--json").json()
    assert opened["text"] == "sealed before the rotation"
    assert bob.run("open", after["id"][:8], "--json").json()["text"] == "sealed after it"


def test_a_sender_with_a_stale_directory_recovers_by_itself(
    tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    relay.stop()
    queued = alice.run("send", "bob", "written offline", "--json", expect=3).json()
    assert queued["queued"] is True  # wrapped to Bob's first key, from Alice's cached directory
    relay.restart()
    rotated = bob.run("device", "rotate", "--json").json()
    _wait_until(first["expires_at"])  # now the relay refuses wraps to the first key
    alice.run("sync")  # 409 stale_key, a fresh directory, wrapped again, accepted
    history = alice.run("history", "bob", "--json").json()
    assert [(m["state"], m["problem"]) for m in history] == [("sent", None)]
    assert _relay_key_id(relay, queued["id"]) == rotated["key_id"]
    bob.run("sync")
    assert bob.run("open", queued["id"][:8], "--json").json()["text"] == "written offline"


def test_a_rotation_cut_off_before_the_relay_answered_keeps_its_key_and_finishes_later(
    tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    relay.stop()
    failed = bob.run("device", "rotate", expect=3)
    assert "relay" in failed.err.lower()
    pending = {k: s for k, (s, _) in _rows(bob).items() if s == "pending"}
    assert len(pending) == 1  # the new private key was kept before anything was sent
    (new_id,) = pending
    relay.restart()
    bob.run("sync")  # any command that talks to the relay finishes the rotation
    assert {k: s for k, (s, _) in _rows(bob).items()} == {
        first["key_id"]: "previous",
        new_id: "current",
    }
    sent = alice.run("send", "bob", "to the key made offline", "--json").json()
    assert _relay_key_id(relay, sent["id"]) == new_id
    bob.run("sync")
    assert bob.run("open", sent["id"][:8], "--json").json()["text"] == "to the key made offline"


def test_every_command_rotates_first_when_the_key_is_due(
    tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    time.sleep(1.1)  # commands take milliseconds: let the key become more than a second old
    bob.run("sync", "--rotate-every", "1s")  # the test hook: a key one second old is due
    keys = {k["key_id"]: k["state"] for k in bob.run("device", "keys", "--json").json()["keys"]}
    assert keys[first["key_id"]] == "previous"
    (current,) = [k for k, s in keys.items() if s == "current"]
    sent = alice.run("send", "bob", "after the scheduled rotation", "--json").json()
    assert _relay_key_id(relay, sent["id"]) == current
    del bob.env["E2E_RECALL_KEY_LIFETIME"]  # the environment wins over the profile's setting
    bob.run("device", "keys", "--every", "2w", "--lifetime", "30d")
    plan = bob.run("device", "keys", "--json").json()
    assert (plan["rotate_every"], plan["lifetime"]) == (14 * 86_400_000, 30 * 86_400_000)
    refused = bob.run("device", "keys", "--lifetime", "91d", expect=2)
    assert "90 days" in refused.err


def test_watch_rotates_while_it_runs(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = _people(tmp_path, relay)
    (first,) = bob.run("device", "keys", "--json").json()["keys"]
    watch = bob.start("watch", "--json", "--timeout", "60", "--rotate-every", "2s")
    try:
        watch.expect_json("connected")
        seen = {first["key_id"]}
        deadline = time.monotonic() + 30
        while len(seen) < 3:  # two rotations at least, one of them made while connected
            assert time.monotonic() < deadline, f"watch did not rotate: {seen}"
            time.sleep(0.5)
            seen |= {k["key_id"] for k in bob.run("device", "keys", "--json").json()["keys"]}
        sent = alice.run("send", "bob", "to whatever key is current", "--json").json()
        # watch goes on rotating every 2 s, so the wrap may name a key made after the loop
        # above; a key with a wrap pending is never deleted, so a listing taken now holds it.
        listed = bob.run("device", "keys", "--json").json()["keys"]
        watch.expect_json("message")
        wrapped_to = _relay_key_id(relay, sent["id"])
        assert wrapped_to in seen | {k["key_id"] for k in listed}
        assert wrapped_to != first["key_id"]  # the first key was superseded before the send
        assert [k["state"] for k in listed].count("current") == 1
        # watch holds its WebSocket: the rotations it made went over it, not over HTTP
        assert 'relay_requests_total{route="ws:certificate",status="201"}' in _metrics(relay)
    finally:
        watch.kill()
    assert bob.run("open", sent["id"][:8], "--json").json()["text"] == "to whatever key is current"
