"""The message operations on a device's WebSocket: the same answers as HTTP, paired by id."""

from __future__ import annotations

from typing import Any

import pytest
from ws_close import received_close_code

from e2e_recall import wire

from driver import MINUTE, Person, states
from ws_client import Socket


async def _socket(person: Person, device: int = 0) -> Socket:
    return await Socket.open(person, device)


async def test_a_whole_exchange_over_websockets(people: tuple[Person, Person]) -> None:
    alice, bob = people
    alice_ws, bob_ws = await _socket(alice), await _socket(bob)
    header, sealed = alice.seal(bob, "over the socket")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    sent = await alice_ws.call(
        "send", body={"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    assert sent["status"] == 201
    assert sent["body"]["message_id"] == header.message_id
    fetched = await bob_ws.call("fetch", header.message_id)
    assert fetched == {
        "type": "response",
        "id": fetched["id"],
        "status": 200,
        "body": {"envelope": sealed.envelope, "key_id": wraps[0]["key_id"]},
    }
    opened = await bob_ws.call("open", header.message_id, {})
    assert opened["status"] == 200
    assert opened["body"]["wrap"] == wraps[0]["wrap"]
    alice.relay.clock.advance(MINUTE)
    revocation = alice.revocation(header)
    recalled = await alice_ws.call(
        "recall", header.message_id, {"revocation": revocation.signed, "replacement": None}
    )
    assert recalled["status"] == 200
    assert states(recalled["body"]["report"]) == ["pending"]
    message_id, receipt = bob.receipt_for(alice, revocation.signed, opened_at=None)
    accepted = await bob_ws.call("receipt", message_id, {"receipt": receipt})
    assert accepted["status"] == 200
    report = await alice_ws.call("report", header.message_id)
    assert states(report["body"]) == ["deleted"]
    assert any(e["kind"] == "message" for e in bob_ws.events)  # events flow beside answers
    await alice_ws.ws.close()
    await bob_ws.ws.close()


async def test_refusals_carry_the_http_status_code_and_sentence(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "not yours to recall")
    bob_ws = await _socket(bob)
    refused = await bob_ws.call(
        "recall",
        header.message_id,
        {"revocation": bob.revocation(header).signed, "replacement": None},
    )
    assert refused["status"] == 403
    assert refused["body"]["error"]
    assert refused["body"]["message"].endswith(".")
    missing = await bob_ws.call("fetch", b"\x00" * 16)
    assert (missing["status"], missing["body"]["error"]) == (404, "not_found")
    unknown = await bob_ws.call("frobnicate", header.message_id)
    assert (unknown["status"], unknown["body"]["error"]) == (400, "unknown_op")
    no_id = await bob_ws.call("open", None, {})
    assert (no_id["status"], no_id["body"]["error"]) == (400, "bad_id")
    bad_body = await bob_ws.call("receipt", header.message_id, {"receipt": "text, not bytes"})
    assert bad_body["status"] == 400
    await bob_ws.ws.close()


async def test_pipelined_sends_are_each_answered_once_and_stored_once(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    alice_ws = await _socket(alice)
    bodies = {}
    for index in range(150):  # more than the 64 a connection may have in flight
        header, sealed = alice.seal(bob, f"pipelined {index}")
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        request_id = await alice_ws.ask(
            "send", body={"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
        bodies[request_id] = header.message_id
    for request_id, message_id in bodies.items():
        answer = await alice_ws.answer(request_id)
        assert answer["status"] == 201
        assert answer["body"]["message_id"] == message_id
    notices = [e for e in await bob.sync() if e["kind"] == "message"]
    assert sorted(e["message_id"] for e in notices) == sorted(bodies.values())
    await alice_ws.ws.close()


async def test_a_retried_send_over_the_socket_is_stored_once(people: tuple[Person, Person]) -> None:
    alice, bob = people
    alice_ws = await _socket(alice)
    header, sealed = alice.seal(bob, "twice")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    first, second = await alice_ws.call("send", body=body), await alice_ws.call("send", body=body)
    assert (first["status"], first["body"]["created"]) == (201, True)
    assert (second["status"], second["body"]["created"]) == (200, False)
    await alice_ws.ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "request", "op": "send", "message_id": None, "body": None},
        {"type": "request", "id": -1, "op": "send", "message_id": None, "body": None},
        {"type": "request", "id": 1, "op": "send", "message_id": b"short", "body": None},
        {"type": "request", "id": 1, "op": "send", "message_id": None, "body": None, "x": 1},
        {"type": "request", "id": 1, "op": "send"},
    ],
    ids=["no_id", "negative_id", "short_message_id", "unknown_field", "missing_keys"],
)
async def test_a_malformed_request_frame_closes_the_connection(
    people: tuple[Person, Person], frame: dict[str, Any]
) -> None:
    alice, _ = people
    async with alice.websocket() as ws:
        await ws.send_bytes(wire.encode(frame))
        assert await received_close_code(ws) == 1008
