"""What a recall leaves on the recipient's disk: nothing of the message.

These drive the client library in-process (the same code the CLI runs)
against a relay process on loopback, and scan every file of the profile.
"""

from __future__ import annotations

import os
from pathlib import Path

from client.client import Client
from client.receiving import process_event
from e2e_recall import direct_conversation_id, sign_revocation, wire

from relay_process import RelayProcess

WINDOW = 16


def _profile_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _windows(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(0, len(secret) - WINDOW + 1)}


async def test_a_recall_leaves_no_byte_of_the_message_on_the_recipients_disk(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, bob = clients
    canary = os.urandom(24).hex()
    sent = await alice.send("bob", f"the secret is {canary}")
    await bob.sync()
    sealed_row = bob.core.store.message(sent.message_id)
    assert sealed_row is not None
    assert sealed_row.envelope is not None  # the ciphertext, sealed again under the storage key
    assert any(w in _profile_bytes(tmp_path / "bob") for w in _windows(sealed_row.envelope))
    opened = await bob.open_message(sent.message_id)
    assert opened.text is not None
    assert canary in opened.text
    row = bob.core.store.message(sent.message_id)
    assert row is not None
    assert row.body is not None
    stored = [sealed_row.envelope, row.body]  # as they sat on disk
    on_disk = _profile_bytes(tmp_path / "bob")
    assert canary.encode() not in on_disk  # bodies are never on disk in the clear
    assert any(w in on_disk for w in _windows(row.body))  # and the scan can see them

    await alice.recall(sent.message_id)
    await bob.sync()
    after = _profile_bytes(tmp_path / "bob")
    found = [w for secret in stored for w in _windows(secret) if w in after]
    assert found == []
    assert canary.encode() not in after
    assert bob.core.store.notifications() == []
    assert [e.state for e in bob.history("alice")] == ["recalled"]


async def test_a_recall_that_arrives_first_keeps_its_message_from_ever_showing(
    clients: tuple[Client, Client],
) -> None:
    alice, bob = clients
    sent = await alice.send("bob", "should never be seen")
    conversation = direct_conversation_id(alice.user_id, bob.user_id)
    early = sign_revocation(
        alice.core.keys.identity,
        message_id=sent.message_id,
        conversation_id=conversation,
        issued_at=alice.core.clock(),
    )
    # The revocation reaches Bob's device before the notice of its message.
    payload = wire.encode({"sender": alice.user_id, "revocation": early.signed})
    assert await process_event(bob.core, "revocation", sent.message_id, payload) is None
    await bob.sync()  # now the notice comes
    assert bob.inbox() == []
    assert bob.history("alice") == []
    assert bob.core.store.message(sent.message_id) is None


async def test_an_early_recall_by_someone_else_does_not_hide_a_message(
    clients: tuple[Client, Client], tmp_path: Path, relay: RelayProcess
) -> None:
    alice, bob = clients
    mallory = Client.create(tmp_path / "mallory", "mallory passphrase", strength="interactive")
    try:
        await mallory.register(relay.url(), "mallory")
        await bob.add_contact("mallory", "mallory")
        sent = await alice.send("bob", "from alice, really")
        forged = sign_revocation(
            mallory.core.keys.identity,
            message_id=sent.message_id,
            conversation_id=direct_conversation_id(mallory.user_id, bob.user_id),
            issued_at=mallory.core.clock(),
        )
        payload = wire.encode({"sender": mallory.user_id, "revocation": forged.signed})
        await process_event(bob.core, "revocation", sent.message_id, payload)
        await bob.sync()
        assert [e.message_id for e in bob.inbox()] == [sent.message_id]
    finally:
        await mallory.close()


async def test_a_recall_of_a_sealed_message_removes_its_notification(
    clients: tuple[Client, Client],
) -> None:
    alice, bob = clients
    sent = await alice.send("bob", "sealed, then recalled")
    kept = await alice.send("bob", "sealed, and kept")
    await bob.sync()
    assert {n[0] for n in bob.core.store.notifications()} == {sent.message_id, kept.message_id}
    await alice.recall(sent.message_id)
    await bob.sync()
    assert [n[0] for n in bob.core.store.notifications()] == [kept.message_id]
    assert [e.state for e in bob.history("alice")] == ["recalled", "sealed"]
