"""The stage for the abuse suite: a relay process, two honest people and an attacker.

Alice sends Bob a message; Mallory (registered, logged in, a real user of the
same relay) attacks it and them.  After every attack the scene checks that
nothing changed for the honest people: Bob can still fetch the message and
Alice's report says what it said before.  ``leaks`` says whether an answer
carries any byte that belongs to someone the attacker is not.

Alice's message carries a file: a blob bound to it, which Bob can download
byte for byte after every attack, and Alice has a second upload left half
done, whose stored offset must not move.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire

from blob_client import create, digest_of, download, patch, send_with, upload, upload_status
from driver import Person, RelayRefused
from relay_process import Target

MSGPACK = "application/msgpack"
OCTETS = "application/octet-stream"
BLOB_LEN = 70_000  # two chunks and part of a third, as a client's blob would be


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
    blob: bytes = b""
    blob_id: bytes = b""
    partial: bytes = b""  # Alice's unfinished upload: all its bytes, half of them stored
    partial_id: bytes = b""
    blob_dir: Path | None = None
    extra_secrets: list[bytes] = field(default_factory=list)

    @property
    def message_path(self) -> str:
        return f"/v1/messages/{self.header.message_id.hex()}"

    def secrets(self) -> list[bytes]:
        """Bytes an answer to Mallory must never contain."""
        found = [self.envelope, self.header.conversation_id, self.bob.user_id]
        found += [w["wrap"] for w in self.wraps]
        found += [d.secrets.device_id for p in (self.alice, self.bob) for d in p.devices]
        found += [(d.token or "").encode() for p in (self.alice, self.bob) for d in p.devices]
        for blob in (self.blob, self.partial[: len(self.partial) // 2]):
            found += [blob[at : at + 16] for at in range(0, len(blob) - 15, 4096)]
            found += [blob[-16:], digest_of(blob)]
        found += [digest_of(self.partial), *self.extra_secrets]
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
        code, body, _ = await download(self.bob, self.blob_id)
        assert (code, body) == (200, self.blob)
        assert await upload_status(self.alice, self.partial_id) == {
            "offset": len(self.partial) // 2,
            "size": len(self.partial),
            "complete": False,
        }

    def blob_files(self) -> dict[str, int]:
        """Every file of the relay's blob store, with its length."""
        assert self.blob_dir is not None
        return {
            str(p.relative_to(self.blob_dir)): p.stat().st_size
            for p in self.blob_dir.rglob("*")
            if p.is_file()
        }

    async def request(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """Any request, by Mallory unless ``token`` says otherwise: status, body, headers."""
        sent = dict(headers or {})
        use = self.mallory.devices[0].token if token is None else token
        if use:
            sent["Authorization"] = f"Bearer {use}"
        if isinstance(data, bytes):
            data = io.BytesIO(data)
        async with self.http.request(
            method, self.target.url + path, data=data, headers=sent
        ) as response:
            return response.status, await response.read(), dict(response.headers)


def flip_token(token: str) -> str:
    """The same token with one bit changed (still well-formed)."""
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def build_scene(
    target: Target, http: aiohttp.ClientSession, blob_dir: Path | None = None
) -> Scene:
    alice = Person("alice", target, http)  # type: ignore[arg-type]
    bob = Person("bob", target, http)  # type: ignore[arg-type]
    mallory = Person("mallory", target, http)  # type: ignore[arg-type]
    alice_handle = f"alice-{os.urandom(4).hex()}"  # one relay serves many scenes
    await alice.add_device(handle=alice_handle)
    for person in (bob, mallory):
        await person.add_device()
    blob = os.urandom(BLOB_LEN)
    blob_id = await upload(alice, blob)
    header, sealed = alice.seal(bob, "for bob only, with a file")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": [blob_id]}
    )
    partial, partial_id = os.urandom(BLOB_LEN), os.urandom(16)
    assert (await create(alice, partial_id, len(partial), digest_of(partial)))[0] == 201
    assert (await patch(alice, partial_id, 0, partial[: len(partial) // 2]))[0] == 200
    return Scene(
        target,
        http,
        alice,
        bob,
        mallory,
        header,
        sealed.envelope,
        wraps,
        alice_handle,
        blob,
        blob_id,
        partial,
        partial_id,
        blob_dir,
    )


async def mallory_sends_a_file(scene: Scene, blob: bytes) -> tuple[bytes, er.Header]:
    """Mallory uploads ``blob`` and sends it to Bob: a blob she may read (as its sender)."""
    blob_id = await upload(scene.mallory, blob)
    header = await send_with(scene.mallory, scene.bob, "from mallory", [blob_id])
    return blob_id, header


def every_route(scene: Scene) -> Iterable[tuple[str, str, dict[str, Any] | bytes | None]]:
    """Every authenticated route, with a plausible body, aimed at Alice's message and files."""
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
    half = len(scene.partial) // 2
    yield "POST", "/v1/blobs", {"blob_id": os.urandom(16), "size": 10, "digest": bytes(32)}
    yield "PATCH", f"/v1/blobs/{scene.partial_id.hex()}", scene.partial[half:]
    yield "GET", f"/v1/blobs/{scene.partial_id.hex()}/upload", None
    yield "GET", f"/v1/blobs/{scene.blob_id.hex()}", None
    group = f"/v1/groups/{scene.alice.user_id[:16].hex()}"  # whether one exists is not the point
    yield "POST", group + "/changes", {"change": b"\x00" * 64}
    yield "GET", group, None
    link = f"/v1/links/{scene.alice.user_id[16:].hex()}"
    yield "POST", "/v1/links", {"link_id": os.urandom(16), "expires_at": 2**40}
    yield "GET", link, None
    yield "PUT", link + "/answer", {"sealed": b"\x00" * 64}
    yield "GET", "/v1/devices", None
    bob_device = scene.bob.devices[0].secrets.device_id.hex()
    yield "POST", f"/v1/devices/{bob_device}/revoke", {"revocation": b"\x00" * 64}


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
    "blob_create",
    "blob_append",
    "blob_status",
    "blob_download",
    "group_change",
    "group",
    "link_open",
    "link_read",
    "link_answer",
    "devices",
    "device_revoke",
]
