"""Linking and revoking devices over real HTTP and WebSocket against the relay on loopback.

The link slot carries two sealed messages made with the core (the relay
reads neither); registration after a user's first device needs a current
device's approval; a revocation withdraws a device in one transaction, and
the revoked device -- which still holds the identity key -- can neither come
back, nor add, nor revoke devices.
"""

from __future__ import annotations

import os

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.auth import sign_login, sign_registration
from e2e_recall.device_admin import sign_device_revocation
from e2e_recall.link_code import link_keys, new_link_secret
from e2e_recall.linking import open_link_request, seal_link_request

from driver import MINUTE, Person, Relay, RelayRefused


async def _refused(call: object, status: int, code: str) -> RelayRefused:
    with pytest.raises(RelayRefused) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.body
    assert isinstance(caught.value.message, str)
    assert caught.value.message
    return caught.value


def _revocation(
    person: Person,
    device: int,
    at: Relay,
    identity: er.SigningKey | None = None,
    relay: bytes | None = None,
) -> bytes:
    return sign_device_revocation(
        identity or person.identity,
        device_id=person.devices[device].secrets.device_id,
        revoked_at=at.clock.now,
        relay=relay or at.relay_id,
    ).signed


async def _revoke(person: Person, device: int, by: int = 0, **over: object) -> dict[str, object]:
    """Post a revocation of ``device`` from device ``by`` (``over``: identity, relay)."""
    target = person.devices[device].secrets.device_id.hex()
    return await person.call(
        "POST",
        f"/v1/devices/{target}/revoke",
        {"revocation": _revocation(person, device, person.relay, **over)},  # type: ignore[arg-type]
        device=by,
    )


async def test_a_link_slot_from_open_to_one_answer(people: tuple[Person, Person]) -> None:
    alice, bob = people
    relay = alice.relay
    keys = link_keys(new_link_secret())
    path = f"/v1/links/{keys.link_id.hex()}"
    expires = relay.clock.now + 10 * MINUTE
    opened = await alice.call("POST", "/v1/links", {"link_id": keys.link_id, "expires_at": expires})
    assert opened == {"link_id": keys.link_id, "expires_at": expires}
    await _refused(
        alice.call("POST", "/v1/links", {"link_id": keys.link_id, "expires_at": expires}),
        409,
        "link_exists",
    )
    assert (await alice.call("GET", path))["request"] is None
    new = er.DeviceSecrets.generate()
    sealed = seal_link_request(
        link_id=keys.link_id,
        link_key=keys.link_key,
        device_id=new.device_id,
        signing_key=new.signing_key,
        wrap_key=new.wrap_key.public_key,
    )
    await alice.call("PUT", f"{path}/request", {"sealed": sealed}, token="")
    await _refused(
        alice.call("PUT", f"{path}/request", {"sealed": sealed}, token=""), 409, "link_used"
    )
    (event,) = [e for e in await alice.sync() if e["kind"] == "link"]
    assert event["message_id"] == keys.link_id
    stored = await alice.call("GET", path)
    request = open_link_request(stored["request"], link_id=keys.link_id, link_key=keys.link_key)
    assert request.device_id == new.device_id
    await _refused(bob.call("GET", path), 404, "not_found")  # not his slot
    await _refused(bob.call("PUT", f"{path}/answer", {"sealed": b"x" * 64}), 404, "not_found")
    waiting = await alice.call("GET", f"{path}/answer", token="")
    assert waiting["answer"] is None
    await alice.call("PUT", f"{path}/answer", {"sealed": b"sealed answer"})
    await _refused(alice.call("PUT", f"{path}/answer", {"sealed": b"again"}), 409, "link_used")
    taken = await alice.call("GET", f"{path}/answer", token="")
    assert taken["answer"] == b"sealed answer"
    await _refused(alice.call("GET", f"{path}/answer", token=""), 404, "not_found")
    await _refused(alice.call("GET", path), 404, "not_found")
    assert (await relay.services.storage.stats())["links"] == 0


async def test_guessed_expired_and_too_many_slots_are_refused(
    people: tuple[Person, Person],
) -> None:
    alice, _ = people
    relay = alice.relay
    guessed = os.urandom(16).hex()
    await _refused(
        alice.call("PUT", f"/v1/links/{guessed}/request", {"sealed": b"x" * 64}, token=""),
        404,
        "not_found",
    )
    await _refused(alice.call("GET", f"/v1/links/{guessed}/answer", token=""), 404, "not_found")
    later = relay.clock.now + 11 * 60 * MINUTE
    await _refused(
        alice.call("POST", "/v1/links", {"link_id": os.urandom(16), "expires_at": later}),
        400,
        "bad_expiry",
    )
    ids = [os.urandom(16) for _ in range(4)]
    soon = relay.clock.now + 10 * MINUTE
    for link_id in ids[:3]:
        await alice.call("POST", "/v1/links", {"link_id": link_id, "expires_at": soon})
    await _refused(
        alice.call("POST", "/v1/links", {"link_id": ids[3], "expires_at": soon}),
        429,
        "too_many_links",
    )
    relay.clock.advance(10 * MINUTE)
    await _refused(
        alice.call("PUT", f"/v1/links/{ids[0].hex()}/request", {"sealed": b"x" * 64}, token=""),
        404,
        "not_found",
    )
    await relay.services.retention.run_once()
    assert (await relay.services.storage.stats())["links"] == 0


async def test_a_later_device_needs_a_current_devices_approval(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    with pytest.raises(RelayRefused) as missing:
        await alice.add_device(approval=b"")
    assert missing.value.status == 403
    stranger = Person("stranger", alice.relay, alice.http, identity=alice.identity)
    await _refused(stranger.add_device(), 403, "approval_required")  # knows only the key
    other = er.DeviceSecrets.generate()
    wrong = alice.approval(b"another certificate")  # signed for another certificate
    await _refused(alice.add_device(approval=wrong), 403, "bad_approval")
    del other
    bobs = bob.approval(b"x")  # Bob's device approving Alice's new device
    await _refused(alice.add_device(approval=bobs), 403, "bad_approval")
    await alice.add_device()  # approved by her first device
    assert len(await alice.lookup(alice)) == 2


async def test_revoking_a_device_withdraws_it_everywhere_at_once(
    relay: Relay, people: tuple[Person, Person]
) -> None:
    alice, bob = people
    phone = await alice.add_device()
    phone_id = phone.secrets.device_id
    header = await bob.send(alice, "for every device of Alice")
    async with alice.websocket(1) as ws:
        before = await relay.services.storage.stats()
        answer = await _revoke(alice, 1)
        assert answer["already_revoked"] is False
        assert answer["wraps_destroyed"] == 1
        kinds = []
        for _ in range(10):  # what was queued before the revocation, then the close
            frame = await ws.receive(timeout=10)
            kinds.append(frame.type)
            if frame.type is not aiohttp.WSMsgType.BINARY:
                break
        assert kinds[-1] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert (frame.data, frame.extra) == (1008, "device revoked")
    assert (await relay.services.storage.stats())["sessions"] < before["sessions"]
    held = await relay.sql(
        "SELECT count(*) FROM deliveries WHERE device_id = ? AND wrap IS NOT NULL", phone_id
    )
    queued = await relay.sql("SELECT count(*) FROM events WHERE device_id = ?", phone_id)
    assert (held, queued) == ([(0,)], [(0,)])
    report = await bob.report(header.message_id)
    lines = {d["device_id"]: d["state"] for d in report["devices"]}
    assert lines[phone_id] == "never_delivered"
    # The phone's session ended; logging in again is refused.
    await _refused(alice.call("GET", "/v1/sync", device=1), 401, "bad_token")
    told = await _refused(alice.login(1), 401, "device_revoked")  # it proved its key
    assert told.body["facts"] == {"revoked_at": relay.clock.now}
    challenge = (await alice.call("POST", "/v1/challenge", token=""))["challenge"]
    forged = er.SigningKey.generate()  # someone who knows only the revoked device's id
    guess = {
        "device_id": phone_id,
        "challenge": challenge,
        "signature": sign_login(
            forged, relay=relay.relay_id, device_id=phone_id, challenge=challenge
        ),
    }
    await _refused(alice.call("POST", "/v1/login", guess, token=""), 401, "login_failed")
    # The directory no longer lists it, and a wrap to it is refused.
    assert [c.device_id for c in await bob.lookup(alice)] == [alice.devices[0].secrets.device_id]
    header2, sealed = bob.seal(alice, "after the revocation")
    wraps = bob.wraps_to(alice, header2, sealed.message_key)
    await _refused(
        bob.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        ),
        400,
        "unknown_device",
    )
    # Alice's other device was told; the listing shows when.
    events = [e for e in await alice.sync() if e["kind"] == "device"]
    assert events[-1]["message_id"] == phone_id
    listed = (await alice.call("GET", "/v1/devices"))["devices"]
    assert {d["device_id"]: d["revoked_at"] is not None for d in listed} == {
        alice.devices[0].secrets.device_id: False,
        phone_id: True,
    }
    # Revoking again is a no-op that says so.
    again = await _revoke(alice, 1)
    assert again["already_revoked"] is True


async def test_a_revoked_device_cannot_come_back_add_or_revoke(
    relay: Relay, people: tuple[Person, Person]
) -> None:
    alice, _ = people
    phone = await alice.add_device()
    await _revoke(alice, 1)
    # With the identity key it still holds, it signs a revocation of the owner's device:
    # it has no session to post it with.
    stolen = sign_device_revocation(
        alice.identity,
        device_id=alice.devices[0].secrets.device_id,
        revoked_at=relay.clock.now,
        relay=relay.relay_id,
    ).signed
    path = f"/v1/devices/{alice.devices[0].secrets.device_id.hex()}/revoke"
    await _refused(
        alice.call("POST", path, {"revocation": stolen}, token=phone.token), 401, "bad_token"
    )
    # Nor can it approve a new device, nor register its own id again.
    await _refused(alice.add_device(approval=alice.approval(b"x", by=1)), 403, "bad_approval")
    thief = Person("thief", relay, alice.http, identity=alice.identity, devices=[phone])
    del alice.devices[1]
    await _refused(thief.add_device(), 403, "bad_approval")
    alice.devices.append(phone)
    cert = phone.certificate
    challenge = (await alice.call("POST", "/v1/challenge", token=""))["challenge"]
    id_sig, dev_sig = sign_registration(
        alice.identity,
        phone.secrets.signing_key,
        relay=relay.relay_id,
        challenge=challenge,
        certificate=cert,
    )
    body = {
        "identity_key": alice.identity.public_key.raw,
        "certificate": cert,
        "challenge": challenge,
        "identity_signature": id_sig,
        "device_signature": dev_sig,
        "handle": None,
        "approval": alice.approval(cert),
    }
    await _refused(alice.call("POST", "/v1/register", body, token=""), 403, "device_revoked")
    # The owner's device is untouched.
    assert (await alice.call("GET", "/v1/devices"))["this_device"] == alice.devices[
        0
    ].secrets.device_id


async def test_revocations_that_do_not_fit_are_refused(people: tuple[Person, Person]) -> None:
    alice, bob = people
    await alice.add_device()
    relay = alice.relay
    await _refused(_revoke(alice, 1, relay=bob.user_id), 400, "wrong_context")
    await _refused(_revoke(alice, 1, identity=bob.identity), 403, "bad_signature")
    await _refused(_revoke(alice, 0, by=0), 400, "revoke_self")
    bob_device = bob.devices[0].secrets.device_id.hex()
    forged = _revocation(alice, 1, relay)
    await _refused(
        alice.call("POST", f"/v1/devices/{bob_device}/revoke", {"revocation": forged}),
        400,
        "other_device",
    )
    relay.clock.advance(-10 * MINUTE)
    await _refused(
        alice.call(
            "POST",
            f"/v1/devices/{alice.devices[1].secrets.device_id.hex()}/revoke",
            {
                "revocation": sign_device_revocation(
                    alice.identity,
                    device_id=alice.devices[1].secrets.device_id,
                    revoked_at=relay.clock.now + 10 * MINUTE,
                    relay=relay.relay_id,
                ).signed
            },
        ),
        400,
        "clock_skew",
    )
    assert all(d["revoked_at"] is None for d in (await alice.call("GET", "/v1/devices"))["devices"])
    assert wire.decode(wire.encode({"ok": True})) == {"ok": True}
