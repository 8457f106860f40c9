"""A broken upload resumes where the relay's disk says; a broken download resumes by Range."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from blob_client import create, digest_of, download, patch, send_with, upload
from blob_client import upload_status as status
from driver import Clock, Person, RelayRefused, start_relay

MiB = 1 << 20


async def _abort_halfway(person: Person, blob_id: bytes, blob: bytes, sent: int) -> None:
    """Start a PATCH of the whole blob, send ``sent`` bytes of it, then reset the connection."""
    url = urlsplit(person.relay.url)
    _reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PATCH /v1/blobs/{blob_id.hex()} HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            f"Authorization: Bearer {person.devices[0].token}\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Upload-Offset: 0\r\n"
            f"Content-Length: {len(blob)}\r\n\r\n"
        ).encode()
    )
    writer.write(blob[:sent])
    await writer.drain()
    await asyncio.sleep(0.2)  # let the relay read what was sent
    writer.transport.abort()  # no FIN, no rest of the body: the connection is simply gone


async def _settled_offset(person: Person, blob_id: bytes) -> int:
    """The stored offset once the relay has finished with the broken request."""
    previous = -1
    for _ in range(100):
        offset = (await status(person, blob_id))["offset"]
        if offset == previous:
            return int(offset)
        previous = offset
        await asyncio.sleep(0.05)
    raise AssertionError("the offset never settled")


async def test_an_upload_broken_halfway_resumes_from_the_stored_offset(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    blob = os.urandom(3 * MiB)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    await _abort_halfway(alice, blob_id, blob, len(blob) // 2)
    offset = await _settled_offset(alice, blob_id)
    assert 0 < offset <= len(blob) // 2
    assert (await status(alice, blob_id))["complete"] is False
    with pytest.raises(RelayRefused) as refused:  # an unfinished blob cannot be sent
        await send_with(alice, bob, "too early", [blob_id])
    assert refused.value.code == "blob_incomplete"
    assert await patch(alice, blob_id, offset, blob[offset:]) == (
        200,
        {"offset": len(blob), "complete": True},
    )
    await send_with(alice, bob, "the file", [blob_id])
    code, body, _ = await download(bob, blob_id)
    assert (code, body) == (200, blob)


async def test_a_download_resumes_with_a_range(people: tuple[Person, Person]) -> None:
    alice, bob = people
    blob = os.urandom(MiB + 5)
    blob_id = await upload(alice, blob)
    await send_with(alice, bob, "the file", [blob_id])
    code, body, headers = await download(bob, blob_id, start=700_000)
    assert (code, body) == (206, blob[700_000:])
    assert headers["Content-Range"] == f"bytes 700000-{len(blob) - 1}/{len(blob)}"
    assert int(headers["Content-Length"]) == len(blob) - 700_000
    for bad in (len(blob), len(blob) + 1):
        code, _, _ = await download(bob, blob_id, start=bad)
        assert code == 416
    code, _, _ = await download(bob, blob_id, start=0)
    assert code == 206


async def test_a_silent_upload_is_cut_off_keeping_what_arrived(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    """The limit is per read (blob_read_timeout), not a total for the body."""
    relay = await start_relay(
        tmp_path / "relay", Clock(), blob_read_timeout="300ms", **database_options
    )
    try:
        alice = Person("alice", relay, http)
        await alice.add_device()
        blob = os.urandom(50_000)
        blob_id = os.urandom(16)
        await create(alice, blob_id, len(blob), digest_of(blob))

        async def slow_then_silent() -> AsyncIterator[bytes]:
            for start in range(0, 20_000, 5_000):  # slower in total than the limit, never idle
                yield blob[start : start + 5_000]
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # then nothing for longer than the limit
            yield blob[20_000:]

        code, answer = await patch(alice, blob_id, 0, slow_then_silent())
        assert (code, answer["error"], answer["offset"]) == (408, "request_timeout", 20_000)
        assert (await status(alice, blob_id))["offset"] == 20_000
        assert await patch(alice, blob_id, 20_000, blob[20_000:]) == (
            200,
            {"offset": len(blob), "complete": True},
        )
    finally:
        await relay.runner.cleanup()
