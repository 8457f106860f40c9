"""The fuzz target for every request handler: the real relay application over loopback.

One relay (``create_app``, a temporary SQLite database) serves on 127.0.0.1
for the whole run, with two registered people and a message between them.
Each input picks a route, a token (valid, none, or garbled), a message id
(the real one, or from the input) and a body (the rest of the input), and is
sent over HTTP with a kept-alive connection.  The relay must answer every
input with a status below 500 and, for a refusal, a msgpack map with an
error code and a sentence; anything else is a crash.  Its routing, its
middleware and every handler behind them run in this process, so the
fuzzer's coverage includes them.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from e2e_recall import wire
from e2e_recall.errors import E2ERecallError
from e2e_recall.identity import fingerprint
from relay.app import create_app
from relay.config import load_config
from relay.services import SERVICES

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS / "relay"), str(_TESTS / "support")]

ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/challenge"),
    ("POST", "/v1/register"),
    ("POST", "/v1/login"),
    ("POST", "/v1/logout"),
    ("GET", "/v1/users/{user}"),
    ("GET", "/v1/handles/{handle}"),
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/{id}"),
    ("POST", "/v1/messages/{id}/open"),
    ("POST", "/v1/messages/{id}/receipt"),
    ("POST", "/v1/messages/{id}/recall"),
    ("GET", "/v1/messages/{id}/report"),
    ("GET", "/v1/sync"),
    ("POST", "/v1/sync/ack"),
)


class HandlerCrash(Exception):
    """The relay answered with a 5xx, or with something that is not a proper refusal."""


class RelayUnderFuzz:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())
        atexit.register(self.close)

    def close(self) -> None:
        async def stop() -> None:
            await self.http.close()
            await self.runner.cleanup()

        self.loop.run_until_complete(stop())
        self.work.cleanup()

    async def _start(self) -> None:
        from driver import Person  # the test driver speaks the protocol with e2e_recall only

        self.work = tempfile.TemporaryDirectory(prefix="fuzz-relay-")
        config = load_config(
            env={},
            flags={
                "data_dir": self.work.name,
                "port": 0,
                "requests_per_minute": 0,
                "address_requests_per_minute": 0,
                "log_level": "error",
            },
        )
        self.app = create_app(config)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        services = self.app[SERVICES]
        from relay_process import Target  # the tests' own description of a relay to talk to

        target = Target(self.url, fingerprint(services.relay_key.public_key))
        self.alice = Person("alice", target, self.http)  # type: ignore[arg-type]
        self.bob = Person("bob", target, self.http)  # type: ignore[arg-type]
        await self.alice.add_device(handle="alice")
        await self.bob.add_device(handle="bob")
        header = await self.bob.send(self.alice, "hello alice")
        self.message_id = header.message_id.hex()
        self.token = self.alice.devices[0].token or ""

    def request(self, data: bytes) -> None:
        if len(data) < 2:
            return
        method, template = ROUTES[data[0] % len(ROUTES)]
        flags, rest = data[1], data[2:]
        path = template.format(
            id=self.message_id if flags & 2 else rest[:16].hex(),
            user=self.alice.user_id.hex() if flags & 2 else rest[:32].hex(),
            handle="bob" if flags & 2 else rest[:8].decode("latin-1"),
        )
        if template == "/v1/sync":
            path += f"?after={int.from_bytes(rest[:2], 'big')}&limit={rest[2] if rest[2:] else 1}"
        headers = {"Content-Type": "application/msgpack" if not flags & 4 else "text/plain"}
        if flags & 1:
            headers["Authorization"] = f"Bearer {self.token}"
        elif flags & 8:
            headers["Authorization"] = "Bearer " + rest[:43].decode("latin-1")
        self.loop.run_until_complete(self._send(method, path, headers, rest))

    async def _send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            async with self.http.request(
                method, self.url + path, data=body, headers=headers
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.InvalidURL, ValueError, UnicodeError):
            return  # the fuzzer made a path aiohttp itself will not send
        if status >= 500:
            raise HandlerCrash(f"{method} {path} -> {status}: {raw[:200]!r}")
        if status >= 400:
            try:
                answer: Any = wire.decode(raw)
            except E2ERecallError:
                raise HandlerCrash(f"{method} {path} -> {status} with no msgpack map") from None
            if not (isinstance(answer, dict) and answer.get("error") and answer.get("message")):
                raise HandlerCrash(f"{method} {path} -> {status} without a code and a sentence")


_RELAY: RelayUnderFuzz | None = None


def handlers(data: bytes) -> None:
    global _RELAY
    if _RELAY is None:
        _RELAY = RelayUnderFuzz()
    _RELAY.request(data)
