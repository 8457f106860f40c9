"""Wrapping-key rotation at the relay, over real HTTP with the relay's clock driven by the test.

A device uploads a rotated certificate for itself; the directory serves it;
a wrap names its key and is accepted only while that key accepts wraps;
notices, fetches, opens and the key status tell the device which key each
wrap is made to.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import e2e_recall as er

from driver import Device, Person, RelayRefused
from rotation_cases import DAY, LIFETIME, bad_rotations, issue


async def _upload(person: Person, certificate: bytes, device: int = 0) -> dict[str, Any]:
    return await person.call(
        "POST", "/v1/devices/self/certificate", {"certificate": certificate}, device=device
    )


async def rotate(
    person: Person, device: int = 0, suite: er.WrapSuite = er.WrapSuite.X25519
) -> er.WrapPrivateKey:
    """Rotate the device's key; return the private key it replaced."""
    dev = person.devices[device]
    old, new = dev.secrets.wrap_key, er.WrapPrivateKey.generate(suite)
    certificate = issue(person, dev, new)
    answer = await _upload(person, certificate, device)
    assert answer["created"] is True
    assert answer["key_id"] == new.public_key.key_id
    dev.secrets = replace(dev.secrets, wrap_key=new)
    dev.certificate = certificate
    return old


def _wrap(header: er.Header, key: bytes, device: Device, public: er.WrapPublicKey) -> dict:
    return {
        "device_id": device.secrets.device_id,
        "wrap": er.wrap_message_key(
            key,
            public,
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            device_id=device.secrets.device_id,
        ),
        "key_id": public.key_id,
    }


async def _send(alice: Person, bob: Person, text: str, public: er.WrapPublicKey) -> er.Header:
    header, sealed = alice.seal(bob, text)
    wraps = [_wrap(header, sealed.message_key, bob.devices[0], public)]
    await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    return header


async def _open(bob: Person, alice: Person, header: er.Header, private: er.WrapPrivateKey) -> str:
    path = f"/v1/messages/{header.message_id.hex()}"
    fetched = await bob.call("GET", path)
    assert fetched["key_id"] == private.public_key.key_id  # what the fetch names opens it
    verified = er.open_envelope(fetched["envelope"], alice.identity.public_key)
    answer = await bob.call("POST", path + "/open", {})
    assert answer["key_id"] == private.public_key.key_id
    key = er.unwrap_message_key(
        answer["wrap"],
        private,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        device_id=bob.devices[0].secrets.device_id,
    )
    return verified.decrypt(key).text


def _refused(exc: pytest.ExceptionInfo[RelayRefused]) -> tuple[int, str | None]:
    return exc.value.status, exc.value.code


@pytest.fixture
async def pair(relay: Any, http: Any) -> tuple[Person, Person]:
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device(handle="alice", lifetime=LIFETIME)
    await bob.add_device(handle="bob", lifetime=LIFETIME)
    return alice, bob


async def test_a_rotated_certificate_is_served_by_the_directory(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    before = (await alice.lookup(bob))[0]
    bob.relay.clock.advance(7 * DAY)
    old = await rotate(bob)
    (after,) = await alice.lookup(bob)
    assert after.wrap_key.key_id == bob.devices[0].secrets.wrap_key.public_key.key_id
    assert after.wrap_key.key_id != old.public_key.key_id == before.wrap_key.key_id
    assert after.expires_at == bob.relay.clock.now + LIFETIME
    again = await _upload(bob, bob.devices[0].certificate)  # the same bytes: a retry
    assert again["created"] is False
    assert again["key_id"] == after.wrap_key.key_id


async def test_a_wrap_to_the_old_key_is_accepted_until_it_expires(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    clock = bob.relay.clock
    stale = (await alice.lookup(bob))[0].wrap_key  # a sender's directory from before
    clock.advance(7 * DAY)
    old = await rotate(bob)
    early = await _send(alice, bob, "to the old key, still valid", stale)
    clock.advance(7 * DAY - 1)  # the old certificate's last millisecond
    last = await _send(alice, bob, "at the edge", stale)
    clock.advance(1)
    with pytest.raises(RelayRefused) as refused:
        await _send(alice, bob, "too late", stale)
    assert _refused(refused) == (409, "stale_key")
    assert "refresh the directory" in (refused.value.message or "")
    fresh = (await alice.lookup(bob))[0].wrap_key
    late = await _send(alice, bob, "to the new key", fresh)
    new = bob.devices[0].secrets.wrap_key
    assert await _open(bob, alice, early, old) == "to the old key, still valid"
    assert await _open(bob, alice, last, old) == "at the edge"
    assert await _open(bob, alice, late, new) == "to the new key"


async def test_wraps_to_unknown_or_expired_keys_and_of_the_wrong_length_are_refused(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    header, sealed = alice.seal(bob, "nowhere")
    stranger = er.WrapPrivateKey.generate(er.WrapSuite.X25519).public_key
    wraps = [_wrap(header, sealed.message_key, bob.devices[0], stranger)]
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert _refused(refused) == (409, "stale_key")
    current = bob.devices[0].secrets.wrap_key.public_key
    wraps = [{**_wrap(header, sealed.message_key, bob.devices[0], current), "key_id": b"k"}]
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert _refused(refused)[0] == 400
    bob.relay.clock.advance(LIFETIME)  # Bob's only certificate expires, unrotated
    with pytest.raises(RelayRefused) as refused:
        await _send(alice, bob, "to an expired key", current)
    assert _refused(refused) == (409, "stale_key")
    await rotate(bob, suite=er.WrapSuite.XWING)
    pq = bob.devices[0].secrets.wrap_key.public_key
    header, sealed = alice.seal(bob, "short")
    wrap = {**_wrap(header, sealed.message_key, bob.devices[0], current), "key_id": pq.key_id}
    with pytest.raises(RelayRefused) as refused:
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": [wrap], "blobs": []}
        )
    assert _refused(refused) == (400, "bad_wrap")
    assert await bob.sync() == []  # nothing of the refused sends reached Bob


async def test_bad_rotations_are_refused_and_change_nothing(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    clock = bob.relay.clock
    clock.advance(DAY)
    dev = bob.devices[0]
    new = er.WrapPrivateKey.generate(er.WrapSuite.X25519)
    cases = bad_rotations(alice, bob)
    for certificate, status, code in cases:
        with pytest.raises(RelayRefused) as refused:
            await _upload(bob, certificate)
        assert _refused(refused) == (status, code), code
    with pytest.raises(RelayRefused) as refused:
        await bob.call("POST", "/v1/devices/self/certificate", {"cert": b""})
    assert _refused(refused)[0] == 400
    with pytest.raises(RelayRefused) as refused:
        await bob.call(
            "POST", "/v1/devices/self/certificate", {"certificate": dev.certificate}, token=""
        )
    assert _refused(refused)[0] == 401
    (served,) = await alice.lookup(bob)
    assert served.signed == dev.certificate
    # Alice cannot rotate Bob's device with her session: the device is the session's.
    with pytest.raises(RelayRefused) as refused:
        await _upload(alice, issue(bob, dev, new))
    assert _refused(refused)[0] in (400, 403)


async def test_notices_fetches_opens_and_key_status_name_the_key(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    clock = bob.relay.clock
    old_public = bob.devices[0].secrets.wrap_key.public_key
    first = await _send(alice, bob, "one", old_public)
    second = await _send(alice, bob, "two", old_public)
    clock.advance(7 * DAY)
    old = await rotate(bob)
    new_public = bob.devices[0].secrets.wrap_key.public_key
    third = await _send(alice, bob, "three", new_public)
    notices = {e["message_id"]: e["payload"]["key_id"] for e in await bob.sync()}
    assert notices == {
        first.message_id: old_public.key_id,
        second.message_id: old_public.key_id,
        third.message_id: new_public.key_id,
    }
    status = await bob.call("GET", "/v1/devices/self/keys")
    keys = {k["key_id"]: (k["current"], k["pending"]) for k in status["keys"]}
    assert keys == {new_public.key_id: (True, 1), old_public.key_id: (False, 2)}
    assert await _open(bob, alice, first, old) == "one"
    assert await _open(bob, alice, second, old) == "two"
    status = await bob.call("GET", "/v1/devices/self/keys")
    pending = {p["key_id"]: p["count"] for p in status["pending"]}
    assert pending == {new_public.key_id: 1}  # nothing is wrapped to the old key any more
    clock.advance(7 * DAY)  # the old key's certificate expires: it is no longer listed
    status = await bob.call("GET", "/v1/devices/self/keys")
    assert [k["key_id"] for k in status["keys"]] == [new_public.key_id]
