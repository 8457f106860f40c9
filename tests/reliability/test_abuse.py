"""The abuse suite: attacks on a running relay process, each a test, each failing closed.

Every attack is made by Mallory, a real registered user, against Alice and
Bob.  Each must be refused with the right 4xx, a code and a sentence, reveal
nothing of Alice's or Bob's data, and leave the honest people's view as it
was (``Scene.still_intact``).  Group membership changes do not exist yet
(the groups issue); their forgery joins this list when they do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.keyfile import load_signing_key

from abuse_scene import ROUTE_NAMES, Scene, build_scene, every_route, flip_token
from driver import Person, RelayRefused
from relay_process import RelayProcess, free_port, target

QUIET = {
    "E2E_RECALL_RELAY_BODY_TIMEOUT": "2s",
    "E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE": "0",
    "E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY": "0",
}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    work = tmp_path_factory.mktemp("abuse")
    process = RelayProcess(work, work / "data", port=free_port(), **QUIET)
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
async def scene(relay: RelayProcess) -> AsyncIterator[Scene]:
    async with aiohttp.ClientSession() as http:
        built = await build_scene(await target(http, relay.url()), http)
        yield built
        await built.still_intact()
        async with http.get(relay.url() + "/healthz") as health:
            assert health.status == 200


def _route(scene: Scene, name: str) -> tuple[str, str, dict[str, object] | None]:
    return dict(zip(ROUTE_NAMES, every_route(scene), strict=True))[name]


# -- tokens: every route, every kind of bad token --------------------------------------------


async def _refused_with(
    scene: Scene, name: str, token: str | None
) -> tuple[int, dict[str, object]]:
    method, path, body = _route(scene, name)
    data = wire.encode(body) if body is not None else None
    status, answer = await scene.raw(method, path, data, token=token)
    assert status == 401, (name, status, answer)
    assert answer["error"] in ("no_token", "bad_token", "expired_token")
    assert scene.leaks(answer) == []
    return status, answer


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_no_token(scene: Scene, name: str) -> None:
    await _refused_with(scene, name, None)


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_malformed_token(scene: Scene, name: str) -> None:
    await _refused_with(scene, name, "not a token; DROP TABLE sessions")


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_bit_flipped_token(scene: Scene, name: str) -> None:
    token = scene.mallory.devices[0].token
    assert token is not None
    await _refused_with(scene, name, flip_token(token))


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_logged_out_token(scene: Scene, name: str) -> None:
    token = scene.mallory.devices[0].token
    await scene.mallory.call("POST", "/v1/logout", {})
    await _refused_with(scene, name, token)


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    work = tmp_path_factory.mktemp("expiring")
    process = RelayProcess(
        work, work / "data", port=free_port(), E2E_RECALL_RELAY_SESSION_TTL="1s", **QUIET
    )
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_expired_token(short_sessions: RelayProcess, name: str) -> None:
    async with aiohttp.ClientSession() as http:
        scene = await build_scene(await target(http, short_sessions.url()), http)
        stale = scene.mallory.devices[0].token
        await asyncio.sleep(1.2)
        await _refused_with(scene, name, stale)


async def test_websocket_refuses_every_bad_token(scene: Scene) -> None:
    good = scene.mallory.devices[0].token
    assert good is not None
    url = scene.target.url.replace("http", "ws", 1) + "/v1/ws?cursor=0"
    for token in (None, "garbage", flip_token(good)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await scene.http.ws_connect(url, headers=headers)
        assert refused.value.status == 401


async def test_a_captured_login_answer_cannot_be_replayed(scene: Scene) -> None:
    device = scene.mallory.devices[0]
    challenge = (await scene.mallory.call("POST", "/v1/challenge", token=""))["challenge"]
    signature = er.auth.sign_login(
        device.secrets.signing_key,
        relay=scene.target.relay_id,
        device_id=device.secrets.device_id,
        challenge=challenge,
    )
    body = {"device_id": device.secrets.device_id, "challenge": challenge, "signature": signature}
    await scene.mallory.call("POST", "/v1/login", body, token="")
    with pytest.raises(RelayRefused) as replayed:
        await scene.mallory.call("POST", "/v1/login", body, token="")
    assert replayed.value.status == 401


async def test_a_login_for_bobs_device_signed_by_mallory_fails(scene: Scene) -> None:
    challenge = (await scene.mallory.call("POST", "/v1/challenge", token=""))["challenge"]
    signature = er.auth.sign_login(
        scene.mallory.devices[0].secrets.signing_key,
        relay=scene.target.relay_id,
        device_id=scene.bob.devices[0].secrets.device_id,
        challenge=challenge,
    )
    with pytest.raises(RelayRefused) as refused:
        await scene.mallory.call(
            "POST",
            "/v1/login",
            {
                "device_id": scene.bob.devices[0].secrets.device_id,
                "challenge": challenge,
                "signature": signature,
            },
            token="",
        )
    assert refused.value.status == 401
    assert scene.leaks(refused.value.body) == []


# -- other people's messages -------------------------------------------------------------------


async def _recall_refused(scene: Scene, person: Person, revocation: bytes) -> int:
    """``person`` asks to recall Alice's message with ``revocation``; the refusal's status."""
    with pytest.raises(RelayRefused) as refused:
        await person.call(
            "POST",
            scene.message_path + "/recall",
            {"revocation": revocation, "replacement": None},
        )
    assert scene.leaks(refused.value.body) == []
    return refused.value.status


async def test_fetching_someone_elses_message(scene: Scene) -> None:
    refused = await scene.mallory_calls("GET", scene.message_path)
    assert refused.status == 404


async def test_opening_someone_elses_message(scene: Scene) -> None:
    refused = await scene.mallory_calls("POST", scene.message_path + "/open", {})
    assert refused.status == 404


async def test_reading_someone_elses_report(scene: Scene) -> None:
    refused = await scene.mallory_calls("GET", scene.message_path + "/report")
    assert refused.status == 404


async def test_the_recipient_cannot_read_the_senders_report(scene: Scene) -> None:
    with pytest.raises(RelayRefused) as refused:
        await scene.bob.call("GET", scene.message_path + "/report")
    assert refused.value.status == 404


async def test_recalling_someone_elses_message_with_your_own_signature(scene: Scene) -> None:
    revocation = er.sign_revocation(
        scene.mallory.identity,
        message_id=scene.header.message_id,
        conversation_id=scene.header.conversation_id,
        issued_at=scene.target.clock.now,
    )
    refused = await scene.mallory_calls(
        "POST",
        scene.message_path + "/recall",
        {"revocation": revocation.signed, "replacement": None},
    )
    assert refused.status in (403, 404)


async def test_a_revocation_signed_by_the_recipient(scene: Scene) -> None:
    revocation = er.sign_revocation(
        scene.bob.identity,
        message_id=scene.header.message_id,
        conversation_id=scene.header.conversation_id,
        issued_at=scene.target.clock.now,
    )
    status = await _recall_refused(scene, scene.bob, revocation.signed)
    assert status == 403


async def test_a_revocation_signed_by_the_relay_key(scene: Scene, relay: RelayProcess) -> None:
    relay_key = load_signing_key((relay.data_dir / "relay.key").read_bytes())
    revocation = er.sign_revocation(
        relay_key,
        message_id=scene.header.message_id,
        conversation_id=scene.header.conversation_id,
        issued_at=scene.target.clock.now,
    )
    status = await _recall_refused(scene, scene.alice, revocation.signed)
    assert status == 403


async def test_a_revocation_for_another_conversation(scene: Scene) -> None:
    revocation = er.sign_revocation(
        scene.alice.identity,
        message_id=scene.header.message_id,
        conversation_id=er.direct_conversation_id(scene.alice.user_id, scene.mallory.user_id),
        issued_at=scene.target.clock.now,
    )
    status = await _recall_refused(scene, scene.alice, revocation.signed)
    assert 400 <= status < 500


async def test_a_revocation_replayed_against_another_message(scene: Scene) -> None:
    other = await scene.alice.send(scene.bob, "a second message")
    revocation = scene.alice.revocation(other)
    await scene.alice.call(
        "POST",
        f"/v1/messages/{other.message_id.hex()}/recall",
        {"revocation": revocation.signed, "replacement": None},
    )
    status = await _recall_refused(scene, scene.alice, revocation.signed)
    assert 400 <= status < 500


async def test_a_bit_flipped_revocation(scene: Scene) -> None:
    signed = bytearray(scene.alice.revocation(scene.header).signed)
    signed[-5] ^= 0x10
    status = await _recall_refused(scene, scene.alice, bytes(signed))
    assert 400 <= status < 500


async def test_mallory_replays_alices_own_revocation(scene: Scene) -> None:
    """A valid revocation is Alice's to submit; Mallory presenting it changes nothing."""
    revocation = scene.alice.revocation(scene.header)
    refused = await scene.mallory_calls(
        "POST",
        scene.message_path + "/recall",
        {"revocation": revocation.signed, "replacement": None},
    )
    assert refused.status in (403, 404)


async def test_a_deletion_receipt_for_a_message_never_addressed_to_you(scene: Scene) -> None:
    secrets = scene.mallory.devices[0].secrets
    receipt = er.sign_deletion_receipt(
        secrets.signing_key,
        user=scene.mallory.user_id,
        device_id=secrets.device_id,
        message_id=scene.header.message_id,
        conversation_id=scene.header.conversation_id,
        deleted_at=scene.target.clock.now,
        opened_at=None,
        revocation=os.urandom(32),  # as if there had been a recall to answer
    )
    refused = await scene.mallory_calls(
        "POST", scene.message_path + "/receipt", {"receipt": receipt.signed}
    )
    assert refused.status in (403, 404, 409)


# -- sending as someone else, or to the wrong devices --------------------------------------------


async def test_sending_a_message_that_claims_another_sender(scene: Scene) -> None:
    header, sealed = scene.alice.seal(scene.bob, "forged by mallory")
    wraps = await scene.alice.wraps_for(scene.bob, header, sealed.message_key)
    refused = await scene.mallory_calls(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    assert refused.status == 403


async def test_a_wrap_addressed_to_a_device_outside_the_conversation(scene: Scene) -> None:
    header, sealed = scene.mallory.seal(scene.bob, "hello bob")
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    stranger = scene.alice.devices[0].secrets
    wraps.append(
        {
            "device_id": stranger.device_id,
            "wrap": er.wrap_message_key(
                sealed.message_key,
                stranger.wrap_key.public_key,
                message_id=header.message_id,
                conversation_id=header.conversation_id,
                device_id=stranger.device_id,
            ),
        }
    )
    with pytest.raises(RelayRefused) as refused:
        await scene.mallory.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert refused.value.status == 400


async def test_reusing_alices_message_id(scene: Scene) -> None:
    header, sealed = scene.mallory.seal(scene.bob, "squatting", message_id=scene.header.message_id)
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    refused = await scene.mallory_calls(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    assert refused.status == 409


async def test_registering_with_someone_elses_identity_key(scene: Scene) -> None:
    impostor = Person("impostor", scene.target, scene.http)  # type: ignore[arg-type]
    impostor.identity = scene.alice.identity.__class__.generate()
    secrets = er.DeviceSecrets.generate()
    certificate = er.issue_device_certificate(
        impostor.identity,
        secrets.device_id,
        secrets.signing_key.public_key,
        secrets.wrap_key.public_key,
        created_at=scene.target.clock.now,
    ).signed
    challenge = (await impostor.call("POST", "/v1/challenge", token=""))["challenge"]
    identity_signature, device_signature = er.auth.sign_registration(
        impostor.identity,
        secrets.signing_key,
        relay=scene.target.relay_id,
        challenge=challenge,
        certificate=certificate,
    )
    with pytest.raises(RelayRefused) as refused:
        await impostor.call(
            "POST",
            "/v1/register",
            {
                "identity_key": scene.alice.identity.public_key.raw,  # claims Alice's key
                "certificate": certificate,
                "challenge": challenge,
                "identity_signature": identity_signature,
                "device_signature": device_signature,
                "handle": None,
            },
            token="",
        )
    assert 400 <= refused.value.status < 500
    assert (await scene.alice.call("GET", f"/v1/users/{scene.alice.user_id.hex()}"))["devices"] == [
        scene.alice.devices[0].certificate
    ]


async def test_taking_alices_handle(scene: Scene) -> None:
    squatter = Person("squatter", scene.target, scene.http)  # type: ignore[arg-type]
    with pytest.raises(RelayRefused) as refused:
        await squatter.add_device(handle=scene.alice_handle)
    assert refused.value.status == 409


# -- malformed, oversized and hostile bodies ----------------------------------------------------


async def test_an_oversized_body(scene: Scene) -> None:
    token = scene.mallory.devices[0].token
    status, answer = await scene.raw("POST", "/v1/messages", os.urandom(4 << 20), token=token)
    assert status == 413
    assert answer["error"]


async def test_a_deeply_nested_body(scene: Scene) -> None:
    token = scene.mallory.devices[0].token
    bomb = b"\x91" * 10_000 + b"\xc0"  # ten thousand nested one-element arrays
    status, answer = await scene.raw("POST", "/v1/messages", bomb, token=token)
    assert status == 400
    assert answer["error"]


async def test_a_truncated_body(scene: Scene) -> None:
    token = scene.mallory.devices[0].token
    header, sealed = scene.mallory.seal(scene.bob, "cut short")
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    whole = wire.encode({"envelope": sealed.envelope, "wraps": wraps, "blobs": []})
    status, answer = await scene.raw("POST", "/v1/messages", whole[: len(whole) // 2], token=token)
    assert status == 400
    assert answer["error"]
    with pytest.raises(RelayRefused):  # and nothing of it was stored
        await scene.mallory.call("GET", f"/v1/messages/{header.message_id.hex()}/report")


async def test_a_huge_declared_length(scene: Scene) -> None:
    token = scene.mallory.devices[0].token
    status, answer = await scene.raw("POST", "/v1/messages", b"\xdb\xff\xff\xff\xff", token=token)
    assert status in (400, 413)
    assert answer["error"]


async def test_a_body_that_is_not_msgpack(scene: Scene) -> None:
    token = scene.mallory.devices[0].token
    status, answer = await scene.raw(
        "POST", "/v1/messages", b'{"envelope": 1}', token=token, content_type="application/json"
    )
    assert 400 <= status < 500
    assert answer["error"]


# -- connections: many abandoned, and slow ------------------------------------------------------


async def test_thousands_of_abandoned_websockets_leave_the_relay_serving(scene: Scene) -> None:
    url = scene.target.url.replace("http", "ws", 1) + "/v1/ws?cursor=0"
    opened = 0
    for _round in range(10):
        connectors = []
        for _ in range(200):  # half authenticated, half not: both must be cleaned up
            session = aiohttp.ClientSession()
            connectors.append(session)
            try:
                ws = await session.ws_connect(url, headers={"Authorization": "Bearer nope"})
                await ws.close()
            except aiohttp.WSServerHandshakeError:
                opened += 1
        for session in connectors:
            await session.close()  # dropped without a close frame
    assert opened == 2000
    fetched = await scene.bob.call("GET", scene.message_path)
    assert fetched["envelope"] == scene.envelope


async def test_slowloris_connections_do_not_starve_others(scene: Scene) -> None:
    host, port = scene.target.url.removeprefix("http://").split(":")
    writers = []
    for _ in range(200):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        await writer.drain()
        writers.append(writer)
    try:
        fetched = await asyncio.wait_for(scene.bob.call("GET", scene.message_path), 10)
        assert fetched["envelope"] == scene.envelope
    finally:
        for writer in writers:
            writer.close()


async def test_a_slow_body_is_cut_off(scene: Scene, relay: RelayProcess) -> None:
    host, port = scene.target.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    token = scene.mallory.devices[0].token
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n".encode()
        + b"\x82"
    )
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(1024), 30)  # body_timeout is 2 s here
        assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        writer.close()


def test_the_catalogue_has_at_least_forty_attacks() -> None:
    tests = [name for name in globals() if name.startswith("test_") and "catalogue" not in name]
    parametrised = 5 * len(ROUTE_NAMES) - 5
    assert len(tests) + parametrised >= 40
