"""The abuse suite: attacks on a running relay process, each a test, each failing closed.

Every attack is made by Mallory, a real registered user, against Alice and
Bob.  Each must be refused with the right 4xx, a code and a sentence, reveal
nothing of Alice's or Bob's data, and leave the honest people's view as it
was (``Scene.still_intact``).  Attacks on groups are in test_abuse_groups.py.

The blob attacks run against a relay with small file limits (``BLOBS``) so
that sizes past them, the quota and a silent upload take milliseconds.

Backends.  Every attack runs on SQLite; those whose outcome depends on what
storage holds and how it answers also run on PostgreSQL (``@on_both_backends``,
a relay process on a throwaway database), and must fail closed the same way
there: a session looked up, logged out or expired (bit-flipped, logged-out and
expired tokens, on ``STORED_ROUTES``, since one lookup serves every route; the
WebSocket's tokens); a login challenge consumed once (replay); who may fetch,
open, report on, recall or post a receipt for a message, and a revocation
replayed or aimed at another conversation (rows read); a wrap to a device
outside the conversation, a reused message id, a taken identity key or handle
(unique rows); every blob ownership, binding, offset and quota rule (metadata
rows), and the racing appends (a race the database settles).

The rest are storage-independent and run on SQLite only, to keep CI inside its
budget (all on both cost 181 s more on the 2-core machine; this choice about
45 s): a missing or malformed token is refused before any lookup; bodies that
are oversized, nested, truncated or not msgpack fail in the codec; slowloris,
slow and silent bodies and abandoned WebSockets are the HTTP server's timeouts
and limits; lying framing, hostile offsets and ranges fail in parsing; path
traversal fails in the blob id's validation and the file store; a bit-flipped
or wrongly signed revocation fails its signature check, with the same stored
sender's key as ``recalling ... with your own signature`` reads on both; the
route-by-route token variants repeat the one lookup.  The thousands of
abandoned uploads (14 to 25 s) count against the quota by the same sum that
``test_a_blob_past_the_quota`` reaches on both.

After every test the relay's log must hold no logged exception
(``RelayPerBackend.new_errors``): a refusal the attacker sees must not be a
traceback the operator sees.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import yarl
from backends import RelayPerBackend, on_backends, on_both_backends, relays_in

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.keyfile import load_signing_key

from abuse_scene import (
    OCTETS,
    ROUTE_NAMES,
    Scene,
    build_scene,
    every_route,
    flip_token,
    mallory_sends_a_file,
)
from blob_client import create, digest_of, download, patch, send_with, upload, upload_status
from driver import Person, RelayRefused
from relay_process import RelayProcess, free_port, target

MAX_FILE = 1 << 20
QUOTA = 8 << 20
QUIET = {
    "E2E_RECALL_RELAY_BODY_TIMEOUT": "2s",
    "E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE": "0",
    "E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY": "0",
    "E2E_RECALL_RELAY_MAX_FILE_SIZE": str(MAX_FILE),
    "E2E_RECALL_RELAY_BLOB_QUOTA": str(QUOTA),
    "E2E_RECALL_RELAY_BLOB_READ_TIMEOUT": "1s",
}


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayPerBackend]:
    yield from relays_in(tmp_path_factory, "abuse", **QUIET)


@pytest.fixture
def relay(relays: RelayPerBackend, backend: str) -> RelayProcess:
    return relays.get(backend)


@pytest.fixture
async def scene(relays: RelayPerBackend, relay: RelayProcess) -> AsyncIterator[Scene]:
    async with aiohttp.ClientSession() as http:
        built = await build_scene(await target(http, relay.url()), http, relay.data_dir / "blobs")
        yield built
        await built.still_intact()
        async with http.get(relay.url() + "/healthz") as health:
            assert health.status == 200
    assert relays.new_errors() == []


STORED_ROUTES = ["send", "blob_append"]
"""Routes the token attacks also make on PostgreSQL: one session lookup serves every route."""


def _route(scene: Scene, name: str) -> tuple[str, str, dict[str, object] | bytes | None]:
    return dict(zip(ROUTE_NAMES, every_route(scene), strict=True))[name]


# -- tokens: every route, every kind of bad token --------------------------------------------


async def _refused_with(
    scene: Scene, name: str, token: str | None
) -> tuple[int, dict[str, object]]:
    method, path, body = _route(scene, name)
    if isinstance(body, bytes):  # a PATCH of blob bytes, at the right offset
        offset = str(len(scene.partial) // 2)
        headers = {"Content-Type": OCTETS, "Upload-Offset": offset}
        status, raw, _ = await scene.request(method, path, body, token=token or "", headers=headers)
        answer = wire.decode(raw)
        assert isinstance(answer, dict)
    else:
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


@on_backends("name", ROUTE_NAMES, STORED_ROUTES)
async def test_bit_flipped_token(scene: Scene, name: str) -> None:
    token = scene.mallory.devices[0].token
    assert token is not None
    await _refused_with(scene, name, flip_token(token))


@on_backends("name", ROUTE_NAMES, STORED_ROUTES)
async def test_logged_out_token(scene: Scene, name: str) -> None:
    token = scene.mallory.devices[0].token
    await scene.mallory.call("POST", "/v1/logout", {})
    await _refused_with(scene, name, token)


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayPerBackend]:
    def make(backend: str, database: list[str]) -> RelayProcess:
        work = tmp_path_factory.mktemp(f"expiring-{backend}")
        session_ttl = {"E2E_RECALL_RELAY_SESSION_TTL": "1s"}
        return RelayProcess(
            work, work / "data", *database, port=free_port(), **session_ttl, **QUIET
        )

    with RelayPerBackend(make) as started:
        yield started


@pytest.fixture
def short_sessions(expiring: RelayPerBackend, backend: str) -> Iterator[RelayProcess]:
    yield expiring.get(backend)
    assert expiring.new_errors() == []


@on_both_backends
async def test_expired_token_on_every_route(short_sessions: RelayProcess) -> None:
    # One wait for the token to expire serves every route (the refusals change nothing).
    async with aiohttp.ClientSession() as http:
        scene = await build_scene(await target(http, short_sessions.url()), http)
        stale = scene.mallory.devices[0].token
        await asyncio.sleep(1.2)
        let_in = []
        for name in ROUTE_NAMES:
            try:
                await _refused_with(scene, name, stale)
            except AssertionError as failed:
                let_in.append(f"{name}: {failed}")
        assert let_in == []


@on_both_backends
async def test_websocket_refuses_every_bad_token(scene: Scene) -> None:
    good = scene.mallory.devices[0].token
    assert good is not None
    url = scene.target.url.replace("http", "ws", 1) + "/v1/ws?cursor=0"
    for token in (None, "garbage", flip_token(good)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await scene.http.ws_connect(url, headers=headers)
        assert refused.value.status == 401


@on_both_backends
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


@on_both_backends
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


@on_both_backends
async def test_fetching_someone_elses_message(scene: Scene) -> None:
    refused = await scene.mallory_calls("GET", scene.message_path)
    assert refused.status == 404


@on_both_backends
async def test_opening_someone_elses_message(scene: Scene) -> None:
    refused = await scene.mallory_calls("POST", scene.message_path + "/open", {})
    assert refused.status == 404


@on_both_backends
async def test_reading_someone_elses_report(scene: Scene) -> None:
    refused = await scene.mallory_calls("GET", scene.message_path + "/report")
    assert refused.status == 404


@on_both_backends
async def test_the_recipient_cannot_read_the_senders_report(scene: Scene) -> None:
    with pytest.raises(RelayRefused) as refused:
        await scene.bob.call("GET", scene.message_path + "/report")
    assert refused.value.status == 404


@on_both_backends
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


@on_both_backends
async def test_a_revocation_for_another_conversation(scene: Scene) -> None:
    revocation = er.sign_revocation(
        scene.alice.identity,
        message_id=scene.header.message_id,
        conversation_id=er.direct_conversation_id(scene.alice.user_id, scene.mallory.user_id),
        issued_at=scene.target.clock.now,
    )
    status = await _recall_refused(scene, scene.alice, revocation.signed)
    assert 400 <= status < 500


@on_both_backends
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


@on_both_backends
async def test_mallory_replays_alices_own_revocation(scene: Scene) -> None:
    """A valid revocation is Alice's to submit; Mallory presenting it changes nothing."""
    revocation = scene.alice.revocation(scene.header)
    refused = await scene.mallory_calls(
        "POST",
        scene.message_path + "/recall",
        {"revocation": revocation.signed, "replacement": None},
    )
    assert refused.status in (403, 404)


@on_both_backends
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


@on_both_backends
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
            "key_id": stranger.wrap_key.public_key.key_id,
        }
    )
    with pytest.raises(RelayRefused) as refused:
        await scene.mallory.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
    assert refused.value.status == 400


@on_both_backends
async def test_reusing_alices_message_id(scene: Scene) -> None:
    header, sealed = scene.mallory.seal(scene.bob, "squatting", message_id=scene.header.message_id)
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    refused = await scene.mallory_calls(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    assert refused.status == 409


@on_both_backends
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


@on_both_backends
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


# -- blobs: other people's files ---------------------------------------------------------------


async def _absent_answer(
    scene: Scene, path: str, headers: dict[str, str] | None
) -> tuple[int, bytes, str]:
    """What Mallory gets for ``path``: status, body and length, to compare with an unknown id."""
    status, body, answered = await scene.request("GET", path, headers=headers)
    assert scene.leaks(body) == []
    return status, body, answered.get("Content-Length", "")


async def _like_an_unknown_blob(
    scene: Scene, blob_id: bytes, suffix: str = "", headers: dict[str, str] | None = None
) -> None:
    """Mallory's answer for ``blob_id`` is byte for byte the one for an id nobody has."""
    known = await _absent_answer(scene, f"/v1/blobs/{blob_id.hex()}{suffix}", headers)
    unknown = await _absent_answer(scene, f"/v1/blobs/{os.urandom(16).hex()}{suffix}", headers)
    assert known == unknown
    assert known[0] == 404
    assert wire.decode(known[1])["error"] == "blob_not_found"


async def _median_ms(scene: Scene, path: str, rounds: int = 25) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await scene.request("GET", path)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[rounds // 2]


@on_both_backends
async def test_downloading_another_conversations_blob(scene: Scene) -> None:
    await _like_an_unknown_blob(scene, scene.blob_id)
    # Coarse: the refusal for a real blob must not take visibly longer (no file is opened).
    known = await _median_ms(scene, f"/v1/blobs/{scene.blob_id.hex()}")
    unknown = await _median_ms(scene, f"/v1/blobs/{os.urandom(16).hex()}")
    assert abs(known - unknown) < max(5.0, unknown), (known, unknown)


@pytest.mark.parametrize("asked", ["bytes=0-", "bytes=69999-", "bytes=70000-", "bytes=-1", "x"])
async def test_a_range_on_another_conversations_blob(scene: Scene, asked: str) -> None:
    """Never a 206 or a 416 (which would say how long the blob is): the same 404."""
    await _like_an_unknown_blob(scene, scene.blob_id, headers={"Range": asked})


@on_both_backends
async def test_reading_the_upload_status_of_someone_elses_blob(scene: Scene) -> None:
    for blob_id in (scene.partial_id, scene.blob_id):
        await _like_an_unknown_blob(scene, blob_id, "/upload")


@on_both_backends
async def test_downloading_a_blob_before_it_is_bound(scene: Scene) -> None:
    await _like_an_unknown_blob(scene, scene.partial_id)
    unbound = await upload(scene.alice, os.urandom(5000))  # complete, but in no message
    await _like_an_unknown_blob(scene, unbound)
    for person in (scene.bob, scene.alice):  # not even its uploader reads an unbound blob
        status, body, _ = await download(person, unbound)
        assert (status, wire.decode(body)["error"]) == (404, "blob_not_found")


@on_both_backends
async def test_downloading_a_blob_after_its_message_was_recalled(scene: Scene) -> None:
    blob = os.urandom(9000)
    scene.extra_secrets += [blob[:16], blob[-16:]]
    blob_id = await upload(scene.alice, blob)
    header = await send_with(scene.alice, scene.bob, "the wrong file", [blob_id])
    await scene.bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    await scene.alice.recall(header)
    await _like_an_unknown_blob(scene, blob_id)  # 404, not the 410 that says it existed
    for _ in range(100):  # the file is unlinked right after the commit
        if not any(blob_id.hex() in name for name in scene.blob_files()):
            break
        await asyncio.sleep(0.02)
    assert not any(blob_id.hex() in name for name in scene.blob_files())
    status, _, _ = await download(scene.bob, blob_id)
    assert status == 410  # Bob had the message: he is told it went with it


@on_both_backends
async def test_patching_into_someone_elses_upload(scene: Scene) -> None:
    half = len(scene.partial) // 2
    before = scene.blob_files()
    for offset in (half, 0):
        status, body, _ = await scene.request(
            "PATCH",
            f"/v1/blobs/{scene.partial_id.hex()}",
            os.urandom(half),
            headers={"Content-Type": OCTETS, "Upload-Offset": str(offset)},
        )
        assert (status, wire.decode(body)["error"]) == (404, "blob_not_found")
        assert scene.leaks(body) == []
    assert scene.blob_files() == before


@on_both_backends
async def test_patching_into_someone_elses_complete_blob(scene: Scene) -> None:
    for offset, data in ((len(scene.blob), os.urandom(10)), (0, os.urandom(len(scene.blob)))):
        status, body, _ = await scene.request(
            "PATCH",
            f"/v1/blobs/{scene.blob_id.hex()}",
            data,
            headers={"Content-Type": OCTETS, "Upload-Offset": str(offset)},
        )
        assert (status, wire.decode(body)["error"]) == (404, "blob_not_found")


@on_both_backends
async def test_declaring_a_blob_under_someone_elses_id(scene: Scene) -> None:
    """The same size and digest as Alice's, or others: refused, and nothing of hers told."""
    for blob_id, blob in ((scene.blob_id, scene.blob), (scene.partial_id, scene.partial)):
        for size, digest in ((len(blob), digest_of(blob)), (1, bytes(32))):
            status, answer = await create(scene.mallory, blob_id, size, digest)
            assert (status, answer["error"]) == (409, "blob_exists")
            assert set(answer) <= {"error", "message"}  # no offset, no size of Alice's
            assert scene.leaks(answer) == []


# -- blobs: sizes and the quota ----------------------------------------------------------------


def _no_file_for(scene: Scene, blob_id: bytes) -> bool:
    return not any(blob_id.hex() in name for name in scene.blob_files())


async def test_a_blob_past_max_file_size(scene: Scene) -> None:
    before = scene.blob_files()
    for size in (MAX_FILE + 1, 1 << 40, (1 << 64) - 1):
        blob_id = os.urandom(16)
        status, answer = await create(scene.mallory, blob_id, size, bytes(32))
        assert (status, answer["error"]) in ((413, "file_too_large"), (400, "out_of_range"))
        status, answer = await patch(scene.mallory, blob_id, 0, os.urandom(1000))
        assert (status, answer["error"]) == (404, "blob_not_found")
    assert scene.blob_files() == before


@on_both_backends
async def test_a_blob_past_the_quota(scene: Scene) -> None:
    held = []
    for _ in range(QUOTA // MAX_FILE):  # declared, not uploaded: they count all the same
        held.append(os.urandom(16))
        assert (await create(scene.mallory, held[-1], MAX_FILE, bytes(32)))[0] == 201
    before = scene.blob_files()
    for size in (1, MAX_FILE):
        status, answer = await create(scene.mallory, os.urandom(16), size, bytes(32))
        assert (status, answer["error"]) == (413, "quota_exceeded")
    assert scene.blob_files() == before
    assert (await create(scene.alice, os.urandom(16), MAX_FILE, bytes(32)))[0] == 201  # hers


async def test_thousands_of_abandoned_uploads_count_against_the_quota(scene: Scene) -> None:
    size = 4096
    fits = QUOTA // size
    started = scene.blob_files()
    ids = [os.urandom(16) for _ in range(fits)]
    for at, blob_id in enumerate(ids):
        assert (await create(scene.mallory, blob_id, size, bytes(32)))[0] == 201
        if at % 256 == 0:  # a few get a first byte and are left there
            assert (await patch(scene.mallory, blob_id, 0, b"x"))[0] == 200
    status, answer = await create(scene.mallory, os.urandom(16), 1, bytes(32))
    assert (status, answer["error"]) == (413, "quota_exceeded")
    added = set(scene.blob_files()) - set(started)
    assert len(added) == len(range(0, fits, 256))  # files only for uploads that sent a byte
    assert all(scene.blob_files()[name] == 1 for name in added)
    assert (await scene.http.get(scene.target.url + "/healthz")).status == 200


# -- blobs: lying framing, offsets and ranges --------------------------------------------------


async def _raw_exchange(scene: Scene, request: bytes, wait: float = 10.0) -> bytes:
    """Bytes straight onto a socket, then whatever the relay answers before ``wait``."""
    host, port = scene.target.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = b""
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in answer or not _whole(answer):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                piece = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not piece:
                break
            answer += piece
        return answer
    finally:
        writer.close()


def _whole(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _patch_head(scene: Scene, blob_id: bytes, offset: bytes, length: int) -> bytes:
    return (
        f"PATCH /v1/blobs/{blob_id.hex()} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {scene.mallory.devices[0].token}\r\n"
        f"Content-Type: {OCTETS}\r\nContent-Length: {length}\r\n".encode()
        + b"Upload-Offset: "
        + offset
        + b"\r\n\r\n"
    )


def _answer(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    decoded = wire.decode(body[:length])  # the first answer only
    assert isinstance(decoded, dict)
    return status, decoded


async def _declared(scene: Scene, size: int) -> tuple[bytes, bytes]:
    blob, blob_id = os.urandom(size), os.urandom(16)
    assert (await create(scene.mallory, blob_id, size, digest_of(blob)))[0] == 201
    return blob, blob_id


async def test_a_content_length_longer_than_the_body(scene: Scene) -> None:
    """Declares 1,000 bytes and sends 400: cut off after the read timeout, 400 kept, not done."""
    blob, blob_id = await _declared(scene, 1000)
    started = time.monotonic()
    raw = await _raw_exchange(scene, _patch_head(scene, blob_id, b"0", 1000) + blob[:400])
    assert time.monotonic() - started < 5  # blob_read_timeout is 1 s here
    status, answer = _answer(raw)
    assert (status, answer["error"], answer["offset"]) == (408, "request_timeout", 400)
    stored = await upload_status(scene.mallory, blob_id)
    assert stored == {"offset": 400, "size": 1000, "complete": False}


async def test_a_content_length_shorter_than_the_body(scene: Scene) -> None:
    """Declares 400 and sends 1,000: 400 are the body, the rest is no request at all."""
    blob, blob_id = await _declared(scene, 1000)
    raw = await _raw_exchange(scene, _patch_head(scene, blob_id, b"0", 400) + blob, wait=3)
    # The parser meets the other 600 bytes as the next request line and refuses them, and
    # closes the connection, often before the PATCH was served: then none of it is kept.
    # Never more than the 400 declared, never a 5xx, never complete.
    assert raw.startswith((b"HTTP/1.1 200", b"HTTP/1.0 400", b"HTTP/1.1 400")), raw[:100]
    stored = await upload_status(scene.mallory, blob_id)
    assert stored["offset"] in (0, 400)
    assert stored["complete"] is False
    assert (await patch(scene.mallory, blob_id, stored["offset"], blob[stored["offset"] :]))[
        0
    ] == 200


async def test_a_body_past_the_declared_size(scene: Scene) -> None:
    blob, blob_id = await _declared(scene, 1000)
    status, answer = await patch(scene.mallory, blob_id, 0, blob + b"more")
    assert (status, answer["error"], answer["offset"]) == (413, "too_large", 0)
    assert _no_file_for(scene, blob_id)  # refused before a byte was stored


async def test_a_chunked_body_past_the_declared_size(scene: Scene) -> None:
    blob, blob_id = await _declared(scene, 1000)

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield blob[:100] + os.urandom(900)

    status, answer = await patch(scene.mallory, blob_id, 0, pieces())
    assert (status, answer["error"], answer["offset"]) == (413, "too_large", 1000)
    sizes = [n for name, n in scene.blob_files().items() if blob_id.hex() in name]
    assert sizes == [1000]  # nothing past the declared size reached the disk
    # Asked where it stands, the relay checks the 1,000 bytes it holds: not the blob.
    with pytest.raises(RelayRefused) as discarded:
        await upload_status(scene.mallory, blob_id)
    assert (discarded.value.status, discarded.value.code) == (422, "digest_mismatch")
    assert _no_file_for(scene, blob_id)
    refused, _ = await _send_refused(scene, [blob_id])
    assert refused.code == "blob_not_found"


@pytest.mark.parametrize(
    "offset", ["-1", "99999999999999999999", "abc", "1e3", "0x0", "+0", "", " ", "0, 0", "0.0"]
)
async def test_a_hostile_upload_offset(scene: Scene, offset: str) -> None:
    blob, blob_id = await _declared(scene, 1000)
    status, answer = await patch(scene.mallory, blob_id, 0, blob, {"Upload-Offset": offset})
    assert (status, answer["error"]) == (400, "bad_offset")
    assert _no_file_for(scene, blob_id)


async def test_an_upload_offset_in_other_digits(scene: Scene) -> None:
    """Arabic-Indic, fullwidth and superscript digits are not an offset (only ASCII 0-9 is)."""
    blob, blob_id = await _declared(scene, 1000)
    for offset in ("\u0660", "\uff10", "\u00b9"):
        head = _patch_head(scene, blob_id, offset.encode(), len(blob))
        status, answer = _answer(await _raw_exchange(scene, head + blob))
        assert (status, answer["error"]) == (400, "bad_offset"), offset
    assert _no_file_for(scene, blob_id)


@on_both_backends
async def test_an_upload_offset_that_does_not_match(scene: Scene) -> None:
    blob, blob_id = await _declared(scene, 1000)
    assert (await patch(scene.mallory, blob_id, 0, blob[:300]))[0] == 200
    for offset in (0, 299, 301, 1000, 10**18):
        status, answer = await patch(scene.mallory, blob_id, offset, blob[300:])
        assert (status, answer["error"], answer["offset"]) == (409, "offset_mismatch", 300)
    assert (await upload_status(scene.mallory, blob_id))["offset"] == 300


@pytest.mark.parametrize(
    "asked",
    [
        "bytes=0-10,20-30",
        "bytes=0-,10-",
        "bytes=-10",
        "bytes=0-10",
        "bytes=5000-",
        "bytes=4999-",  # the last byte is 3999: at or past the end
        "bytes=99999999999999999999-",
        "items=0-",
        "bytes=\u0661-",
    ],
)
async def test_a_hostile_range(scene: Scene, asked: str) -> None:
    """On a blob Mallory may read (she sent it): 416, never a 206 of the wrong bytes."""
    blob = os.urandom(4000)
    blob_id, _ = await mallory_sends_a_file(scene, blob)
    if asked.isascii():
        status, body, _ = await scene.request(
            "GET", f"/v1/blobs/{blob_id.hex()}", headers={"Range": asked}
        )
    else:  # a header aiohttp's client would not send as UTF-8: straight onto the socket
        request = (
            f"GET /v1/blobs/{blob_id.hex()} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {scene.mallory.devices[0].token}\r\n".encode()
            + b"Range: "
            + asked.encode()
            + b"\r\n\r\n"
        )
        raw = await _raw_exchange(scene, request)
        status, body = int(raw.split(b" ")[1]), raw.partition(b"\r\n\r\n")[2]
    assert (status, wire.decode(body)["error"]) == (416, "bad_range")
    status, body, _ = await download(scene.mallory, blob_id, start=3999)
    assert (status, body) == (206, blob[3999:])  # the one good form still works


# -- blobs: binding them to messages -----------------------------------------------------------


async def _send_refused(scene: Scene, blobs: list[bytes]) -> tuple[RelayRefused, er.Header]:
    header, sealed = scene.mallory.seal(scene.bob, "with files")
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    refused = await scene.mallory_calls(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": blobs}
    )
    with pytest.raises(RelayRefused):  # nothing of the message was stored
        await scene.mallory.call("GET", f"/v1/messages/{header.message_id.hex()}/report")
    return refused, header


@on_both_backends
async def test_binding_someone_elses_blob_in_a_send(scene: Scene) -> None:
    own = await upload(scene.mallory, os.urandom(100))
    for blobs in ([scene.blob_id], [own, scene.blob_id], [scene.partial_id]):
        refused, _ = await _send_refused(scene, blobs)
        assert (refused.status, refused.code) == (404, "blob_not_found")
    header = await send_with(scene.mallory, scene.bob, "mine is still free", [own])
    assert header  # the refusal bound nothing: her own blob is still hers to send


@on_both_backends
async def test_binding_someone_elses_blob_in_a_replacement(scene: Scene) -> None:
    original = await scene.mallory.send(scene.bob, "to be replaced")
    header, sealed = scene.mallory.seal(scene.bob, "replacement", replaces=original.message_id)
    wraps = await scene.mallory.wraps_for(scene.bob, header, sealed.message_key)
    revocation = scene.mallory.revocation(original, header.message_id)
    refused = await scene.mallory_calls(
        "POST",
        f"/v1/messages/{original.message_id.hex()}/recall",
        {
            "revocation": revocation.signed,
            "replacement": {"envelope": sealed.envelope, "wraps": wraps, "blobs": [scene.blob_id]},
        },
    )
    assert (refused.status, refused.code) == (404, "blob_not_found")
    report = await scene.mallory.report(original.message_id)
    assert report["state"] == "live"  # refused whole: the recall did not happen either


@on_both_backends
async def test_binding_one_blob_to_two_messages(scene: Scene) -> None:
    blob_id, _ = await mallory_sends_a_file(scene, os.urandom(100))
    refused, _ = await _send_refused(scene, [blob_id])
    assert (refused.status, refused.code) == (409, "blob_bound")


@on_both_backends
async def test_listing_one_blob_twice_in_a_send(scene: Scene) -> None:
    blob_id = await upload(scene.mallory, os.urandom(100))
    refused, _ = await _send_refused(scene, [blob_id, blob_id])
    assert (refused.status, refused.code) == (400, "duplicate_blob")


@on_both_backends
async def test_binding_an_incomplete_blob(scene: Scene) -> None:
    blob, blob_id = await _declared(scene, 1000)
    for stored in (0, 999):
        if stored:
            assert (await patch(scene.mallory, blob_id, 0, blob[:stored]))[0] == 200
        refused, _ = await _send_refused(scene, [blob_id])
        assert (refused.status, refused.code) == (409, "blob_incomplete")


@on_both_backends
async def test_a_digest_mismatch_discards_the_upload(scene: Scene) -> None:
    blob, blob_id = await _declared(scene, 70_000)
    forged = blob[:-1] + bytes([blob[-1] ^ 1])
    status, answer = await patch(scene.mallory, blob_id, 0, forged)
    assert (status, answer["error"]) == (422, "digest_mismatch")
    assert _no_file_for(scene, blob_id)
    with pytest.raises(RelayRefused) as gone:
        await upload_status(scene.mallory, blob_id)
    assert gone.value.status == 404
    refused, _ = await _send_refused(scene, [blob_id])
    assert refused.code == "blob_not_found"
    assert await upload(scene.mallory, blob, blob_id) == blob_id  # the id and quota are free


@on_both_backends
async def test_racing_appends_to_one_blob(scene: Scene) -> None:
    """Twenty PATCHes at offset 0 at once: one is stored, whole; the rest are told the offset."""
    blob, blob_id = await _declared(scene, 300_000)
    results = await asyncio.gather(*(patch(scene.mallory, blob_id, 0, blob) for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * 19
    sizes = [n for name, n in scene.blob_files().items() if blob_id.hex() in name]
    assert sizes == [len(blob)]
    await send_with(scene.mallory, scene.bob, "raced", [blob_id])
    assert (await download(scene.bob, blob_id))[:2] == (200, blob)


@on_both_backends
async def test_rewriting_a_bound_blob(scene: Scene) -> None:
    blob = os.urandom(3000)
    blob_id, _ = await mallory_sends_a_file(scene, blob)
    for offset, data in ((0, os.urandom(3000)), (3000, b"more"), (1500, os.urandom(1500))):
        status, _ = await patch(scene.mallory, blob_id, offset, data)
        assert status in (409, 413)
    status, answer = await create(scene.mallory, blob_id, 10, bytes(32))
    assert (status, answer["error"]) == (409, "blob_exists")
    assert (await download(scene.bob, blob_id))[:2] == (200, blob)


# -- blobs: slow uploads, paths -----------------------------------------------------------------


async def test_a_silent_upload_is_cut_off(scene: Scene) -> None:
    """Twenty uploads that stop sending: each cut off after blob_read_timeout; Bob is served."""
    declared = [await _declared(scene, 10_000) for _ in range(20)]
    started = time.monotonic()
    exchanges = [
        asyncio.ensure_future(
            _raw_exchange(scene, _patch_head(scene, blob_id, b"0", len(blob)) + blob[:10])
        )
        for blob, blob_id in declared
    ]
    fetched = await asyncio.wait_for(scene.bob.call("GET", scene.message_path), 5)
    assert fetched["envelope"] == scene.envelope
    for raw in await asyncio.gather(*exchanges):
        status, answer = _answer(raw)
        assert (status, answer["error"], answer["offset"]) == (408, "request_timeout", 10)
    assert time.monotonic() - started < 8


EVIL_IDS = [
    "..%2F..%2Frelay.db",
    "%2e%2e%2f%2e%2e%2frelay.db",
    "..%5C..%5Crelay.db",
    "%00" + "0" * 30,
    "0" * 31 + "%00",
    "A" * 32,
    "0" * 33,
    "0" * 30 + "%2F0",
    "partial%2F" + "0" * 32,
    "complete",
]


@pytest.mark.parametrize("route", ["create-then-patch", "patch", "status", "download"])
async def test_path_traversal_looking_blob_ids(scene: Scene, route: str) -> None:
    assert scene.blob_dir is not None
    data_dir = scene.blob_dir.parent  # relay.db and the rest: nothing written beside them
    before = {p.name for p in data_dir.iterdir()}
    files = scene.blob_files()
    for evil in EVIL_IDS:
        if route == "create-then-patch":  # a msgpack id that is not 16 bytes
            status, answer = await scene.raw(
                "POST",
                "/v1/blobs",
                wire.encode({"blob_id": evil.encode(), "size": 10, "digest": bytes(32)}),
                token=scene.mallory.devices[0].token,
            )
            assert status == 400, answer
            continue
        method = "PATCH" if route == "patch" else "GET"
        suffix = "/upload" if route == "status" else ""
        url = yarl.URL(scene.target.url + f"/v1/blobs/{evil}{suffix}", encoded=True)
        headers = {"Authorization": f"Bearer {scene.mallory.devices[0].token}"}
        headers |= {"Content-Type": OCTETS, "Upload-Offset": "0"} if method == "PATCH" else {}
        async with scene.http.request(method, url, data=b"x" * 10, headers=headers) as response:
            status, body = response.status, await response.read()
        assert status in (400, 404, 405), (evil, status)
        answer = wire.decode(body)
        assert answer["error"]
        assert scene.leaks(answer) == []
    assert {p.name for p in data_dir.iterdir()} == before
    assert scene.blob_files() == files


def _cases(test: object) -> int:
    """How many attacks a test makes, on one backend: the same attack on two counts once."""
    marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    values = [m.args[1] for m in marks if m.args[0] != "backend"]
    if not values:
        return 1
    if marks[0].args[0] == ("name", "backend"):
        return sum(1 for case in values[0] if case.values[1] == "sqlite")
    return len(values[0])


ATTACKS = sum(
    _cases(test)
    for name, test in list(globals().items())
    if name.startswith("test_") and "catalogue" not in name
)


def test_the_catalogue_has_at_least_forty_attacks() -> None:
    assert ATTACKS >= 40  # docs/reliability.md gives the number
