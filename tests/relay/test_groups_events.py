"""Group events on real WebSockets: every device of every member, before and after a change."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from group_driver import Group, create_group

from e2e_recall import GroupAction, wire

from driver import Person, Relay


async def _frames(ws: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` event frames (after caught_up), payloads decoded."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            frame = wire.decode(await ws.receive_bytes())
            if frame["type"] == "event":
                events.append({**frame, "payload": wire.decode(frame["payload"])})
    return events


async def _caught_up(ws: Any) -> None:
    async with asyncio.timeout(5):
        while wire.decode(await ws.receive_bytes())["type"] != "caught_up":
            pass


async def test_changes_reach_every_device_of_every_member_and_offline_ones_catch_up(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob, carol, dave = (Person(n, relay, http) for n in ("alice", "bob", "carol", "dave"))
    for person, devices in ((alice, 2), (bob, 3), (carol, 2), (dave, 1)):
        for _ in range(devices):
            await person.add_device()

    # Online: alice's second device, bob's first two, carol's first; the rest are offline.
    online = [(alice, 1), (bob, 0), (bob, 1), (carol, 0)]
    sockets = [await p.websocket(device=d).__aenter__() for p, d in online]
    try:
        for ws in sockets:
            await _caught_up(ws)
        group = await create_group(alice, bob)
        await group.change(alice, GroupAction.ADD, [carol])
        await group.change(alice, GroupAction.REMOVE, [bob])

        seen = {}
        for (person, device), ws in zip(online, sockets, strict=True):
            wanted = {"alice": 3, "bob": 3, "carol": 2}[person.name]
            seen[(person.name, device)] = await _frames(ws, wanted)
        for events in seen.values():
            assert all(e["kind"] == "group" and e["message_id"] == group.group_id for e in events)
            for event in events:
                payload = event["payload"]
                assert payload["group_id"] == group.group_id
                assert payload["change"] == group.changes[payload["seq"]].signed
        assert [e["payload"]["seq"] for e in seen[("alice", 1)]] == [0, 1, 2]
        # bob hears of his own removal (he was a member before it), carol of what followed her add
        assert [e["payload"]["seq"] for e in seen[("bob", 1)]] == [0, 1, 2]
        assert [e["payload"]["seq"] for e in seen[("carol", 0)]] == [1, 2]
    finally:
        for ws in sockets:
            await ws.close()

    # Offline devices find the same events when they come back; dave, never a member, nothing.
    assert [e["payload"]["seq"] for e in await alice.sync(device=0)] == [0, 1, 2]
    assert [e["payload"]["seq"] for e in await bob.sync(device=2)] == [0, 1, 2]
    assert [e["payload"]["seq"] for e in await carol.sync(device=1)] == [1, 2]
    assert await dave.sync() == []

    # After his removal bob hears nothing more of the group.
    await group.change(alice, GroupAction.ADD, [dave])
    assert await bob.sync(device=2) == []
    assert [e["payload"]["seq"] for e in await dave.sync()] == [3]
    assert [e["payload"]["seq"] for e in await carol.sync(device=1)] == [3]


async def test_a_group_change_can_be_made_and_read_on_the_websocket(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device()
    await bob.add_device()
    group = Group(members=[])
    create = group.sign(alice, GroupAction.CREATE, [alice, bob])
    async with alice.websocket() as ws:
        await _caught_up(ws)
        request = {
            "type": "request",
            "id": 7,
            "op": "group_change",
            "message_id": group.group_id,
            "body": {"change": create.signed},
        }
        await ws.send_bytes(wire.encode(request))
        await ws.send_bytes(wire.encode({**request, "id": 8, "op": "group", "body": None}))
        answers: dict[int, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(answers) < 2:
                frame = wire.decode(await ws.receive_bytes())
                if frame["type"] == "response":
                    answers[frame["id"]] = frame
        assert (answers[7]["status"], answers[7]["body"]) == (201, {"seq": 0, "created": True})
        # The read may run before or after the write commits (requests run concurrently).
        assert answers[8]["status"] in (200, 404)
        await ws.send_bytes(wire.encode({**request, "id": 9, "op": "group", "body": None}))
        async with asyncio.timeout(5):
            while True:
                frame = wire.decode(await ws.receive_bytes())
                if frame["type"] == "response" and frame["id"] == 9:
                    break
        assert frame["status"] == 200
        assert frame["body"] == {"group_id": group.group_id, "changes": [create.signed]}
