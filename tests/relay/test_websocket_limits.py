"""What a relay does when websockets are too many, too chatty or silent.

The global cap answers 503 ``busy``; the per-user cap 429
``too_many_websockets``; a device that is already connected may always
reconnect (its new connection replaces the old).  A peer that stops answering
pings is disconnected while a live one beside it stays; a flood of ack frames
costs a handful of database writes, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e_recall import wire

from driver import Clock, Person, Relay, start_relay


@pytest.fixture
async def small(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> AsyncIterator[tuple[Relay, Person, Person, Person]]:
    relay = await start_relay(
        tmp_path,
        Clock(),
        max_websockets=3,
        max_websockets_per_user=2,
        websocket_idle_timeout="1s",
        **database_options,
    )
    people = tuple(Person(name, relay, http) for name in ("alice", "bob", "carol"))
    for person in people:
        await person.add_device()
    yield relay, *people  # type: ignore[misc]
    await relay.runner.cleanup()


async def _upgrade(person: Person, device: int = 0) -> tuple[int, dict[str, Any], str | None]:
    """Ask for a websocket the way a client does; the refusal's status, body and Retry-After."""
    headers = {
        "Authorization": f"Bearer {person.devices[device].token}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with person.http.get(person.relay.url + "/v1/ws", headers=headers) as response:
        assert response.status != 101, "the upgrade was accepted"
        body = wire.decode(await response.read())
        return response.status, body, response.headers.get("Retry-After")


async def _first_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), timeout=5)
    assert message.type is aiohttp.WSMsgType.BINARY, message
    frame = wire.decode(message.data)
    assert isinstance(frame, dict)
    return frame


async def _eventually(check: Any, what: str, limit: float = 15.0) -> None:
    """Wait until ``check()`` holds (a liveness guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not check():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def test_the_global_cap_answers_busy_but_a_connected_device_may_reconnect(
    small: tuple[Relay, Person, Person, Person],
) -> None:
    relay, alice, bob, carol = small
    await alice.add_device()
    async with alice.websocket(0) as a0, alice.websocket(1) as a1, bob.websocket() as b0:
        for ws in (a0, a1, b0):
            assert (await _first_frame(ws))["type"] == "caught_up"
        assert relay.services.hub.count == 3
        status, body, retry_after = await _upgrade(carol)
        assert (status, body["error"]) == (503, "busy")
        assert "live connections" in body["message"]
        assert retry_after is not None
        assert int(retry_after) > 0
        async with bob.websocket() as again:  # bob's device replaces its own connection
            assert (await _first_frame(again))["type"] == "caught_up"
            assert relay.services.hub.count == 3
    await _eventually(lambda: relay.services.hub.count == 0, "every websocket released")
    async with carol.websocket() as ws:  # room again
        assert (await _first_frame(ws))["type"] == "caught_up"


async def test_one_user_cannot_take_more_than_their_share(
    small: tuple[Relay, Person, Person, Person],
) -> None:
    relay, alice, bob, _ = small
    for _ in range(2):
        await alice.add_device()
    async with alice.websocket(0) as first, alice.websocket(1) as second:
        for ws in (first, second):
            assert (await _first_frame(ws))["type"] == "caught_up"
        status, body, retry_after = await _upgrade(alice, 2)
        assert (status, body["error"]) == (429, "too_many_websockets")
        assert "2" in body["message"]
        assert retry_after is not None
        async with bob.websocket() as other:  # someone else still gets the room left
            assert (await _first_frame(other))["type"] == "caught_up"
    await _eventually(lambda: relay.services.hub.count == 0, "every websocket released")
    async with alice.websocket(2) as third:
        assert (await _first_frame(third))["type"] == "caught_up"


async def test_a_silent_peer_is_disconnected_and_a_live_one_stays(
    small: tuple[Relay, Person, Person, Person],
) -> None:
    relay, alice, bob, carol = small
    url = relay.url.replace("http", "ws", 1) + "/v1/ws"
    silent = await bob.http.ws_connect(  # never answers the relay's pings
        url, headers={"Authorization": f"Bearer {bob.devices[0].token}"}, autoping=False
    )
    live_frames: list[dict[str, Any]] = []
    async with carol.websocket() as live:

        async def keep_reading() -> None:  # reading is what makes aiohttp answer pings
            async for message in live:
                if message.type is aiohttp.WSMsgType.BINARY:
                    live_frames.append(wire.decode(message.data))

        reader = asyncio.create_task(keep_reading())
        try:
            kinds = []
            while True:
                message = await asyncio.wait_for(silent.receive(), timeout=15)
                kinds.append(message.type)
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
            assert aiohttp.WSMsgType.PING in kinds  # it was asked, and did not answer
            await _eventually(lambda: relay.services.hub.count == 1, "the silent peer released")
            assert not live.closed
            header = await alice.send(carol, "the live connection still gets this")
            await _eventually(
                lambda: any(f.get("message_id") == header.message_id for f in live_frames),
                "the live connection got the notice",
            )
        finally:
            reader.cancel()
            await silent.close()


async def test_a_flood_of_ack_frames_is_written_in_a_few_batches(
    small: tuple[Relay, Person, Person, Person],
) -> None:
    relay, alice, bob, _ = small
    for index in range(5):
        await alice.send(bob, f"to be acknowledged {index}")
    events = await bob.sync()
    assert len(events) == 5
    last = events[-1]["seq"]
    metrics = relay.services.metrics

    def commits() -> float:
        samples = metrics.db_batch_size.collect()[0].samples
        return next(s.value for s in samples if s.name.endswith("_count"))

    async with bob.websocket(cursor=last) as ws:
        assert (await _first_frame(ws))["type"] == "caught_up"
        before = commits()
        for _ in range(100):  # a client acknowledging everything, over and over
            for event in events:
                await ws.send_bytes(wire.encode({"type": "ack", "seq": event["seq"]}))
        await ws.send_str("end")  # frames are handled in order: after this, every ack was seen
        closing = await asyncio.wait_for(ws.receive(), timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
    await relay.services.inbox.drain()
    writes = commits() - before
    assert 1 <= writes < 50, f"{writes} writes for 500 ack frames"
    assert await bob.sync() == []  # acknowledged up to the highest seq sent
    bob.devices[0].cursor = 0
    assert await bob.sync() == []
