"""Authorization and token theft, against a real relay.

Who may do what with which token, what a stranger learns about messages that
are not theirs (nothing: the same 404 as for an id that does not exist), how
challenges, logins and registrations resist replay and impersonation, what
the directory serves, who may sign a deletion receipt, and that the database
holds only hashes of session tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.auth import sign_login, sign_registration
from e2e_recall.identity import fingerprint

from driver import MINUTE, MSGPACK, Person, Relay, RelayRefused, states


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def code(self) -> Any:
        return self.body.get("error") if isinstance(self.body, dict) else None


async def ask(
    person: Person,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    authorization: str | None = None,
) -> Answer:
    """A request with exactly this Authorization header (or none); never raises on 4xx."""
    headers = {} if authorization is None else {"Authorization": authorization}
    data = None
    if body is not None:
        headers["Content-Type"] = MSGPACK
        data = wire.encode(body)
    async with person.http.request(
        method, person.relay.url + path, data=data, headers=headers
    ) as response:
        raw = await response.read()
        status, content_type = response.status, response.content_type
    value: Any = raw
    with contextlib.suppress(er.DecodeError):
        value = wire.decode(raw, limits=wire.Limits(max_size=1 << 22, max_bin=1 << 21))
    assert content_type == MSGPACK or status < 400, f"{method} {path}: {status} {raw[:200]!r}"
    return Answer(status, value)


def bearer(person: Person, device: int = 0) -> str:
    return f"Bearer {person.devices[device].token}"


def assert_refusal(answer: Answer, status: int, code: str | tuple[str, ...] | None = None) -> None:
    assert answer.status == status, answer
    assert isinstance(answer.body, dict), answer
    error, message = answer.body.get("error"), answer.body.get("message")
    assert isinstance(error, str), answer
    assert error, answer
    assert isinstance(message, str), answer
    assert message.strip(), answer
    if isinstance(code, tuple):
        assert answer.code in code, answer
    elif code is not None:
        assert answer.code == code, answer


async def stats(relay: Relay) -> dict[str, int]:
    return await relay.services.storage.stats()


def flip_bit(token: str, bit: int = 0) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.fixture
async def trio(people: tuple[Person, Person]) -> tuple[Person, Person, Person]:
    alice, bob = people
    carol = Person("carol", alice.relay, alice.http)
    await carol.add_device(handle="carol")
    return alice, bob, carol


async def _send_body(alice: Person, bob: Person) -> dict[str, Any]:
    header, sealed = alice.seal(bob, "a message that is not Carol's")
    return {
        "envelope": sealed.envelope,
        "wraps": await alice.wraps_for(bob, header, sealed.message_key),
        "blobs": [],
    }


def _receipt(person: Person, header: er.Header, device: int = 0) -> bytes:
    secrets = person.devices[device].secrets
    return er.sign_deletion_receipt(
        secrets.signing_key,
        user=person.user_id,
        device_id=secrets.device_id,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        deleted_at=person.relay.clock.now,
        opened_at=None,
        cause=er.DeletionCause.EXPIRY,
    ).signed


async def _authenticated_routes(
    alice: Person, bob: Person, header: er.Header
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that needs a session, each with a body that a real owner could send."""
    hexid = header.message_id.hex()
    return [
        ("POST", "/v1/logout", None),
        ("GET", f"/v1/users/{alice.user_id.hex()}", None),
        ("GET", "/v1/handles/alice", None),
        ("POST", "/v1/messages", await _send_body(alice, bob)),
        ("GET", f"/v1/messages/{hexid}", None),
        ("POST", f"/v1/messages/{hexid}/open", {}),
        ("POST", f"/v1/messages/{hexid}/receipt", {"receipt": _receipt(bob, header)}),
        (
            "POST",
            f"/v1/messages/{hexid}/recall",
            {"revocation": alice.revocation(header).signed, "replacement": None},
        ),
        ("GET", f"/v1/messages/{hexid}/report", None),
        ("GET", "/v1/sync", None),
        ("POST", "/v1/sync/ack", {"seq": 2**62}),
        ("GET", "/v1/ws", None),
    ]


BAD_AUTHORIZATIONS = {
    "missing": (lambda t: None, "no_token"),
    "empty": (lambda t: "", "no_token"),
    "basic_scheme": (lambda t: f"Basic {t}", "no_token"),
    "scheme_only": (lambda t: "Bearer", "no_token"),
    "empty_token": (lambda t: "Bearer ", ("no_token", "bad_token")),  # HTTP trims the space
    "one_char_short": (lambda t: f"Bearer {t[:-1]}", "bad_token"),
    "one_char_long": (lambda t: f"Bearer {t}A", "bad_token"),
    "padded": (lambda t: f"Bearer {t}=", "bad_token"),
    "outside_the_alphabet": (lambda t: f"Bearer {t[:-1]}+", "bad_token"),
    "two_tokens": (lambda t: f"Bearer {t} {t}", "bad_token"),
    "first_bit_flipped": (lambda t: f"Bearer {flip_bit(t, 0)}", "bad_token"),
    "last_bit_flipped": (lambda t: f"Bearer {flip_bit(t, 255)}", "bad_token"),
    "random_token": (
        lambda t: f"Bearer {base64.urlsafe_b64encode(os.urandom(32)).rstrip(b'=').decode()}",
        "bad_token",
    ),
    "stored_hash_as_token": (  # what a stolen copy of the database holds
        lambda t: (
            "Bearer "
            + base64.urlsafe_b64encode(hashlib.sha256(base64.urlsafe_b64decode(t + "=")).digest())
            .rstrip(b"=")
            .decode()
        ),
        "bad_token",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_AUTHORIZATIONS))
async def test_every_authenticated_route_refuses_a_bad_token(
    people: tuple[Person, Person], kind: str
) -> None:
    alice, bob = people
    header = await alice.send(bob, "guarded")
    before = await stats(alice.relay)
    make, code = BAD_AUTHORIZATIONS[kind]
    for method, path, body in await _authenticated_routes(alice, bob, header):
        for token in (alice.devices[0].token, bob.devices[0].token):
            answer = await ask(alice, method, path, body, authorization=make(token))
            assert_refusal(answer, 401, code)
    assert await stats(alice.relay) == before
    assert states(await alice.report(header.message_id)) == ["queued"]  # nothing was fetched
    await bob.read(alice, header.message_id)  # the real tokens still work


async def test_a_websocket_needs_a_valid_token(people: tuple[Person, Person]) -> None:
    alice, bob = people
    url = alice.relay.url.replace("http", "ws", 1) + "/v1/ws"
    token = bob.devices[0].token or ""
    for headers in ({}, {"Authorization": f"Bearer {flip_bit(token, 77)}"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await bob.http.ws_connect(url, headers=headers)
        assert refused.value.status == 401
    assert alice.relay.services.hub.count == 0
    async with bob.websocket() as ws:  # the real token is accepted
        message = await asyncio.wait_for(ws.receive(), timeout=10)
        assert wire.decode(message.data)["type"] == "caught_up"


async def test_a_logged_out_token_is_dead_everywhere(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "after logout")
    first = await bob.login()
    second = await bob.login()  # a second session of the same device
    await bob.call("POST", "/v1/logout", token=first)
    for method, path, body in await _authenticated_routes(alice, bob, header):
        assert_refusal(
            await ask(bob, method, path, body, authorization=f"Bearer {first}"), 401, "bad_token"
        )
    assert_refusal(
        await ask(bob, "POST", "/v1/logout", authorization=f"Bearer {first}"), 401, "bad_token"
    )
    # the other session is untouched, and logging in again works
    bob.devices[0].token = second
    assert await bob.read(alice, header.message_id) == "after logout"
    await bob.login()
    await bob.call("GET", f"/v1/users/{alice.user_id.hex()}")


async def test_logging_out_ends_the_websockets_of_that_token(
    people: tuple[Person, Person],
) -> None:
    """A thief's websocket, opened with the stolen token, dies with the token at logout."""
    alice, bob = people
    stolen = bob.devices[0].token
    leaked = None
    async with bob.websocket() as ws:  # opened with the token that is about to be logged out
        first = await asyncio.wait_for(ws.receive(), timeout=10)
        assert wire.decode(first.data)["type"] == "caught_up"
        await bob.call("POST", "/v1/logout", token=stolen)
        await bob.login()  # the owner carries on with a new session
        header = await alice.send(bob, "not for the thief")
        message = await asyncio.wait_for(ws.receive(), timeout=10)
        if message.type is aiohttp.WSMsgType.BINARY:
            leaked = wire.decode(message.data)
            # ...and try to delete it before the owner's device sees it
            await ws.send_bytes(wire.encode({"type": "ack", "seq": leaked["seq"]}))
            await ws.send_str("barrier")  # frames are handled in order: the close follows the ack
            while message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                message = await asyncio.wait_for(ws.receive(), timeout=10)
    notices = await bob.sync()
    assert [(e["kind"], e["message_id"]) for e in notices] == [("message", header.message_id)]
    assert leaked is None, f"the logged-out token's websocket still received {leaked}"


async def test_a_token_expires_after_the_session_ttl(people: tuple[Person, Person]) -> None:
    alice, bob = people
    relay = alice.relay
    header = await alice.send(bob, "before expiry")
    token = await bob.login()
    routes = await _authenticated_routes(alice, bob, header)
    ttl = relay.services.config.session_ttl
    expires_at = relay.clock.now + ttl
    relay.clock.advance(ttl - 1)  # the last millisecond of the session
    await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    relay.clock.advance(1)
    before = await stats(relay)
    assert relay.clock.now == expires_at
    for method, path, body in routes:
        answer = await ask(bob, method, path, body, authorization=f"Bearer {token}")
        assert_refusal(answer, 401, "expired_token")
        assert "log in again" in answer.body["message"]
    assert await stats(relay) == before
    await bob.login()
    await alice.login()
    assert states(await alice.report(header.message_id)) == ["sealed"]


# --------------------------------------------------------------------------------------------
# Another user's token: a message that is not yours does not exist


def _ghost(header: er.Header) -> er.Header:
    return dataclasses.replace(header, message_id=os.urandom(16))


async def _as_carol(carol: Person, action: str, header: er.Header, alice: Person) -> Answer:
    hexid = header.message_id.hex()
    if action == "fetch":
        return await ask(carol, "GET", f"/v1/messages/{hexid}", authorization=bearer(carol))
    if action == "open":
        return await ask(
            carol, "POST", f"/v1/messages/{hexid}/open", {}, authorization=bearer(carol)
        )
    if action == "report":
        return await ask(carol, "GET", f"/v1/messages/{hexid}/report", authorization=bearer(carol))
    if action == "receipt":
        body = {"receipt": _receipt(carol, header)}
        return await ask(
            carol, "POST", f"/v1/messages/{hexid}/receipt", body, authorization=bearer(carol)
        )
    if action == "recall":  # Carol signs a revocation of her own for it
        revocation = carol.revocation(header).signed
        body = {"revocation": revocation, "replacement": None}
        return await ask(
            carol, "POST", f"/v1/messages/{hexid}/recall", body, authorization=bearer(carol)
        )
    assert action == "recall_with_alices_signature"  # a leaked revocation, presented by Carol
    body = {"revocation": alice.revocation(header).signed, "replacement": None}
    return await ask(
        carol, "POST", f"/v1/messages/{hexid}/recall", body, authorization=bearer(carol)
    )


@pytest.mark.parametrize(
    "action", ["fetch", "open", "receipt", "recall", "recall_with_alices_signature", "report"]
)
async def test_another_users_token_learns_nothing_about_a_message(
    trio: tuple[Person, Person, Person], action: str
) -> None:
    alice, bob, carol = trio
    header = await alice.send(bob, "between Alice and Bob")
    before = await stats(alice.relay)
    real = await _as_carol(carol, action, header, alice)
    ghost = await _as_carol(carol, action, _ghost(header), alice)
    assert real.status < 500
    assert ghost.status < 500
    assert (real.status, real.body) == (ghost.status, ghost.body)  # identical: no oracle
    assert_refusal(real, 404, "not_found")  # a stranger is told nothing, whatever they present
    assert await stats(alice.relay) == before
    assert states(await alice.report(header.message_id)) == ["queued"]
    assert await bob.read(alice, header.message_id) == "between Alice and Bob"


async def test_only_the_sender_sees_the_report(trio: tuple[Person, Person, Person]) -> None:
    alice, bob, _ = trio
    header = await alice.send(bob, "whose report")
    await bob.read(alice, header.message_id)
    real = await ask(
        bob, "GET", f"/v1/messages/{header.message_id.hex()}/report", authorization=bearer(bob)
    )
    ghost = await ask(
        bob,
        "GET",
        f"/v1/messages/{_ghost(header).message_id.hex()}/report",
        authorization=bearer(bob),
    )
    assert_refusal(real, 404, "not_found")
    assert real.body == ghost.body
    assert states(await alice.report(header.message_id)) == ["opened"]


async def test_a_device_gets_only_messages_wrapped_to_it(
    trio: tuple[Person, Person, Person],
) -> None:
    alice, bob, _ = trio
    await alice.add_device()  # Alice's laptop: not wrapped to (a sender's own copy is optional)
    header = await alice.send(bob, "for Bob's phone")
    await bob.add_device()  # Bob's new laptop came after the message
    hexid = header.message_id.hex()
    ghost = _ghost(header).message_id.hex()
    devices = [(alice, 0), (alice, 1), (bob, 1)]  # the sending device, and two not addressed
    for person, device in devices:
        for method, suffix, body in (("GET", "", None), ("POST", "/open", {})):
            real = await ask(
                person,
                method,
                f"/v1/messages/{hexid}{suffix}",
                body,
                authorization=bearer(person, device),
            )
            fake = await ask(
                person,
                method,
                f"/v1/messages/{ghost}{suffix}",
                body,
                authorization=bearer(person, device),
            )
            assert_refusal(real, 404, "not_found")
            assert real.body == fake.body
    assert [e["kind"] for e in await bob.sync(device=1)] == []
    assert states(await alice.report(header.message_id)) == ["queued"]
    assert await bob.read(alice, header.message_id) == "for Bob's phone"


async def test_another_device_cannot_acknowledge_or_read_your_events(
    trio: tuple[Person, Person, Person],
) -> None:
    alice, bob, carol = trio
    header = await alice.send(bob, "a notice for Bob only")
    await carol.call("POST", "/v1/sync/ack", {"seq": 2**63 - 1})  # Carol acks everything she can
    assert await carol.sync() == []
    async with carol.websocket(cursor=0) as ws:
        frame = wire.decode((await asyncio.wait_for(ws.receive(), timeout=10)).data)
    assert frame == {"type": "caught_up", "seq": 0}
    notices = await bob.sync()
    assert [(e["kind"], e["message_id"]) for e in notices] == [("message", header.message_id)]


# --------------------------------------------------------------------------------------------
# Challenges and logins


async def _challenge(person: Person) -> bytes:
    return (await person.call("POST", "/v1/challenge", token=""))["challenge"]  # type: ignore[no-any-return]


def _login_body(
    signer: er.SigningKey, relay_id: bytes, device_id: bytes, challenge: bytes
) -> dict[str, bytes]:
    signature = sign_login(signer, relay=relay_id, device_id=device_id, challenge=challenge)
    return {"device_id": device_id, "challenge": challenge, "signature": signature}


async def test_a_challenge_is_good_for_one_login(people: tuple[Person, Person]) -> None:
    alice, _ = people
    relay = alice.relay
    device = alice.devices[0].secrets
    challenge = await _challenge(alice)
    body = _login_body(device.signing_key, relay.relay_id, device.device_id, challenge)
    first = await ask(alice, "POST", "/v1/login", body)
    assert first.status == 200
    sessions = (await stats(relay))["sessions"]
    replayed = await ask(alice, "POST", "/v1/login", body)  # the very same request again
    assert_refusal(replayed, 401, "bad_challenge")
    resigned = _login_body(device.signing_key, relay.relay_id, device.device_id, challenge)
    assert_refusal(await ask(alice, "POST", "/v1/login", resigned), 401, "bad_challenge")
    never_issued = _login_body(device.signing_key, relay.relay_id, device.device_id, os.urandom(32))
    assert_refusal(await ask(alice, "POST", "/v1/login", never_issued), 401, "bad_challenge")
    stale = await _challenge(alice)
    relay.clock.advance(5 * MINUTE + 1)  # a challenge lives five minutes
    late = _login_body(device.signing_key, relay.relay_id, device.device_id, stale)
    assert_refusal(await ask(alice, "POST", "/v1/login", late), 401, "bad_challenge")
    short = {**body, "challenge": challenge[:31]}
    assert_refusal(await ask(alice, "POST", "/v1/login", short), 400)
    assert (await stats(relay))["sessions"] == sessions
    token = first.body["token"]
    await alice.call("GET", f"/v1/users/{alice.user_id.hex()}", token=token)


async def test_a_registration_challenge_cannot_be_used_to_log_in(
    people: tuple[Person, Person],
) -> None:
    alice, _ = people
    relay = alice.relay
    secrets = er.DeviceSecrets.generate()
    certificate = er.issue_device_certificate(
        alice.identity,
        secrets.device_id,
        secrets.signing_key.public_key,
        secrets.wrap_key.public_key,
        created_at=relay.clock.now,
    ).signed
    challenge = await _challenge(alice)
    id_sig, dev_sig = sign_registration(
        alice.identity,
        secrets.signing_key,
        relay=relay.relay_id,
        challenge=challenge,
        certificate=certificate,
    )
    registration = {
        "identity_key": alice.identity.public_key.raw,
        "certificate": certificate,
        "challenge": challenge,
        "identity_signature": id_sig,
        "device_signature": dev_sig,
        "handle": None,
        "approval": alice.approval(certificate),
    }
    assert (await ask(alice, "POST", "/v1/register", registration)).status == 201
    login = _login_body(secrets.signing_key, relay.relay_id, secrets.device_id, challenge)
    assert_refusal(await ask(alice, "POST", "/v1/login", login), 401, "bad_challenge")


async def test_a_login_signed_by_another_device_fails(trio: tuple[Person, Person, Person]) -> None:
    alice, bob, carol = trio
    relay = alice.relay
    await alice.add_device()
    target = alice.devices[0].secrets.device_id
    sessions = (await stats(relay))["sessions"]
    forgers = {
        "bob's device": bob.devices[0].secrets.signing_key,
        "carol's device": carol.devices[0].secrets.signing_key,
        "alice's other device": alice.devices[1].secrets.signing_key,
        "alice's identity key": alice.identity,
    }
    answers = []
    for name, key in forgers.items():
        body = _login_body(key, relay.relay_id, target, await _challenge(alice))
        answer = await ask(alice, "POST", "/v1/login", body)
        assert_refusal(answer, 401, "login_failed")
        answers.append((name, answer.body))
    own = alice.devices[0].secrets.signing_key
    for_another_relay = _login_body(own, os.urandom(32), target, await _challenge(alice))
    answers.append(
        ("another relay", (await ask(alice, "POST", "/v1/login", for_another_relay)).body)
    )
    other_challenge = _login_body(own, relay.relay_id, target, os.urandom(32))
    other_challenge["challenge"] = await _challenge(alice)
    answers.append(
        ("another challenge", (await ask(alice, "POST", "/v1/login", other_challenge)).body)
    )
    unknown = _login_body(own, relay.relay_id, os.urandom(16), await _challenge(alice))
    answers.append(("unknown device", (await ask(alice, "POST", "/v1/login", unknown)).body))
    bodies = {wire.encode(body) for _, body in answers}
    assert len(bodies) == 1, answers  # one answer for every failure: no oracle
    assert answers[0][1]["error"] == "login_failed"
    assert (await stats(relay))["sessions"] == sessions
    await alice.login()  # the real device still logs in


# --------------------------------------------------------------------------------------------
# Registration: nobody can claim an identity, a certificate or a device that is not theirs


async def _directory(person: Person, of: Person) -> tuple[dict[str, Any], dict[str, Any]]:
    by_id = await person.call("GET", f"/v1/users/{of.user_id.hex()}")
    by_handle = (
        await person.call("GET", f"/v1/handles/{by_id['handle']}") if by_id["handle"] else by_id
    )
    return by_id, by_handle


def _registration(
    relay: Relay,
    identity_key: er.VerifyKey,
    certificate: bytes,
    challenge: bytes,
    identity_signer: er.SigningKey,
    device_signer: er.SigningKey,
    handle: str | None = None,
) -> dict[str, Any]:
    id_sig, dev_sig = sign_registration(
        identity_signer,
        device_signer,
        relay=relay.relay_id,
        challenge=challenge,
        certificate=certificate,
    )
    return {
        "identity_key": identity_key.raw,
        "certificate": certificate,
        "challenge": challenge,
        "identity_signature": id_sig,
        "device_signature": dev_sig,
        "handle": handle,
    }


def _certificate(
    identity: er.SigningKey, secrets: er.DeviceSecrets, now: int, device_id: bytes | None = None
) -> bytes:
    return er.issue_device_certificate(
        identity,
        device_id or secrets.device_id,
        secrets.signing_key.public_key,
        secrets.wrap_key.public_key,
        created_at=now,
    ).signed


async def test_a_registration_cannot_claim_someone_elses_identity_or_device(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    relay = alice.relay
    mallory = Person("mallory", relay, alice.http)
    mine = er.DeviceSecrets.generate()
    now = relay.clock.now
    directory = await _directory(bob, alice)
    before = await stats(relay)
    alice_cert = directory[0]["devices"][0]
    alice_key = alice.identity.public_key
    own_cert = _certificate(mallory.identity, mine, now)
    squatting = _certificate(mallory.identity, mine, now, alice.devices[0].secrets.device_id)
    mallory_key = mallory.identity.public_key
    attempts = [
        # Alice's identity key, with a certificate Mallory signed
        ("identity key, own certificate", alice_key, own_cert, None, 403, "bad_signature"),
        # Alice's identity key and Alice's real certificate, signed for by Mallory's keys
        ("identity key and certificate", alice_key, alice_cert, None, 403, "bad_signature"),
        # Mallory's identity key, with Alice's certificate
        ("certificate under own key", mallory_key, alice_cert, None, 403, "bad_signature"),
        # Mallory's own certificate, for Alice's device id
        ("device id", mallory_key, squatting, None, 409, "device_exists"),
        # Mallory's own identity, with Alice's handle
        ("handle", mallory_key, own_cert, "alice", 409, "handle_taken"),
    ]
    for name, identity_key, certificate, handle, status, code in attempts:
        body = _registration(
            relay,
            identity_key,
            certificate,
            await _challenge(mallory),
            mallory.identity,
            mine.signing_key,
            handle,
        )
        answer = await ask(mallory, "POST", "/v1/register", body)
        assert (answer.status, answer.code) == (status, code), (name, answer)
        assert_refusal(answer, status, code)
    assert await stats(relay) == before
    assert await _directory(bob, alice) == directory  # Alice's account is exactly as it was
    await alice.login()
    header = await bob.send(alice, "Alice still receives")
    assert await alice.read(bob, header.message_id) == "Alice still receives"
    await mallory.add_device(handle="mallory")  # an honest registration of her own works


async def test_a_captured_registration_cannot_be_replayed(people: tuple[Person, Person]) -> None:
    alice, _ = people
    relay = alice.relay
    laptop = er.DeviceSecrets.generate()
    certificate = _certificate(alice.identity, laptop, relay.clock.now)
    captured = _registration(
        relay,
        alice.identity.public_key,
        certificate,
        await _challenge(alice),
        alice.identity,
        laptop.signing_key,
    ) | {"approval": alice.approval(certificate)}
    assert (await ask(alice, "POST", "/v1/register", captured)).status == 201
    before = await stats(relay)
    assert_refusal(await ask(alice, "POST", "/v1/register", captured), 401, "bad_challenge")
    moved = {**captured, "challenge": await _challenge(alice)}  # old signatures, new challenge
    assert_refusal(await ask(alice, "POST", "/v1/register", moved), 403, "bad_signature")
    assert await stats(relay) == before


@pytest.mark.parametrize(
    "handle",
    [
        "",
        "ab",
        "Alice",
        "ALICE",
        "-alice",
        ".alice",
        "_alice",
        "al ice",
        "ålice",
        "a" * 33,
        "a/b",
        "a\x00b",
        "al\nice",
        "alice!",
    ],
)
async def test_invalid_handles_are_refused(people: tuple[Person, Person], handle: str) -> None:
    alice, _ = people
    relay = alice.relay
    carol = Person("carol", relay, alice.http)
    before = await stats(relay)
    with pytest.raises(RelayRefused) as refused:
        await carol.add_device(handle=handle)
    assert refused.value.status == 400
    assert refused.value.code in ("bad_handle", "bad_length")
    assert refused.value.message
    assert await stats(relay) == before
    await carol.add_device(handle="carol")  # the same person with a valid handle is welcome


async def test_a_taken_handle_is_refused_and_kept_by_its_owner(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    relay = alice.relay
    carol = Person("carol", relay, alice.http)
    before = await stats(relay)
    for taken in ("alice", "bob"):
        with pytest.raises(RelayRefused) as refused:
            await carol.add_device(handle=taken)
        assert (refused.value.status, refused.value.code) == (409, "handle_taken")
    assert await stats(relay) == before
    found = await bob.call("GET", "/v1/handles/alice")
    assert found["user_id"] == alice.user_id
    assert found["identity_key"] == alice.identity.public_key.raw
    with pytest.raises(RelayRefused) as changed:  # an existing user cannot switch handles
        await alice.add_device(handle="alicia")
    assert (changed.value.status, changed.value.code) == (409, "handle_mismatch")
    with pytest.raises(RelayRefused) as missing:
        await bob.call("GET", "/v1/handles/alicia")
    assert missing.value.status == 404
    await alice.add_device(handle="alice")  # the same handle again is fine
    await carol.add_device(handle="carol")


async def test_the_directory_serves_only_certificates_that_verify(
    trio: tuple[Person, Person, Person],
) -> None:
    alice, bob, carol = trio
    await alice.add_device()
    await alice.add_device(er.WrapSuite.XWING)
    by_id, by_handle = await _directory(bob, alice)
    assert by_id == by_handle
    identity = er.VerifyKey(by_id["identity_key"])
    assert fingerprint(identity) == by_id["user_id"] == alice.user_id
    assert by_id["handle"] == "alice"
    certs = [
        er.verify_device_certificate(c, identity, now=alice.relay.clock.now)
        for c in by_id["devices"]
    ]
    assert {c.user for c in certs} == {alice.user_id}
    assert {c.device_id for c in certs} == {d.secrets.device_id for d in alice.devices}
    for cert in by_id["devices"]:  # none of them verifies under another identity
        with pytest.raises(er.SignatureInvalid):
            er.verify_device_certificate(cert, carol.identity.public_key, now=alice.relay.clock.now)
    with pytest.raises(RelayRefused) as unknown:
        await bob.call("GET", f"/v1/users/{fingerprint(er.SigningKey.generate().public_key).hex()}")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")


async def test_the_directory_leaves_out_expired_certificates(
    people: tuple[Person, Person],
) -> None:
    """A certificate past its expires_at no longer verifies, so no sender can wrap to it."""
    alice, bob = people
    relay = alice.relay
    tablet = er.DeviceSecrets.generate()
    certificate = er.issue_device_certificate(
        alice.identity,
        tablet.device_id,
        tablet.signing_key.public_key,
        tablet.wrap_key.public_key,
        created_at=relay.clock.now,
        expires_at=relay.clock.now + 60 * MINUTE,
    ).signed
    body = _registration(
        relay,
        alice.identity.public_key,
        certificate,
        await _challenge(alice),
        alice.identity,
        tablet.signing_key,
    ) | {"approval": alice.approval(certificate)}
    assert (await ask(alice, "POST", "/v1/register", body)).status == 201
    relay.clock.advance(2 * 60 * MINUTE)
    for answer in await _directory(bob, alice):
        identity = er.VerifyKey(answer["identity_key"])
        for cert in answer["devices"]:
            er.verify_device_certificate(cert, identity, now=relay.clock.now)
    header = await bob.send(alice, "to every device that is still valid")
    assert await alice.read(bob, header.message_id) == "to every device that is still valid"


# --------------------------------------------------------------------------------------------
# Deletion receipts


async def test_a_deletion_receipt_must_be_signed_by_the_receiving_device(
    trio: tuple[Person, Person, Person],
) -> None:
    alice, bob, carol = trio
    await bob.add_device()
    header = await alice.send(bob, "to be recalled")
    other = await alice.send(bob, "also recalled")
    for device in (0, 1):
        await bob.read(alice, header.message_id, device=device)
        await bob.read(alice, other.message_id, device=device)
    revocation = (await alice.recall(header))["report"]["revocation"]
    other_revocation = (await alice.recall(other))["report"]["revocation"]
    digest = er.verify_revocation(revocation, alice.identity.public_key).digest
    other_digest = er.verify_revocation(other_revocation, alice.identity.public_key).digest

    def receipt(
        signer: er.SigningKey,
        device_id: bytes,
        user: bytes = bob.user_id,
        message: er.Header = header,
        answers: bytes = digest,
    ) -> dict[str, bytes]:
        signed = er.sign_deletion_receipt(
            signer,
            user=user,
            device_id=device_id,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            deleted_at=alice.relay.clock.now,
            opened_at=None,
            revocation=answers,
        ).signed
        return {"receipt": signed}

    phone, laptop = bob.devices[0].secrets, bob.devices[1].secrets
    path = f"/v1/messages/{header.message_id.hex()}/receipt"
    wrong = [
        ("signed by Bob's other device", receipt(laptop.signing_key, laptop.device_id), 403),
        (
            "signed by the other device, naming this one",
            receipt(laptop.signing_key, phone.device_id),
            403,
        ),
        ("naming the other device", receipt(phone.signing_key, laptop.device_id), 403),
        (
            "signed by the sender's device",
            receipt(alice.devices[0].secrets.signing_key, phone.device_id),
            403,
        ),
        ("signed by Bob's identity key", receipt(bob.identity, phone.device_id), 403),
        (
            "for another message",
            receipt(phone.signing_key, phone.device_id, message=other, answers=other_digest),
            400,
        ),
        (
            "answering another revocation",
            receipt(phone.signing_key, phone.device_id, answers=other_digest),
            400,
        ),
    ]
    before = await stats(alice.relay)
    for name, body, status in wrong:
        answer = await ask(bob, "POST", path, body, authorization=bearer(bob, 0))
        assert answer.status == status, (name, answer)
        assert_refusal(answer, status)
    carols = receipt(
        carol.devices[0].secrets.signing_key, carol.devices[0].secrets.device_id, user=carol.user_id
    )
    assert_refusal(
        await ask(carol, "POST", path, carols, authorization=bearer(carol)), 404, "not_found"
    )
    assert await stats(alice.relay) == before
    report = await alice.report(header.message_id)
    assert states(report) == ["pending", "pending"]
    assert [line["receipt"] for line in report["devices"]] == [None, None]
    # each device's own receipt is accepted, for its own line only
    await bob.call("POST", path, receipt(phone.signing_key, phone.device_id), device=0)
    lines = {
        line["device_id"]: line["state"]
        for line in (await alice.report(header.message_id))["devices"]
    }
    assert lines == {phone.device_id: "deleted", laptop.device_id: "pending"}


# --------------------------------------------------------------------------------------------
# Tokens at rest


async def test_session_tokens_are_stored_only_as_hashes(
    trio: tuple[Person, Person, Person],
) -> None:
    alice, bob, carol = trio
    relay = alice.relay
    tokens = [await alice.login(), await bob.login(), await carol.login(), await bob.login()]
    tokens += [d.token or "" for p in trio for d in p.devices]
    header = await alice.send(bob, "some traffic")
    await bob.read(alice, header.message_id)

    async def scan() -> tuple[list[str], int]:
        data = await relay.database_contents()
        leaks, hashes = [], 0
        for text in set(tokens):
            raw = base64.urlsafe_b64decode(text + "=")
            forms = {
                "raw bytes": raw,
                "base64url": text.encode(),
                "padded base64": base64.b64encode(raw),
                "hex": raw.hex().encode(),
            }
            leaks += [f"{name} of {text[:6]}…" for name, form in forms.items() if form in data]
            hashes += hashlib.sha256(raw).digest() in data
        return leaks, hashes

    unique = len(set(tokens))
    leaks, hashes = await scan()
    assert leaks == []
    assert hashes == unique  # the scan does see the sessions: their hashes are there
    await relay.services.storage.checkpoint()  # and after the WAL is folded into the main file
    leaks, hashes = await scan()
    assert leaks == []
    assert hashes == unique
