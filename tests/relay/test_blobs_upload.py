"""Uploading blobs over real HTTP: sizes, idempotence, offsets, limits, digests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from blob_client import blob_files, create, digest_of, download, patch, send_with, upload
from blob_client import upload_status as status
from driver import Clock, Person, RelayRefused, start_relay

MiB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 65553, 65554, 3 * MiB + 7])
async def test_a_blob_goes_up_and_comes_down_byte_for_byte(
    people: tuple[Person, Person], size: int
) -> None:
    alice, bob = people
    blob = os.urandom(size)
    blob_id = await upload(alice, blob)
    assert await status(alice, blob_id) == {"offset": size, "size": size, "complete": True}
    await send_with(alice, bob, "a file", [blob_id])
    code, body, headers = await download(bob, blob_id)
    assert (code, body) == (200, blob)
    assert headers["Content-Type"] == "application/octet-stream"
    assert int(headers["Content-Length"]) == size


async def test_an_upload_in_pieces_of_any_length(people: tuple[Person, Person]) -> None:
    alice, _ = people
    blob = os.urandom(200_001)
    blob_id = os.urandom(16)
    assert (await create(alice, blob_id, len(blob), digest_of(blob)))[0] == 201
    offset = 0
    for step in (1, 65536, 17, 100_000):
        code, answer = await patch(alice, blob_id, offset, blob[offset : offset + step])
        offset += step
        assert (code, answer) == (200, {"offset": offset, "complete": False})
    code, answer = await patch(alice, blob_id, offset, blob[offset:])
    assert (code, answer) == (200, {"offset": len(blob), "complete": True})


async def test_a_chunked_body_is_streamed(people: tuple[Person, Person]) -> None:
    alice, _ = people
    blob = os.urandom(2 * MiB + 3)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(blob), 100_000):
            yield blob[start : start + 100_000]

    assert await patch(alice, blob_id, 0, pieces()) == (
        200,
        {"offset": len(blob), "complete": True},
    )


async def test_create_is_idempotent_and_a_taken_id_is_refused(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    blob = os.urandom(1000)
    blob_id = os.urandom(16)
    assert await create(alice, blob_id, 1000, digest_of(blob)) == (
        201,
        {"blob_id": blob_id, "offset": 0, "size": 1000},
    )
    await patch(alice, blob_id, 0, blob[:400])
    assert await create(alice, blob_id, 1000, digest_of(blob)) == (
        200,
        {"blob_id": blob_id, "offset": 400, "size": 1000},
    )
    for other in (
        create(alice, blob_id, 1001, digest_of(blob)),
        create(alice, blob_id, 1000, digest_of(b"other")),
        create(bob, blob_id, 1000, digest_of(blob)),
    ):
        code, answer = await other
        assert (code, answer["error"]) == (409, "blob_exists")


async def test_an_append_at_the_wrong_offset_says_where_to_resume(
    people: tuple[Person, Person],
) -> None:
    alice, _ = people
    blob = os.urandom(5000)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    await patch(alice, blob_id, 0, blob[:3000])
    for wrong in (0, 2999, 3001):
        code, answer = await patch(alice, blob_id, wrong, blob[wrong:])
        assert (code, answer["error"], answer["offset"]) == (409, "offset_mismatch", 3000)
        assert answer["facts"] == {"offset": 3000}
    code, answer = await patch(alice, blob_id, 0, b"", headers={"Upload-Offset": "x"})
    assert (code, answer["error"]) == (400, "bad_offset")
    assert (await status(alice, blob_id))["offset"] == 3000


async def test_bytes_past_the_declared_size_are_refused_and_not_kept(
    people: tuple[Person, Person],
) -> None:
    alice, _ = people
    blob = os.urandom(4000)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    code, answer = await patch(alice, blob_id, 0, blob + b"x")  # Content-Length says too much
    assert (code, answer["error"], answer["offset"]) == (413, "too_large", 0)
    assert await status(alice, blob_id) == {"offset": 0, "size": 4000, "complete": False}

    async def too_much() -> AsyncIterator[bytes]:  # chunked: found out while streaming
        yield blob[:3000]
        yield blob[3000:] + os.urandom(5000)

    code, answer = await patch(alice, blob_id, 0, too_much())
    assert (code, answer["error"]) == (413, "too_large")
    assert (await status(alice, blob_id))["offset"] == 4000
    assert max(p.stat().st_size for p in blob_files(alice.relay)) == 4000
    assert await patch(alice, blob_id, 4000, b"") == (200, {"offset": 4000, "complete": True})


async def test_a_digest_mismatch_discards_the_upload(people: tuple[Person, Person]) -> None:
    alice, bob = people
    blob = os.urandom(70_000)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    await patch(alice, blob_id, 0, blob[:1000])
    tampered = blob[1000:2000] + bytes([blob[2000] ^ 1]) + blob[2001:]
    code, answer = await patch(alice, blob_id, 1000, tampered)
    assert (code, answer["error"]) == (422, "digest_mismatch")
    assert blob_files(alice.relay) == []
    with pytest.raises(RelayRefused) as refused:
        await status(alice, blob_id)
    assert refused.value.status == 404
    with pytest.raises(RelayRefused) as refused:
        await send_with(alice, bob, "the file", [blob_id])
    assert refused.value.code == "blob_not_found"
    assert (await create(alice, blob_id, len(blob), digest_of(blob)))[0] == 201  # start again


async def test_too_large_and_over_quota_are_refused_before_anything_is_stored(
    tmp_path: Path, clock: Clock, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(
        tmp_path / "relay", clock, max_file_size="64KiB", blob_quota="100KiB", **database_options
    )
    try:
        alice = Person("alice", relay, http)
        await alice.add_device()
        code, answer = await create(alice, os.urandom(16), 65537, os.urandom(32))
        assert (code, answer["error"]) == (413, "file_too_large")
        first = os.urandom(16)
        assert (await create(alice, first, 60_000, os.urandom(32)))[0] == 201
        code, answer = await create(alice, os.urandom(16), 60_000, os.urandom(32))
        assert (code, answer["error"]) == (413, "quota_exceeded")
        assert blob_files(relay) == []
        assert await relay.services.storage.known_blobs([first]) == {first}
        assert (await create(alice, os.urandom(16), 40_000, os.urandom(32)))[0] == 201
    finally:
        await relay.runner.cleanup()


async def test_only_the_uploader_may_append_or_ask(people: tuple[Person, Person]) -> None:
    alice, bob = people
    blob = os.urandom(100)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    code, answer = await patch(bob, blob_id, 0, blob)
    assert (code, answer["error"]) == (404, "blob_not_found")
    with pytest.raises(RelayRefused) as refused:
        await status(bob, blob_id)
    assert refused.value.status == 404
    assert (await status(alice, blob_id))["offset"] == 0


@pytest.mark.parametrize("digit", ["\u0660", "\u0661", "\uff10", "\u06f1"])
async def test_offsets_and_ranges_in_other_scripts_digits_are_refused(
    people: tuple[Person, Person], digit: str
) -> None:
    """``\\d`` matches any script's digits and int() reads them: only ASCII 0-9 is a number."""
    alice, bob = people
    blob = os.urandom(1000)
    blob_id = os.urandom(16)
    await create(alice, blob_id, len(blob), digest_of(blob))
    code, answer = await patch(alice, blob_id, 0, blob, {"Upload-Offset": digit})
    assert (code, answer["error"]) == (400, "bad_offset")
    assert await status(alice, blob_id) == {"offset": 0, "size": 1000, "complete": False}
    await patch(alice, blob_id, 0, blob)
    await send_with(alice, bob, "a file", [blob_id])
    async with bob.http.get(
        bob.relay.url + f"/v1/blobs/{blob_id.hex()}",
        headers={"Authorization": f"Bearer {bob.devices[0].token}", "Range": f"bytes={digit}-"},
    ) as response:
        assert response.status == 416
