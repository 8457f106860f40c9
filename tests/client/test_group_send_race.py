"""A group's members change while a message to it is on its way: the client wraps again.

Two relay processes share one database.  Alice's phone talks to the first
through a small in-process gateway that, just before it forwards her
``POST /v1/messages``, lets her laptop change the group through the second
process.  So the phone's wraps were made for the membership before the
change, and the relay that stores the message hears of the change only
from the database: the send is refused (``409 group_changed``), the phone
fetches the chain, wraps the same key again to the members it now names and
sends the same envelope, which is accepted.  A membership that changes
before every attempt fails the message after a bounded number of tries,
with a sentence that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from client.client import Client
from client.groups import add_members, create_group, find_group, remove_members, rename_group
from client.sending import REWRAPS
from e2e_recall import SigningKey

from relay_process import RelayProcess, free_port

_FORWARDED = ("Authorization", "Content-Type", "Accept")
Hook = Callable[[], Awaitable[None]]


class Gateway:
    """A reverse proxy on loopback, in the test's event loop, that can act before a send."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sends = 0  # POST /v1/messages forwarded
        self.before_send: Hook | None = None
        self.url = ""

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if (request.method, request.path) == ("POST", "/v1/messages"):
            self.sends += 1
            if self.before_send is not None:
                await self.before_send()
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as answer:
            data = await answer.read()
            kept = {"Content-Type": answer.headers.get("Content-Type", "")}
            return web.Response(status=answer.status, body=data, headers=kept)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._http.close()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    data = tmp_path / "relay-data"
    first = RelayProcess(tmp_path / "relay-a", data, port=free_port())
    second = RelayProcess(tmp_path / "relay-b", data, port=free_port())
    try:
        first.start()
        yield first, second.start()
    finally:
        second.kill()
        first.kill()


@dataclass
class Scene:
    gateway: Gateway
    phone: Client  # alice, through the gateway to the first relay
    laptop: Client  # alice too, on the second relay
    bob: Client
    carol: Client
    dave: Client


@pytest.fixture
async def scene(tmp_path: Path, relays: tuple[RelayProcess, RelayProcess]) -> AsyncIterator[Scene]:
    first, second = relays
    gateway = Gateway(first.url())
    await gateway.start()
    made: list[Client] = []

    def new(name: str, identity: SigningKey | None = None) -> Client:
        client = Client.create(
            tmp_path / name, f"{name} passphrase", strength="interactive", identity=identity
        )
        made.append(client)
        return client

    try:
        phone = new("alice")
        await phone.register(gateway.url, "alice")
        laptop = new("alice-laptop", identity=phone.core.keys.identity)
        await laptop.register(second.url(), "alice", approver=phone)
        others = {name: new(name) for name in ("bob", "carol", "dave")}
        for name, person in others.items():
            await person.register(first.url(), name)
        yield Scene(gateway, phone, laptop, **others)
    finally:
        for client in made:
            await client.close()
        await gateway.stop()


async def _team(scene: Scene) -> None:
    """Alice's group with bob and carol, known as 'team' on both of her devices."""
    for device in (scene.phone, scene.laptop):
        for name in ("bob", "carol", "dave"):
            await device.add_contact(name, name)
    group = await create_group(scene.phone.core, "team", ["bob", "carol"])
    await scene.laptop.sync()
    rename_group(scene.laptop.core, group.group_id.hex()[:8], "team")
    sent = await scene.phone.send("team", "warms the first relay's membership cache")
    assert sent.problem is None


async def _inbox(person: Client) -> list[bytes]:
    await person.sync()
    return [entry.message_id for entry in person.inbox()]


async def test_a_member_removed_just_before_the_send_is_stored_gets_nothing(scene: Scene) -> None:
    await _team(scene)
    removed: list[bool] = []

    async def remove_carol_first() -> None:
        if not removed:
            removed.append(True)
            await remove_members(scene.laptop.core, "team", ["carol"])

    scene.gateway.before_send, before = remove_carol_first, scene.gateway.sends
    sent = await scene.phone.send("team", "carol is out")
    assert (sent.queued, sent.problem) == (False, None)
    assert scene.gateway.sends - before == 2  # refused once (group_changed), then accepted
    report = await scene.phone.report(sent.message_id)
    assert {line.person for line in report.lines} == {"bob", "you"}
    assert sent.message_id not in await _inbox(scene.carol)
    assert sent.message_id in await _inbox(scene.bob)
    assert (await scene.bob.open_message(sent.message_id)).text == "carol is out"


async def test_a_member_added_just_before_the_send_is_stored_gets_it(scene: Scene) -> None:
    await _team(scene)
    added: list[bool] = []

    async def add_dave_first() -> None:
        if not added:
            added.append(True)
            await add_members(scene.laptop.core, "team", ["dave"])

    scene.gateway.before_send, before = add_dave_first, scene.gateway.sends
    sent = await scene.phone.send("team", "welcome, dave")
    assert (sent.queued, sent.problem) == (False, None)
    assert scene.gateway.sends - before == 2
    assert sent.message_id in await _inbox(scene.dave)
    assert (await scene.dave.open_message(sent.message_id)).text == "welcome, dave"


async def test_a_membership_that_changes_before_every_attempt_fails_the_send_clearly(
    scene: Scene,
) -> None:
    await _team(scene)

    async def toggle_dave() -> None:
        laptop = scene.laptop.core
        if scene.dave.user_id in find_group(laptop, "team").member_ids():
            await remove_members(laptop, "team", ["dave"])
        else:
            await add_members(laptop, "team", ["dave"])

    scene.gateway.before_send, before = toggle_dave, scene.gateway.sends
    sent = await scene.phone.send("team", "never settles")
    assert scene.gateway.sends - before == REWRAPS + 1  # bounded: then it gives up
    assert sent.queued is False
    assert sent.problem is not None
    assert "kept changing" in sent.problem
    assert "it was not sent" in sent.problem
    row = scene.phone.core.store.message(sent.message_id)
    assert row is not None
    assert (row.state, row.problem) == ("failed", sent.problem)
    assert scene.phone.core.store.outbox() == []  # not retried behind the user's back
    scene.gateway.before_send = None
    for person in (scene.bob, scene.carol, scene.dave):
        assert sent.message_id not in await _inbox(person)
