"""The stage for the abuse suite: a relay process, two honest people and an attacker.

Alice sends Bob a message; Mallory (registered, logged in, a real user of the
same relay) attacks it and them.  After every attack the scene checks that
nothing changed for the honest people: Bob can still fetch the message and
Alice's report says what it said before.  ``leaks`` says whether an answer
carries any byte that belongs to someone the attacker is not.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire

from driver import Person, RelayRefused
from relay_process import Target

MSGPACK = "application/msgpack"


@dataclass
class Scene:
    target: Target
    http: aiohttp.ClientSession
    alice: Person
    bob: Person
    mallory: Person
    header: er.Header
    envelope: bytes
    wraps: list[dict[str, bytes]]
    alice_handle: str

    @property
    def message_path(self) -> str:
        return f"/v1/messages/{self.header.message_id.hex()}"

    def secrets(self) -> list[bytes]:
        """Bytes an answer to Mallory must never contain."""
        found = [self.envelope, self.header.conversation_id, self.bob.user_id]
        found += [w["wrap"] for w in self.wraps]
        found += [d.secrets.device_id for p in (self.alice, self.bob) for d in p.devices]
        found += [(d.token or "").encode() for p in (self.alice, self.bob) for d in p.devices]
        return [s for s in found if s]

    def leaks(self, answer: Any) -> list[str]:
        raw = answer if isinstance(answer, bytes) else wire.encode(answer)
        return [s[:8].hex() for s in self.secrets() if s in raw]

    async def raw(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        token: str | None = None,
        content_type: str = MSGPACK,
    ) -> tuple[int, dict[str, Any]]:
        """One request with exactly these bytes; status and decoded answer."""
        headers = {"Content-Type": content_type}
        payload = io.BytesIO(data) if data is not None else None  # streamed, as a client would
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.target.url + path, data=payload, headers=headers
        ) as response:
            body = await response.read()
        answer = wire.decode(body, limits=wire.Limits(max_size=1 << 22, max_bin=1 << 21))
        assert isinstance(answer, dict)
        return response.status, answer

    async def mallory_calls(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> RelayRefused:
        """Mallory's request must be refused, with a code, a sentence and no leak."""
        with pytest.raises(RelayRefused) as caught:
            await self.mallory.call(method, path, body)
        refused = caught.value
        assert 400 <= refused.status < 500, refused
        assert refused.code
        assert isinstance(refused.message, str)
        assert refused.message.endswith(".")
        assert self.leaks(refused.body) == []
        return refused

    async def still_intact(self) -> None:
        """The honest people see exactly what they saw before the attack."""
        fetched = await self.bob.call("GET", self.message_path)
        assert fetched["envelope"] == self.envelope
        report = await self.alice.call("GET", self.message_path + "/report")
        assert report["state"] == "live"
        assert {d["state"] for d in report["devices"]} <= {"queued", "sealed"}


def flip_token(token: str) -> str:
    """The same token with one bit changed (still well-formed)."""
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def build_scene(target: Target, http: aiohttp.ClientSession) -> Scene:
    alice = Person("alice", target, http)  # type: ignore[arg-type]
    bob = Person("bob", target, http)  # type: ignore[arg-type]
    mallory = Person("mallory", target, http)  # type: ignore[arg-type]
    alice_handle = f"alice-{os.urandom(4).hex()}"  # one relay serves many scenes
    await alice.add_device(handle=alice_handle)
    for person in (bob, mallory):
        await person.add_device()
    header, sealed = alice.seal(bob, "for bob only")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    return Scene(target, http, alice, bob, mallory, header, sealed.envelope, wraps, alice_handle)


def every_route(scene: Scene) -> Iterable[tuple[str, str, dict[str, Any] | None]]:
    """Every authenticated route, with a plausible body, aimed at Alice's message."""
    path = scene.message_path
    yield "POST", "/v1/logout", {}
    yield "GET", f"/v1/users/{scene.alice.user_id.hex()}", None
    yield "GET", f"/v1/handles/{scene.alice_handle}", None
    yield "POST", "/v1/messages", {"envelope": scene.envelope, "wraps": scene.wraps, "blobs": []}
    yield "GET", path, None
    yield "POST", path + "/open", {}
    yield "POST", path + "/receipt", {"receipt": b"\x00" * 64}
    yield "POST", path + "/recall", {"revocation": b"\x00" * 64, "replacement": None}
    yield "GET", path + "/report", None
    yield "GET", "/v1/sync?after=0", None
    yield "POST", "/v1/sync/ack", {"seq": 1}


ROUTE_NAMES = [
    "logout",
    "user",
    "handle",
    "send",
    "fetch",
    "open",
    "receipt",
    "recall",
    "report",
    "sync",
    "ack",
]
