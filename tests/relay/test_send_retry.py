"""A retried send (the very same bytes) whose first attempt was stored is answered as stored.

A client that got no answer to a send (the relay was killed after the
commit, the connection dropped) sends the same bytes again.  Between the two
attempts the recipient may have rotated its key past the old one's time, or
linked a device, or a device of theirs may have been revoked: checks that
the first attempt passed would now refuse it.  The relay must still answer
that the message is stored (``200``, ``created: false``) rather than refuse
it, or the client shows a send as failed that every recipient device has.
The same holds for a recall with a replacement: a retry of one that was
applied is answered ``already_recalled``, whatever the replacement's wraps
say now.  Found while writing the crash suite's rotation and linking
workers (tests/support/crash_rotation.py, crash_linking.py), whose
reckoning now checks that a refused send left nothing behind and a refused
recall was not applied.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_devices import _revoke
from test_wrap_keys import LIFETIME, _wrap, rotate

from driver import MINUTE, Person, RelayRefused

DAY = 24 * 60 * MINUTE


def _body(alice: Person, bob: Person, text: str) -> tuple[Any, dict[str, Any]]:
    header, sealed = alice.seal(bob, text)
    wraps = alice.wraps_to(bob, header, sealed.message_key)
    return header, {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}


@pytest.fixture
async def pair(relay: Any, http: Any) -> tuple[Person, Person]:
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device(handle="alice", lifetime=LIFETIME)
    await bob.add_device(handle="bob", lifetime=LIFETIME)
    return alice, bob


async def test_a_retry_after_the_wrapped_key_went_stale_is_answered_as_stored(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    _, body = _body(alice, bob, "sent once")
    first = await alice.call("POST", "/v1/messages", body)
    assert first["created"] is True
    bob.relay.clock.advance(7 * DAY)
    await rotate(bob)
    bob.relay.clock.advance(7 * DAY)  # the key the send wrapped to no longer accepts wraps
    again = await alice.call("POST", "/v1/messages", body)
    assert again == {**first, "created": False}
    # a new message wrapped to that key is still refused, as the rule says
    other, sealed = alice.seal(bob, "a new one")
    stale = body["wraps"][0]["key_id"]
    current = bob.devices[0].secrets.wrap_key.public_key
    wrap = {**_wrap(other, sealed.message_key, bob.devices[0], current), "key_id": stale}
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": [wrap], "blobs": []}
        )
    assert (refused.value.status, refused.value.code) == (409, "stale_key")


async def test_a_retry_after_the_recipient_linked_a_device_is_answered_as_stored(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    header, body = _body(alice, bob, "before the new phone")
    first = await alice.call("POST", "/v1/messages", body)
    await bob.add_device()
    again = await alice.call("POST", "/v1/messages", body)
    assert again == {**first, "created": False}
    assert [line["state"] for line in (await alice.report(header.message_id))["devices"]] == [
        "queued"
    ]
    # a new send that leaves the new device out is refused
    _, late = _body(alice, bob, "after it")
    late["wraps"] = late["wraps"][:1]
    with pytest.raises(RelayRefused) as refused:
        await alice.call("POST", "/v1/messages", late)
    assert (refused.value.status, refused.value.code) == (409, "missing_devices")


async def test_a_retry_after_a_recipient_device_was_revoked_is_answered_as_stored(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    await bob.add_device()
    _, body = _body(alice, bob, "to both of Bob's devices")
    first = await alice.call("POST", "/v1/messages", body)
    await _revoke(bob, 1)
    again = await alice.call("POST", "/v1/messages", body)
    assert again == {**first, "created": False}


async def test_a_changed_send_under_a_stored_id_is_still_refused(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    header, body = _body(alice, bob, "the original")
    await alice.call("POST", "/v1/messages", body)
    await bob.add_device()  # the retry below would also fail the device check
    _, forged = alice.seal(bob, "another text under the same id", message_id=header.message_id)
    changed = {**body, "envelope": forged.envelope}
    with pytest.raises(RelayRefused) as refused:
        await alice.call("POST", "/v1/messages", changed)
    assert (refused.value.status, refused.value.code) == (409, "missing_devices")


async def _recall_body(alice: Person, bob: Person, header: Any) -> dict[str, Any]:
    """A recall of ``header`` with a replacement wrapped to Bob's devices as they are now."""
    replacement, sealed = alice.seal(bob, "the corrected text", replaces=header.message_id)
    wraps = alice.wraps_to(bob, replacement, sealed.message_key)
    revocation = alice.revocation(header, replacement.message_id)
    return {
        "revocation": revocation.signed,
        "replacement": {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
    }


async def test_a_retried_recall_with_a_replacement_is_answered_after_the_recipient_changed(
    pair: tuple[Person, Person],
) -> None:
    """The same holds for a recall and replace: the retry finds the recall applied."""
    alice, bob = pair
    header, body = _body(alice, bob, "sent with a typo")
    await alice.call("POST", "/v1/messages", body)
    recall = await _recall_body(alice, bob, header)
    path = f"/v1/messages/{header.message_id.hex()}/recall"
    first = await alice.call("POST", path, recall)
    bob.relay.clock.advance(7 * DAY)
    await rotate(bob)
    bob.relay.clock.advance(7 * DAY)  # the replacement's wrap now names a key past its time
    await bob.add_device()  # and Bob has a device it is not wrapped to
    again = await alice.call("POST", path, recall)
    assert again["report"]["state"] == first["report"]["state"] == "recalled"
    # a first recall whose replacement is wrapped to a stale key is still refused
    other, late = _body(alice, bob, "another one")
    await alice.call("POST", "/v1/messages", late)
    stale = await _recall_body(alice, bob, other)
    stale["replacement"]["wraps"][0]["key_id"] = body["wraps"][0]["key_id"]
    with pytest.raises(RelayRefused) as refused:
        await alice.call("POST", f"/v1/messages/{other.message_id.hex()}/recall", stale)
    assert (refused.value.status, refused.value.code) == (409, "stale_key")
    assert (await alice.report(other.message_id))["state"] != "recalled"
