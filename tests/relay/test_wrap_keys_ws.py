"""Wrapping-key rotation and key status as WebSocket ops: the HTTP routes' rules, answers and
refusals, on a device's real WebSocket to a relay on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er

from driver import Clock, Person, Relay, RelayRefused, start_relay
from rotation_cases import DAY, LIFETIME, bad_rotations, issue
from ws_client import Socket


@pytest.fixture
async def pair(relay: Any, http: Any) -> tuple[Person, Person]:
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device(handle="alice", lifetime=LIFETIME)
    await bob.add_device(handle="bob", lifetime=LIFETIME)
    return alice, bob


async def test_a_rotation_over_the_websocket_is_current_at_once(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    bob.relay.clock.advance(7 * DAY)
    dev = bob.devices[0]
    old, new = dev.secrets.wrap_key, er.WrapPrivateKey.generate(er.WrapSuite.X25519)
    certificate = issue(bob, dev, new)
    socket = await Socket.open(bob)
    try:
        answer = await socket.call("certificate", body={"certificate": certificate})
        assert answer["status"] == 201
        assert answer["body"] == {
            "created": True,
            "key_id": new.public_key.key_id,
            "expires_at": bob.relay.clock.now + LIFETIME,
        }
        (served,) = await alice.lookup(bob)
        assert served.signed == certificate  # the directory serves it, over HTTP
        again = await socket.call("certificate", body={"certificate": certificate})
        assert (again["status"], again["body"]["created"]) == (200, False)
        status = await socket.call("keys")
        assert status["status"] == 200
        assert status["body"] == await bob.call("GET", "/v1/devices/self/keys")
        keys = {k["key_id"]: k["current"] for k in status["body"]["keys"]}
        assert keys == {new.public_key.key_id: True, old.public_key.key_id: False}
    finally:
        await socket.ws.close()
    dev.secrets, dev.certificate = replace(dev.secrets, wrap_key=new), certificate


async def test_bad_rotations_over_the_websocket_get_the_codes_http_gives(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    bob.relay.clock.advance(DAY)
    before = bob.devices[0].certificate
    socket = await Socket.open(bob)
    try:
        for certificate, status, code in bad_rotations(alice, bob):
            answer = await socket.call("certificate", body={"certificate": certificate})
            assert (answer["status"], answer["body"]["error"]) == (status, code), code
            assert answer["body"]["message"].endswith(".")
            with pytest.raises(RelayRefused) as over_http:
                await bob.call("POST", "/v1/devices/self/certificate", {"certificate": certificate})
            assert (over_http.value.status, over_http.value.code) == (status, code)
            assert over_http.value.message == answer["body"]["message"]
        no_body = await socket.call("certificate")
        assert no_body["status"] == 400
        wrong_field = await socket.call("certificate", body={"cert": b""})
        assert wrong_field["status"] == 400
    finally:
        await socket.ws.close()
    (served,) = await alice.lookup(bob)
    assert served.signed == before  # nothing changed


@pytest.fixture
async def limited(
    tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Relay, Person]]:
    relay = await start_relay(tmp_path, Clock(), requests_per_minute=20)
    bob = Person("bob", relay, http)
    await bob.add_device(lifetime=LIFETIME)
    yield relay, bob
    await relay.runner.cleanup()


async def test_the_key_ops_count_against_the_users_request_rate(
    limited: tuple[Relay, Person],
) -> None:
    _, bob = limited
    socket = await Socket.open(bob)
    try:
        answers = [await socket.call("keys") for _ in range(40)]
    finally:
        await socket.ws.close()
    refused = [a for a in answers if a["status"] != 200]
    assert refused, "forty key-status requests in a row stayed under a 20 a minute limit"
    assert {(a["status"], a["body"]["error"]) for a in refused} == {(429, "rate_limited")}
    assert all(a["body"]["retry_after"] > 0 for a in refused)
    with pytest.raises(RelayRefused) as over_http:  # one bucket for both transports
        await bob.call("GET", "/v1/devices/self/keys")
    assert (over_http.value.status, over_http.value.code) == (429, "rate_limited")
