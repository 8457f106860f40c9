"""The escrow flow over real HTTP: every report state reached by real requests."""

from __future__ import annotations

import pytest

import e2e_recall as er

from driver import MINUTE, Person, RelayRefused, states


async def test_sealed_until_opened_then_opened(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "lunch at noon?")
    assert states(await alice.report(header.message_id)) == ["queued"]
    envelope = (await bob.call("GET", f"/v1/messages/{header.message_id.hex()}"))["envelope"]
    assert er.open_envelope(envelope, alice.identity.public_key).header == header
    assert states(await alice.report(header.message_id)) == ["sealed"]
    assert await bob.read(alice, header.message_id) == "lunch at noon?"
    report = await alice.report(header.message_id)
    assert states(report) == ["opened"]
    assert report["devices"][0]["key_released_at"] == alice.relay.clock.now
    assert report["devices"][0]["attested_by"] == ["relay"]


async def test_recall_before_fetch_leaves_no_trace_for_the_recipient(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "wrong person")
    notices = await bob.sync()
    assert [e["kind"] for e in notices] == ["message"]
    bob.devices[0].cursor = 0  # the notice was never acknowledged
    answer = await alice.recall(header)
    assert answer["already_recalled"] is False
    assert states(answer["report"]) == ["never_delivered"]
    assert await bob.sync() == []  # the unread notice is withdrawn, and no revocation is sent
    with pytest.raises(RelayRefused) as refused:
        await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    assert refused.value.status == 404  # no tombstone: nothing to explain


async def test_recall_after_delivery_before_opening_is_delivered_sealed(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "sealed")
    await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    answer = await alice.recall(header)
    assert states(answer["report"]) == ["delivered_sealed"]
    kinds = [e["kind"] for e in await bob.sync()]
    assert kinds == ["message", "revocation"]
    with pytest.raises(RelayRefused) as refused:
        await bob.call("POST", f"/v1/messages/{header.message_id.hex()}/open", {})
    assert (refused.value.status, refused.value.code) == (410, "message_recalled")
    assert refused.value.message == "The sender recalled this message."


async def test_recall_after_opening_is_pending_until_the_device_signs(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "opened then recalled")
    opened_at = alice.relay.clock.now
    await bob.read(alice, header.message_id)
    alice.relay.clock.advance(MINUTE)
    answer = await alice.recall(header)
    assert states(answer["report"]) == ["pending"]
    revocation = next(e for e in await bob.sync() if e["kind"] == "revocation")["payload"][
        "revocation"
    ]
    await bob.delete_and_receipt(alice, revocation, opened_at=opened_at)
    report = await alice.report(header.message_id)
    assert states(report) == ["deleted"]
    line = report["devices"][0]
    assert line["attested_by"] == ["device", "relay"]
    cert = er.verify_device_certificate(
        bob.devices[0].certificate, bob.identity.public_key, now=opened_at
    )
    receipt = er.verify_deletion_receipt(
        line["receipt"],
        cert,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        revocation=er.verify_revocation(revocation, alice.identity.public_key).digest,
    )
    assert receipt.opened_at == opened_at == line["key_released_at"]  # device and relay agree


async def test_purge_receipt_is_signed_by_the_published_relay_key(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "evidence")
    await bob.read(alice, header.message_id)
    answer = await alice.recall(header)
    well_known = await alice.call("GET", "/.well-known/e2e-recall")
    relay_key = er.VerifyKey(well_known["relay_key"])
    receipt = er.verify_purge_receipt(
        answer["report"]["purge_receipt"],
        relay_key,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        revocation=er.verify_revocation(
            answer["report"]["revocation"], alice.identity.public_key
        ).digest,
    )
    assert [(d.device_id, d.state) for d in receipt.devices] == [
        (bob.devices[0].secrets.device_id, er.DeviceState.PENDING)
    ]


async def test_unopened_messages_expire(people: tuple[Person, Person]) -> None:
    alice, bob = people
    sealed = await alice.send(bob, "fetched, never opened")
    await bob.call("GET", f"/v1/messages/{sealed.message_id.hex()}")
    queued = await alice.send(bob, "never fetched")
    alice.relay.clock.advance(15 * 24 * 60 * MINUTE)  # beyond the 14-day default retention
    result = await alice.relay.services.retention.run_once()
    assert result.expired == 2
    assert states(await alice.report(sealed.message_id)) == ["expired"]
    assert states(await alice.report(queued.message_id)) == ["expired"]
    with pytest.raises(RelayRefused) as refused:
        await bob.call("POST", f"/v1/messages/{sealed.message_id.hex()}/open", {})
    assert (refused.value.status, refused.value.code) == (410, "message_expired")


async def test_complete_messages_keep_no_ciphertext(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "read and done")
    await bob.read(alice, header.message_id)
    report = await alice.report(header.message_id)
    assert report["state"] == "complete"
    view = await alice.relay.services.storage.get_message(header.message_id)
    assert view is not None
    assert view.message.envelope is None
    assert all(d.wrap is None for d in view.deliveries)
    answer = await alice.recall(header)  # still recallable inside the opened window
    assert states(answer["report"]) == ["pending"]


async def test_a_retried_send_is_stored_once(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header, sealed = alice.seal(bob, "once")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    first = await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    again = await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    assert first["created"] is True
    assert again["created"] is False
    assert [e["kind"] for e in await bob.sync()] == ["message"]
