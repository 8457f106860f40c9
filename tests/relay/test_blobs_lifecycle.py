"""Blobs live and die with their message: binding, access, recall, expiry, completion, report."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from blob_client import blob_files, create, digest_of, download, patch, send_with, upload
from driver import MINUTE, Clock, Person, Relay, RelayRefused, start_relay

DAY = 24 * 60 * MINUTE


async def _rows(relay: Relay, table: str) -> int:
    ((count,),) = await relay.sql(f"SELECT count(*) FROM {table}")
    return int(count)


async def _no_blob_files(relay: Relay) -> None:
    """The unlink runs right after the commit; give it a moment, with a deadline."""
    for _ in range(100):
        if not blob_files(relay):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still on disk: {blob_files(relay)}")


async def test_a_send_binds_only_complete_own_unbound_blobs(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    mine = await upload(alice, os.urandom(500))
    bobs = await upload(bob, os.urandom(500))
    half = os.urandom(16)
    await create(alice, half, 500, digest_of(os.urandom(500)))
    for blobs, code in (
        ([os.urandom(16)], "blob_not_found"),
        ([bobs], "blob_not_found"),
        ([half], "blob_incomplete"),
        ([mine, mine], "duplicate_blob"),
        ([b"short"], "bad_blob_id"),
        ([os.urandom(16) for _ in range(17)], "bad_length"),
    ):
        with pytest.raises(RelayRefused) as refused:
            await send_with(alice, bob, "files", blobs)
        assert refused.value.code == code, blobs
    assert await _rows(alice.relay, "messages") == 0  # nothing of a refused send was stored
    header, sealed = alice.seal(bob, "the file")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": [mine]}
    assert (await alice.call("POST", "/v1/messages", body))["created"] is True
    assert (await alice.call("POST", "/v1/messages", body))["created"] is False  # a retry
    with pytest.raises(RelayRefused) as refused:
        await send_with(alice, bob, "the same file again", [mine])
    assert refused.value.code == "blob_bound"


async def test_only_the_message_s_devices_may_download(
    people: tuple[Person, Person], http: aiohttp.ClientSession
) -> None:
    alice, bob = people
    carol = Person("carol", alice.relay, http)
    await carol.add_device(handle="carol")
    blob = os.urandom(1000)
    blob_id = await upload(alice, blob)
    assert (await download(bob, blob_id))[0] == 404  # unbound: nobody may read it
    assert (await download(alice, blob_id))[0] == 404
    await send_with(alice, bob, "for bob", [blob_id])
    assert (await download(carol, blob_id))[0] == 404
    assert (await download(carol, os.urandom(16)))[0] == 404
    assert (await download(alice, blob_id))[:2] == (200, blob)  # the sender's device
    assert (await download(bob, blob_id))[:2] == (200, blob)


async def test_a_recall_deletes_the_rows_and_the_files(people: tuple[Person, Person]) -> None:
    alice, bob = people
    relay = alice.relay
    blobs = [await upload(alice, os.urandom(size)) for size in (300, 70_000)]
    kept = await upload(alice, os.urandom(300))
    header = await send_with(alice, bob, "the wrong file", blobs)
    other = await send_with(alice, bob, "the right file", [kept])
    await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    assert len(blob_files(relay)) == 3
    answer = await alice.recall(header)
    assert answer["report"]["files"] == {"count": 2, "bytes": 70_300, "destroyed": True}
    await _no_blob_files_but(relay, [kept])
    assert await _rows(relay, "blobs") == 1
    assert await _rows(relay, "blob_downloads") == 0
    for blob_id in blobs:
        code, _, _ = await download(bob, blob_id)
        assert code == 410  # bob had fetched the message: it was recalled
    code, _, _ = await download(bob, kept)
    assert code == 200
    assert (await alice.report(other.message_id))["files"]["destroyed"] is False


async def _no_blob_files_but(relay: Relay, kept: list[bytes]) -> None:
    names = {blob_id.hex() for blob_id in kept}
    for _ in range(100):
        if {p.name for p in blob_files(relay)} == names:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"on disk: {blob_files(relay)}")


async def test_a_replacement_binds_its_own_blobs(people: tuple[Person, Person]) -> None:
    alice, bob = people
    wrong = await upload(alice, os.urandom(400))
    right = await upload(alice, os.urandom(500))
    header = await send_with(alice, bob, "the wrong file", [wrong])
    replacement, sealed = alice.seal(bob, "the right file", replaces=header.message_id)
    wraps = await alice.wraps_for(bob, replacement, sealed.message_key)
    await alice.recall(
        header,
        replacement={"envelope": sealed.envelope, "wraps": wraps, "blobs": [right]},
        replacement_id=replacement.message_id,
    )
    assert (await download(bob, wrong))[0] == 404  # bob never fetched the recalled message
    assert (await download(bob, right))[0] == 200
    report = await alice.report(replacement.message_id)
    assert report["files"] == {"count": 1, "bytes": 500, "destroyed": False}


async def test_the_report_and_completion_wait_for_every_download(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    await bob.add_device()
    relay = alice.relay
    blobs = [await upload(alice, os.urandom(2000)) for _ in range(2)]
    header = await send_with(alice, bob, "two files", blobs)
    for device in (0, 1):
        await bob.read(alice, header.message_id, device=device)
    report = await alice.report(header.message_id)
    assert report["state"] == "live"  # every device opened it, but the files are not down
    assert [line["downloaded_at"] for line in report["devices"]] == [None, None]
    relay.clock.advance(1000)
    await download(bob, blobs[0], device=0)
    await download(bob, blobs[1], device=0)
    await download(bob, blobs[0], device=1)
    report = await alice.report(header.message_id)
    lines = {line["device_id"]: line for line in report["devices"]}
    assert lines[bob.devices[0].secrets.device_id]["downloaded_at"] == relay.clock.now
    assert lines[bob.devices[1].secrets.device_id]["downloaded_at"] is None
    assert report["state"] == "live"
    assert report["files"] == {"count": 2, "bytes": 4000, "destroyed": False}
    await download(bob, blobs[1], device=1, start=1500)  # a resumed download counts
    report = await alice.report(header.message_id)
    assert report["state"] == "complete"  # open_grace is 0 in these tests
    assert report["files"]["destroyed"] is True
    await _no_blob_files(relay)
    assert (await download(bob, blobs[0]))[0] == 410


async def test_a_message_without_files_reports_none(people: tuple[Person, Person]) -> None:
    alice, bob = people
    header = await alice.send(bob, "just text")
    report = await alice.report(header.message_id)
    assert report["files"] == {"count": 0, "bytes": 0, "destroyed": False}
    assert report["devices"][0]["downloaded_at"] is None


async def test_expiry_deletes_the_message_s_blobs_and_unbound_uploads(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(
        tmp_path / "relay", Clock(), purge_interval="100ms", **database_options
    )
    try:
        alice, bob = Person("alice", relay, http), Person("bob", relay, http)
        await alice.add_device()
        await bob.add_device()
        bound = await upload(alice, os.urandom(3000))
        await send_with(alice, bob, "never opened", [bound])
        unsent = await upload(alice, os.urandom(3000))
        unfinished = os.urandom(16)
        await create(alice, unfinished, 3000, digest_of(os.urandom(3000)))
        await patch(alice, unfinished, 0, os.urandom(1000))
        relay.clock.advance(DAY + MINUTE)  # past upload_expiry (1 day): the uploads go
        await _wait_for(lambda: {p.name for p in blob_files(relay)} == {bound.hex()})
        assert await relay.services.storage.known_blobs([bound, unsent, unfinished]) == {bound}
        relay.clock.advance(14 * DAY)  # past retention: the message expires with its file
        await _wait_for(lambda: not blob_files(relay))
        assert await _rows(relay, "blobs") == 0
    finally:
        await relay.runner.cleanup()


async def _wait_for(condition: object) -> None:
    for _ in range(200):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the retention job did not get there")


async def test_files_left_without_a_row_are_swept_at_start(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    """A crash between the commit that destroyed a blob and the unlink leaves its file."""
    clock = Clock()
    relay = await start_relay(tmp_path / "relay", clock, **database_options)
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device()
    await bob.add_device()
    kept = await upload(alice, os.urandom(5000))
    await send_with(alice, bob, "kept", [kept])
    root = relay.services.config.blob_path
    await relay.runner.cleanup()
    orphan = root / "complete" / os.urandom(16).hex()  # as if the unlink never ran
    orphan.write_bytes(os.urandom(5000))
    partial = root / "partial" / os.urandom(16).hex()
    partial.write_bytes(os.urandom(100))
    stray = root / "complete" / "not-a-blob.txt"  # not ours to judge: left alone
    stray.write_bytes(b"operator's note")
    relay = await start_relay(tmp_path / "relay", clock, **database_options)
    try:
        assert not orphan.exists()
        assert not partial.exists()
        assert stray.exists()
        assert (root / "complete" / kept.hex()).exists()
    finally:
        await relay.runner.cleanup()
