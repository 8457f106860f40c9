"""Blob uploads and downloads the way a client makes them, over real HTTP (test helper).

The relay treats a blob as opaque bytes; these tests use random bytes of
the lengths that matter (empty, one byte, one 64 KiB chunk and its tag and
one byte more, a few MiB), with the digest a client computes.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import e2e_recall as er
from e2e_recall import wire
from relay.blobs.service import HASH_BLOB

from driver import MSGPACK, Person, Relay

OCTETS = "application/octet-stream"


def digest_of(blob: bytes) -> bytes:
    return hashlib.sha256(HASH_BLOB + blob).digest()


def blob_files(relay: Relay) -> list[Path]:
    """Every file under the relay's blob directory (partial and complete)."""
    root = relay.services.config.blob_path
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _auth(person: Person, device: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {person.devices[device].token}"}


async def create(
    person: Person, blob_id: bytes, size: int, digest: bytes
) -> tuple[int, dict[str, Any]]:
    """POST /v1/blobs: the status and the answer (refusals included)."""
    async with person.http.post(
        person.relay.url + "/v1/blobs",
        data=wire.encode({"blob_id": blob_id, "size": size, "digest": digest}),
        headers={**_auth(person), "Content-Type": MSGPACK},
    ) as response:
        return response.status, wire.decode(await response.read())


async def patch(
    person: Person, blob_id: bytes, offset: int, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """PATCH /v1/blobs/{id} with ``data`` (bytes, or an async iterator for a chunked body)."""
    if isinstance(data, bytes):
        data = io.BytesIO(data)  # streamed with a Content-Length, not held as one body
    async with person.http.patch(
        person.relay.url + f"/v1/blobs/{blob_id.hex()}",
        data=data,
        headers={
            **_auth(person),
            "Content-Type": OCTETS,
            "Upload-Offset": str(offset),
            **(headers or {}),
        },
    ) as response:
        return response.status, wire.decode(await response.read())


async def upload_status(person: Person, blob_id: bytes) -> dict[str, Any]:
    return await person.call("GET", f"/v1/blobs/{blob_id.hex()}/upload")


async def upload(person: Person, blob: bytes, blob_id: bytes | None = None) -> bytes:
    """Declare and upload a whole blob in one PATCH; its id."""
    blob_id = blob_id or os.urandom(16)
    status, answer = await create(person, blob_id, len(blob), digest_of(blob))
    assert status == 201, answer
    status, answer = await patch(person, blob_id, 0, blob)
    assert (status, answer) == (200, {"offset": len(blob), "complete": True}), answer
    return blob_id


async def download(
    person: Person, blob_id: bytes, device: int = 0, start: int | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """GET /v1/blobs/{id} (from ``start`` with a Range): status, body, headers."""
    headers = _auth(person, device)
    if start is not None:
        headers["Range"] = f"bytes={start}-"
    async with person.http.get(
        person.relay.url + f"/v1/blobs/{blob_id.hex()}", headers=headers
    ) as response:
        return response.status, await response.read(), dict(response.headers)


async def send_with(
    sender: Person, to: Person, text: str, blobs: list[bytes], **options: Any
) -> er.Header:
    """A message whose send binds ``blobs`` (the body's descriptors are the core's business)."""
    header, sealed = sender.seal(to, text, **options)
    wraps = await sender.wraps_for(to, header, sealed.message_key)
    await sender.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": blobs}
    )
    return header
