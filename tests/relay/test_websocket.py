"""Push over WebSocket: notices, revocations and reports, resumed from a cursor."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from e2e_recall import wire
from relay.hub import REPLACED

from driver import MINUTE, Person, Relay


async def _frames_until_caught_up(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Event frames up to the next 'caught_up' frame."""
    events = []
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=5)
        assert message.type is aiohttp.WSMsgType.BINARY, message
        frame = wire.decode(message.data, limits=wire.Limits(max_size=1 << 22, max_bin=1 << 21))
        if frame["type"] == "caught_up":
            return events
        assert frame["type"] == "event"
        events.append({**frame, "payload": wire.decode(frame["payload"])})


async def test_a_connected_device_is_told_at_once_and_never_sees_content(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    async with bob.websocket() as ws:
        assert await _frames_until_caught_up(ws) == []
        header = await alice.send(bob, "the secret plan")
        events = await _frames_until_caught_up(ws)
    assert [e["kind"] for e in events] == ["message"]
    notice = events[0]["payload"]
    assert set(notice) == {
        "message_id",
        "conversation_id",
        "sender",
        "sender_device",
        "size",
        "sent_at",
        "key_id",  # which of Bob's wrapping keys the wrap is made to (relay/keys)
    }
    assert notice["message_id"] == header.message_id
    assert notice["sender"] == alice.user_id
    assert notice["key_id"] == bob.devices[0].secrets.wrap_key.public_key.key_id


async def test_an_offline_device_gets_its_revocation_on_reconnect_exactly_once(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    header = await alice.send(bob, "regrettable")
    async with bob.websocket() as ws:
        events = await _frames_until_caught_up(ws)
        bob.devices[0].cursor = events[-1]["seq"]
    await bob.read(alice, header.message_id)  # Bob opened it, then went offline
    alice.relay.clock.advance(MINUTE)
    await alice.recall(header)  # while Bob is offline
    async with bob.websocket() as ws:  # Bob reconnects from where he was
        resumed = await _frames_until_caught_up(ws)
    assert [(e["kind"], e["message_id"]) for e in resumed] == [("revocation", header.message_id)]
    assert all(e["seq"] > bob.devices[0].cursor for e in resumed)
    async with bob.websocket() as ws:  # the same cursor again: the same events, no new ones
        again = await _frames_until_caught_up(ws)
    assert [e["seq"] for e in again] == [e["seq"] for e in resumed]


async def test_acknowledged_events_are_gone(people: tuple[Person, Person]) -> None:
    alice, bob = people
    await alice.send(bob, "one")
    await alice.send(bob, "two")
    async with bob.websocket(cursor=0) as ws:
        events = await _frames_until_caught_up(ws)
        assert len(events) == 2
        await ws.send_bytes(wire.encode({"type": "ack", "seq": events[0]["seq"]}))
        await asyncio.sleep(0.05)
    async with bob.websocket(cursor=0) as ws:
        remaining = await _frames_until_caught_up(ws)
    assert [e["seq"] for e in remaining] == [events[1]["seq"]]


async def test_the_sender_watches_the_report_change_live(people: tuple[Person, Person]) -> None:
    alice, bob = people
    async with alice.websocket() as ws:
        await _frames_until_caught_up(ws)
        header = await alice.send(bob, "watch this")
        await bob.read(alice, header.message_id)
        seen: list[str] = []
        while "opened" not in seen:
            for event in await _frames_until_caught_up(ws):
                assert event["kind"] == "report"
                seen.append(event["payload"]["devices"][0]["state"])
        await alice.recall(header)
        while seen[-1] != "pending":
            seen.extend(
                e["payload"]["devices"][0]["state"] for e in await _frames_until_caught_up(ws)
            )
    assert seen == ["sealed", "opened", "pending"]


async def test_a_new_connection_of_a_device_replaces_the_old_one(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    hub = alice.relay.services.hub
    async with bob.websocket() as first:
        await _frames_until_caught_up(first)
        async with bob.websocket() as second:
            await _frames_until_caught_up(second)
            closing = await asyncio.wait_for(first.receive(), timeout=5)
            assert closing.type is aiohttp.WSMsgType.CLOSE, closing
            assert closing.data == REPLACED
            assert closing.extra == "replaced by a newer connection"
            assert hub.count == 1
            header = await alice.send(bob, "to the newest connection")
            got = await _frames_until_caught_up(second)
    assert [e["message_id"] for e in got] == [header.message_id]


async def test_events_pushed_from_memory_arrive_once_in_order_without_gaps(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    """Concurrent senders while Bob's socket is live: what is pushed is exactly his queue."""
    senders = [Person(f"s{i}", relay, http) for i in range(3)]
    bob = Person("bob", relay, http)
    await bob.add_device()
    for sender in senders:
        await sender.add_device()
    async with bob.websocket(cursor=0) as ws:
        first = wire.decode((await asyncio.wait_for(ws.receive(), 10)).data)
        assert first["type"] == "caught_up"

        async def burst(sender: Person) -> None:
            for index in range(40):
                await sender.send(bob, f"burst {index}")

        await asyncio.gather(*(burst(s) for s in senders))
        pushed: list[int] = []
        while len(pushed) < 120:
            frame = wire.decode((await asyncio.wait_for(ws.receive(), 10)).data)
            if frame["type"] == "event":
                pushed.append(frame["seq"])
    queued = [
        e.seq
        for e in await relay.services.storage.events_since(
            bob.devices[0].secrets.device_id, 0, 1000
        )
    ]
    assert pushed == sorted(set(pushed))  # in order, none twice
    assert pushed == queued  # and none missing
