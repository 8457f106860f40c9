"""A send whose answer was lost is retried with the same bytes, and arrives once.

Between Alice's ``e2e-recall`` and the relay process stands a small reverse
proxy, as an operator's would: it forwards every request and records what it
carried.  Once, it loses the relay's answer after the relay has acted on the
request (a 502, like a proxy whose upstream timed out), which is exactly the
case where a client cannot know whether its message was stored.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import aiohttp
from aiohttp import web

from e2e_recall import wire

from cli_harness import Person
from relay_process import RelayProcess

_FORWARDED = ("Authorization", "Content-Type", "Accept")


class Gateway:
    """A recording reverse proxy on 127.0.0.1, run on its own thread's event loop."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str, bytes]] = []
        self._lose: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def lose_next_answer(self, method: str, path: str) -> None:
        with self._lock:
            self._lose.add((method, path))

    def sent(self, method: str, path: str) -> list[bytes]:
        with self._lock:
            return [body for m, p, body in self.requests if (m, p) == (method, path)]

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.requests.append((request.method, request.path, body))
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as answer:
            data = await answer.read()
            kept = {"Content-Type": answer.headers.get("Content-Type", "")}
            status = answer.status
        with self._lock:
            lost = (request.method, request.path) in self._lose
            self._lose.discard((request.method, request.path))
        if lost:  # the relay acted on it; its answer never reaches the client
            return web.Response(status=502, text="upstream timed out")
        return web.Response(status=status, body=data, headers=kept)

    async def _start(self) -> None:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, listener).start()
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._http.close()

    def __enter__(self) -> Gateway:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop.close()


def alice_behind(gateway: Gateway, tmp_path: Path, bob: Person) -> Person:
    """Alice registered through the gateway; she and Bob have each other pinned."""
    alice = Person(tmp_path / "people", "alice")
    alice.run("init", "--kdf", "interactive")
    alice.run("register", gateway.url, "--handle", "alice")
    alice.run("contacts", "add", "bob", "bob")
    bob.run("contacts", "add", "alice", "alice")
    return alice


def test_a_send_whose_answer_was_lost_is_retried_byte_for_byte_and_arrives_once(
    tmp_path: Path, relay: RelayProcess, bob: Person
) -> None:
    with Gateway(relay.url()) as gateway:
        alice = alice_behind(gateway, tmp_path, bob)
        gateway.lose_next_answer("POST", "/v1/messages")
        queued = alice.run("send", "bob", "only once, please", "--json", expect=3).json()
        assert queued["queued"] is True
        (waiting,) = bob.run("inbox", "--json").json()  # the relay did store the first try
        assert waiting["id"] == queued["id"]

        assert alice.run("sync", "--json").json()["queued"] == 0  # the retry, answered now
        alice.run("sync")  # and nothing is sent a third time
        first, retry = (wire.decode(body) for body in gateway.sent("POST", "/v1/messages"))
        assert isinstance(first, dict)
        assert isinstance(retry, dict)
        assert retry["envelope"] == first["envelope"]  # the same ciphertext, never sealed again
        assert retry["wraps"] == first["wraps"]  # and the same wrapped keys
        (mine,) = alice.run("history", "bob", "--json").json()
        assert (mine["id"], mine["state"]) == (queued["id"], "sent")

    assert bob.run("inbox", "--json").json() == [waiting]  # still exactly one message
    assert bob.run("open", queued["id"][:8], "--json").json()["text"] == "only once, please"
