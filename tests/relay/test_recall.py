"""Recall at the relay: idempotency, who may recall, windows, policies, replacement."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er

from driver import MINUTE, Clock, Person, RelayRefused, start_relay, states


async def test_recalling_twice_is_idempotent(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "twice")
    first = await alice.recall(header)
    alice.relay.clock.advance(60 * 24 * 60 * MINUTE)  # long after every window (and the session)
    await alice.login()
    second = await alice.recall(header)
    assert (first["already_recalled"], second["already_recalled"]) == (False, True)
    assert second["report"]["purge_receipt"] == first["report"]["purge_receipt"]
    assert second["report"]["revocation"] == first["report"]["revocation"]


async def test_only_the_sender_can_recall(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "mine")
    forged = er.sign_revocation(
        bob.identity,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        issued_at=alice.relay.clock.now,
    )
    with pytest.raises(RelayRefused) as refused:
        await bob.call(
            "POST",
            f"/v1/messages/{header.message_id.hex()}/recall",
            {"revocation": forged.signed, "replacement": None},
        )
    assert (refused.value.status, refused.value.code) == (403, "not_sender")
    assert refused.value.message == "Only the person who sent a message can recall it."
    with pytest.raises(
        RelayRefused
    ) as presented:  # Bob presenting Alice's own signature changes nothing
        await bob.call(
            "POST",
            f"/v1/messages/{header.message_id.hex()}/recall",
            {"revocation": alice.revocation(header).signed, "replacement": None},
        )
    assert presented.value.status == 403
    assert states(await alice.report(header.message_id)) == ["queued"]


async def test_a_revocation_for_another_message_changes_nothing(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    first = await alice.send(bob, "one")
    second = await alice.send(bob, "two")
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST",
            f"/v1/messages/{second.message_id.hex()}/recall",
            {"revocation": alice.revocation(first).signed, "replacement": None},
        )
    assert refused.value.code == "other_message"
    assert states(await alice.report(first.message_id)) == ["queued"]
    assert states(await alice.report(second.message_id)) == ["queued"]


async def test_opened_window_closes_with_a_sentence_that_says_when(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "quick", opened_window=10 * MINUTE)
    await bob.read(alice, header.message_id)
    alice.relay.clock.advance(11 * MINUTE)
    with pytest.raises(RelayRefused) as refused:
        await alice.recall(header)
    closed_at = header.sent_at + 10 * MINUTE
    assert (refused.value.status, refused.value.code) == (409, "window_closed")
    assert (
        refused.value.message == f"The recall window closed at {er.report.format_time(closed_at)}."
    )
    assert refused.value.body["facts"] == {"closed_at": closed_at}
    assert states(await alice.report(header.message_id)) == ["opened"]


async def test_a_sealed_message_outlives_the_opened_window(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "still sealed", opened_window=10 * MINUTE)
    await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    alice.relay.clock.advance(3 * 60 * MINUTE)
    answer = await alice.recall(header)
    assert states(answer["report"]) == ["delivered_sealed"]


async def test_recall_and_replace_is_one_action(people: tuple[Person, Person]) -> None:
    alice, bob = people
    original = await alice.send(bob, "meet at 10")
    await bob.read(alice, original.message_id)
    replacement, sealed = alice.seal(bob, "meet at 11", replaces=original.message_id)
    wraps = await alice.wraps_for(bob, replacement, sealed.message_key)
    answer = await alice.recall(
        original,
        replacement={"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
        replacement_id=replacement.message_id,
    )
    assert answer["replacement_id"] == replacement.message_id
    kinds = [(e["kind"], e["message_id"]) for e in await bob.sync()]
    assert ("revocation", original.message_id) in kinds
    assert ("message", replacement.message_id) in kinds
    assert await bob.read(alice, replacement.message_id) == "meet at 11"


async def test_a_refused_recall_does_not_store_its_replacement(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    original = await alice.send(bob, "too late", opened_window=MINUTE)
    await bob.read(alice, original.message_id)
    alice.relay.clock.advance(2 * MINUTE)
    replacement, sealed = alice.seal(bob, "fixed", replaces=original.message_id)
    wraps = await alice.wraps_for(bob, replacement, sealed.message_key)
    with pytest.raises(RelayRefused):
        await alice.recall(
            original,
            replacement={"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
            replacement_id=replacement.message_id,
        )
    with pytest.raises(RelayRefused) as missing:
        await bob.call("GET", f"/v1/messages/{replacement.message_id.hex()}")
    assert missing.value.status == 404


async def test_rate_limit_per_conversation(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(
        tmp_path, Clock(), recalls_per_conversation_per_day=2, **database_options
    )
    try:
        alice, bob = Person("alice", relay, http), Person("bob", relay, http)
        await alice.add_device()
        await bob.add_device()
        headers = [await alice.send(bob, f"m{i}") for i in range(3)]
        await alice.recall(headers[0])
        await alice.recall(headers[1])
        with pytest.raises(RelayRefused) as refused:
            await alice.recall(headers[2])
        assert (refused.value.status, refused.value.code) == (429, "rate_limited")
        assert "limit of 2 recalls per conversation per day" in refused.value.message
        relay.clock.advance(24 * 60 * MINUTE + 1)
        await alice.recall(headers[2])
    finally:
        await relay.runner.cleanup()


async def test_only_while_unread_policy(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(tmp_path, Clock(), only_while_unread="true", **database_options)
    try:
        alice, bob = Person("alice", relay, http), Person("bob", relay, http)
        await alice.add_device()
        await bob.add_device()
        unread = await alice.send(bob, "unread")
        read = await alice.send(bob, "read")
        await bob.read(alice, read.message_id)
        await alice.recall(unread)
        with pytest.raises(RelayRefused) as refused:
            await alice.recall(read)
        assert refused.value.code == "opened"
        assert refused.value.message.startswith("This relay only recalls unread messages")
    finally:
        await relay.runner.cleanup()


async def test_own_devices_opening_does_not_shorten_the_window(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    await alice.add_device()  # a second device of Alice gets a copy of what she sends
    header, sealed = alice.seal(bob, "synced copy", opened_window=MINUTE)
    laptop = alice.devices[1].secrets
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    wraps.append(
        {
            "device_id": laptop.device_id,
            "wrap": er.wrap_message_key(
                sealed.message_key,
                laptop.wrap_key.public_key,
                message_id=header.message_id,
                conversation_id=header.conversation_id,
                device_id=laptop.device_id,
            ),
            "key_id": laptop.wrap_key.public_key.key_id,
        }
    )
    await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    await alice.read(alice, header.message_id, device=1)
    alice.relay.clock.advance(10 * MINUTE)
    answer = await alice.recall(header)  # still inside the sealed window: no recipient opened it
    assert sorted(states(answer["report"])) == ["never_delivered", "pending"]


async def test_message_ids_cannot_be_reused_by_another_sender(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    taken = os.urandom(16)
    await alice.send(bob, "first", message_id=taken)
    with pytest.raises(RelayRefused) as refused:
        await bob.send(alice, "collision", message_id=taken)
    assert (refused.value.status, refused.value.code) == (409, "message_exists")
