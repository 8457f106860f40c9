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
import hashlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from e2e_recall import wire
from e2e_recall.domains import HASH_BLOB, SIG_GROUP_CHANGE
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
    ("POST", "/v1/blobs"),
    ("PATCH", "/v1/blobs/{blob}"),
    ("GET", "/v1/blobs/{blob}/upload"),
    ("GET", "/v1/blobs/{blob}"),
    ("POST", "/v1/groups/{group}/changes"),
    ("GET", "/v1/groups/{group}"),
    ("POST", "/v1/links"),
    ("GET", "/v1/links/{id}"),
    ("PUT", "/v1/links/{id}/request"),
    ("PUT", "/v1/links/{id}/answer"),
    ("GET", "/v1/links/{id}/answer"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices/{device}/revoke"),
)
BLOB_ROUTES = range(14, 18)
OCTETS = "application/octet-stream"


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

        # Under the runner's scratch directory when there is one (fuzz/run.py removes it).
        scratch = os.environ.get("E2E_RECALL_FUZZ_SCRATCH") or None
        self.work = tempfile.TemporaryDirectory(prefix="fuzz-relay-", dir=scratch)
        config = load_config(
            env={},
            flags={
                "data_dir": self.work.name,
                "port": 0,
                "requests_per_minute": 0,
                "address_requests_per_minute": 0,
                "log_level": "error",
                # abandoned uploads are the fuzzer's litter: gone within a minute
                "upload_expiry": 30_000,
                "purge_interval": 10_000,
                "blob_quota": 1 << 50,
                "max_file_size": 1 << 20,
                "blob_read_timeout": 1_000,
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
        from blob_client import send_with, upload  # the tests' own upload, as a client does it

        self.blob = os.urandom(70_000)  # a bound blob Alice may download: two chunks and more
        self.blob_id = await upload(self.bob, self.blob)
        await send_with(self.bob, self.alice, "a file", [self.blob_id])
        from group_driver import create_group  # the relay tests' signed group chains

        self.group = await create_group(self.alice, self.bob)

    async def _fresh_upload(self, body: bytes, exact: bool) -> str:
        """A new upload of Alice's for one PATCH: sized and digested for ``body`` if ``exact``."""
        blob_id = os.urandom(16)
        size = len(body) if exact else len(body) + 100  # an upload this body leaves unfinished
        digest = hashlib.sha256(HASH_BLOB + body).digest() if exact else bytes(32)
        async with self.http.post(
            self.url + "/v1/blobs",
            data=wire.encode({"blob_id": blob_id, "size": size, "digest": digest}),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/msgpack",
            },
        ) as response:
            await response.read()
            if response.status != 201:
                raise HandlerCrash(f"a fresh upload was refused with {response.status}")
        return blob_id.hex()

    def request(self, data: bytes) -> None:
        if len(data) < 2:
            return
        route = data[0] % len(ROUTES)
        if route in BLOB_ROUTES:
            self.loop.run_until_complete(self._blob_request(route, data[1], data[2:]))
            return
        method, template = ROUTES[route]
        flags, rest = data[1], data[2:]
        path = template.format(
            id=self.message_id if flags & 2 else rest[:16].hex(),
            user=self.alice.user_id.hex() if flags & 2 else rest[:32].hex(),
            handle="bob" if flags & 2 else rest[:8].decode("latin-1"),
            group=self.group.group_id.hex() if flags & 2 else rest[:16].hex(),
            device=self.bob.devices[0].secrets.device_id.hex() if flags & 2 else rest[:16].hex(),
        )
        body = rest
        if template.endswith("/changes") and flags & 16:
            # the input as the body of a change Alice signed: the parsing behind it is reached
            signature = self.alice.identity.sign(SIG_GROUP_CHANGE, rest)
            signed = wire.encode({"body": rest, "signature": signature})
            body = wire.encode({"change": signed})
        if template == "/v1/sync":
            path += f"?after={int.from_bytes(rest[:2], 'big')}&limit={rest[2] if rest[2:] else 1}"
        headers = {"Content-Type": "application/msgpack" if not flags & 4 else "text/plain"}
        if flags & 1:
            headers["Authorization"] = f"Bearer {self.token}"
        elif flags & 8:
            headers["Authorization"] = "Bearer " + rest[:43].decode("latin-1")
        self.loop.run_until_complete(self._send(method, path, headers, body))
        if template == "/v1/logout" and flags & 1:
            # the fuzzer logged Alice out: log in again, or every later input with "a
            # valid token" would stop at the session check
            self.token = self.loop.run_until_complete(self.alice.login())

    async def _blob_request(self, route: int, flags: int, rest: bytes) -> None:
        """A blob route with hostile headers: the blob id, offset, range and framing from the input.

        ``flags``: bit 0 a valid token (bit 3: a token from the input instead), bits 1 and 4
        pick the blob id (the input's, a bound blob Alice may read, a fresh upload of hers
        sized for this body, or one that is not), bit 2 a wrong content type, bit 5 a
        chunked body, bit 6 no offset or range header.  For PATCH and GET the first input
        byte is the header's length and the header's text follows, then the body.
        """
        method, template = ROUTES[route]
        headers = {"Content-Type": OCTETS if route == 15 else "application/msgpack"}
        if flags & 4:
            headers["Content-Type"] = "text/plain"
        if flags & 1:
            headers["Authorization"] = f"Bearer {self.token}"
        elif flags & 8:
            headers["Authorization"] = "Bearer " + rest[:43].decode("latin-1")
        body = rest
        if route in (15, 17) and rest:
            length = rest[0] % 40
            text = rest[1 : 1 + length].decode("latin-1")
            body = rest[1 + length :]
            if not flags & 64:
                headers["Upload-Offset" if route == 15 else "Range"] = text
        pick = (flags >> 1 & 1) | (flags >> 3 & 2)
        if pick == 0:
            blob = rest[:16].hex()
        elif pick == 1 or route in (14, 17):
            blob = self.blob_id.hex()
        else:
            blob = await self._fresh_upload(body, exact=pick == 3)
        path = template.format(blob=blob)
        data: bytes | AsyncIterator[bytes] = body
        if flags & 32:

            async def chunks() -> AsyncIterator[bytes]:
                for at in range(0, len(body), 1000):
                    yield body[at : at + 1000]

            data = chunks()
        await self._send(method, path, headers, data)

    async def _send(
        self, method: str, path: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> None:
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
