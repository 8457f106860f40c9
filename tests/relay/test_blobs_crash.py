"""An upload cut off by a crash between its last byte and its row being marked complete.

Completion is three steps: hash the whole upload, rename ``partial/ID`` to
``complete/ID`` (synced), mark the row ``completed_at`` in the database.  A
relay killed after the first or the second leaves every byte stored and the
row unfinished.  The stored offset then equals the size, which is what the
client takes for done; the relay must finish the upload itself, not leave it
stuck (it refused every PATCH with ``409 offset_mismatch`` at the very offset
it named, and every send binding it with ``409 blob_incomplete``).

The crash is reproduced on disk exactly: the relay is stopped and the row's
``completed_at`` cleared (and, for a kill before the rename, the file moved
back), which is the state a SIGKILL at that moment leaves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from blob_client import create, digest_of, download, patch, send_with, upload, upload_status
from driver import Clock, Person, Relay, start_relay


async def _uncomplete(relay: Relay, blob_id: bytes, *, renamed: bool) -> None:
    """The disk as a kill after the hash (``renamed=False``) or after the rename leaves it."""
    await relay.sql("UPDATE blobs SET completed_at = NULL WHERE blob_id = ?", blob_id)
    if not renamed:
        root = relay.services.config.blob_path
        os.replace(root / "complete" / blob_id.hex(), root / "partial" / blob_id.hex())


async def _crashed_upload(
    tmp_path: Path,
    http: aiohttp.ClientSession,
    database_options: dict[str, Any],
    blob: bytes,
    *,
    renamed: bool,
) -> tuple[Relay, Person, Person, bytes]:
    clock = Clock()
    relay = await start_relay(tmp_path / "relay", clock, **database_options)
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device()
    await bob.add_device()
    blob_id = await upload(alice, blob)
    await relay.runner.cleanup()
    await _uncomplete(relay, blob_id, renamed=renamed)
    relay = await start_relay(tmp_path / "relay", clock, **database_options)
    alice.relay = bob.relay = relay
    await alice.login()
    await bob.login()
    return relay, alice, bob, blob_id


@pytest.mark.parametrize("size", [0, 70_000])
@pytest.mark.parametrize("renamed", [False, True], ids=["before-rename", "after-rename"])
async def test_an_upload_whose_completion_a_crash_cut_off_is_complete_on_resume(
    tmp_path: Path,
    http: aiohttp.ClientSession,
    database_options: dict[str, Any],
    renamed: bool,
    size: int,
) -> None:
    blob = os.urandom(size)
    relay, alice, bob, blob_id = await _crashed_upload(
        tmp_path, http, database_options, blob, renamed=renamed
    )
    try:
        # The client's resume: declare again; an offset at the size means it is done.
        status, answer = await create(alice, blob_id, len(blob), digest_of(blob))
        assert (status, answer["offset"]) == (200, len(blob))
        assert await upload_status(alice, blob_id) == {
            "offset": len(blob),
            "size": len(blob),
            "complete": True,
        }
        await send_with(alice, bob, "the file", [blob_id])
        status, body, _ = await download(bob, blob_id)
        assert (status, body) == (200, blob)
    finally:
        await relay.runner.cleanup()


@pytest.mark.parametrize("renamed", [False, True], ids=["before-rename", "after-rename"])
async def test_an_empty_patch_at_the_end_finishes_a_cut_off_upload(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any], renamed: bool
) -> None:
    blob = os.urandom(5000)
    relay, alice, _bob, blob_id = await _crashed_upload(
        tmp_path, http, database_options, blob, renamed=renamed
    )
    try:
        assert await patch(alice, blob_id, len(blob), b"") == (
            200,
            {"offset": len(blob), "complete": True},
        )
    finally:
        await relay.runner.cleanup()


async def test_a_cut_off_upload_whose_bytes_do_not_match_is_discarded_on_resume(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    """Should the stored bytes not hash to the declared digest, the upload goes, as it would."""
    blob = os.urandom(5000)
    relay, alice, _bob, blob_id = await _crashed_upload(
        tmp_path, http, database_options, blob, renamed=False
    )
    try:
        stored = relay.services.config.blob_path / "partial" / blob_id.hex()
        stored.write_bytes(os.urandom(5000))  # not what was declared
        status, answer = await patch(alice, blob_id, len(blob), b"")
        assert (status, answer["error"]) == (422, "digest_mismatch")
        assert not stored.exists()
        status, answer = await create(alice, blob_id, len(blob), digest_of(blob))
        assert (status, answer["offset"]) == (201, 0)  # declared anew, from the start
    finally:
        await relay.runner.cleanup()
