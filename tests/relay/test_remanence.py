"""What the relay keeps on disk: never plaintext, and after a purge not even the ciphertext.

The blindness test sends a random canary and looks for it in every byte the
relay keeps (database, WAL, SHM, logs): first right after the sends, while
everything is still in the WAL and no checkpoint has run since, then after
a recall.  The purge tests destroy messages the three ways the relay does
(a recall, the retention job's expiry, and the deletion of a message every
device has opened) and then look for any 16-byte window of their
ciphertexts or wraps in every file; an attachment's blob, recalled, must
leave no window in the blob directory or the database files.  No test checkpoints the database
itself: each waits (with a deadline) for the relay's own checkpoint, so a
relay that forgot to make purged bytes leave its WAL fails here.

These are SQLite's files, so the module runs on SQLite alone; on
PostgreSQL the scan covers the server's own files, on a server of its own
(test_remanence_postgres.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire
from relay.logs import JsonFormatter

from blob_client import blob_files, download, send_with, upload
from driver import MINUTE, Clock, Person, Relay, start_relay

WINDOW = 16
DAY = 24 * 60 * MINUTE


@pytest.fixture
def backend() -> str:
    """SQLite only (the module docstring says why); overrides conftest's parameter."""
    return "sqlite"


def _windows(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def _hits(files: list[Path], windows: set[bytes]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        for i in range(len(data) - WINDOW + 1):
            if data[i : i + WINDOW] in windows:
                found.append(f"{path.name}@{i}")
                break
    return found


def _relay_files(relay: Relay) -> list[Path]:
    return [p for p in relay.data_dir.iterdir() if p.is_file()]


def _truncations(relay: Relay) -> float:
    counter = relay.services.metrics.db_checkpoints
    return float(counter.labels("truncated")._value.get())


async def _wait_until_gone(relay: Relay, secrets: set[bytes], since: float) -> None:
    """Wait for the relay's own checkpoint to leave no window of ``secrets`` on disk."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        hits = _hits(_relay_files(relay), secrets)
        wal = relay.data_dir / "relay.db-wal"
        wal_size = wal.stat().st_size if wal.exists() else 0
        if not hits and wal_size == 0:
            break
        assert loop.time() < deadline, f"still on disk: {hits}; the WAL holds {wal_size} bytes"
        await asyncio.sleep(0.05)
    assert _truncations(relay) > since, "the bytes left without a checkpoint by the relay"


async def _send_secrets(
    alice: Person, bob: Person, count: int
) -> tuple[list[er.Header], set[bytes]]:
    """Messages whose ciphertext and wraps are the secrets a purge must destroy."""
    secrets: set[bytes] = set()
    headers = []
    for index in range(count):
        header, sealed = alice.seal(bob, os.urandom(300).hex() + f" #{index}")
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
        envelope = wire.decode(sealed.envelope)
        secrets |= _windows(envelope["nonce"] + envelope["ciphertext"] + envelope["signature"])
        for item in wraps:
            secrets |= _windows(item["wrap"])
        headers.append(header)
    return headers, secrets


async def test_blindness_no_plaintext_anywhere(people: tuple[Person, Person]) -> None:
    alice, bob = people
    relay = alice.relay
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        canary = os.urandom(24).hex()
        before = _truncations(relay)
        sent = []
        for _ in range(3):
            header, sealed = alice.seal(bob, f"the canary is {canary}")
            wraps = await alice.wraps_for(bob, header, sealed.message_key)
            await alice.call(
                "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
            )
            sent.append((header, sealed))
        # before any checkpoint: the messages are in the WAL, ciphertext but no canary
        assert _truncations(relay) == before
        wal, shm = relay.data_dir / "relay.db-wal", relay.data_dir / "relay.db-shm"
        assert wal.stat().st_size > 0
        assert shm.exists()
        ciphertext = wire.decode(sent[0][1].envelope)["ciphertext"]
        assert _hits([wal], _windows(ciphertext)), "the scan must see what the WAL holds"
        for form in (canary.encode(), bytes.fromhex(canary)):
            for path in _relay_files(relay):
                assert form not in path.read_bytes(), f"{path.name} before the checkpoint"

        for header, _ in sent:
            assert canary in await bob.read(alice, header.message_id)
        recalled = await alice.send(bob, f"recall me {canary}")
        await bob.call("GET", f"/v1/messages/{recalled.message_id.hex()}")
        await alice.recall(recalled)
        await _wait_until_gone(relay, set(), before)  # the relay's own checkpoint ran
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logs = log_text.getvalue()
    assert '"event":"request"' in logs  # the relay did log, so the scan means something
    for form in (canary.encode(), bytes.fromhex(canary)):
        assert form not in logs.encode()
        for path in _relay_files(relay):
            assert form not in path.read_bytes(), path.name
    tokens = [d.token for p in people for d in p.devices if d.token]
    assert tokens
    assert not any(token in logs for token in tokens)


async def test_a_recall_leaves_no_window_of_ciphertext_or_wrap(
    people: tuple[Person, Person],
) -> None:
    alice, bob = people
    relay = alice.relay
    await bob.add_device()  # two recipient devices: two wraps per message
    headers, secrets = await _send_secrets(alice, bob, 40)
    for header in headers[:20]:  # half were fetched, a quarter opened on one device
        await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    for header in headers[:10]:
        await bob.read(alice, header.message_id)
    assert _hits(_relay_files(relay), secrets), "before the recall the ciphertext must be there"
    relay.clock.advance(MINUTE)
    before = _truncations(relay)
    for header in headers:
        await alice.recall(header)
    await _wait_until_gone(relay, secrets, before)


async def test_opening_on_every_device_leaves_no_window(people: tuple[Person, Person]) -> None:
    alice, bob = people
    relay = alice.relay
    await bob.add_device()
    headers, secrets = await _send_secrets(alice, bob, 20)
    assert _hits(_relay_files(relay), secrets)
    before = _truncations(relay)
    for header in headers:  # "complete": every device has its key, the relay keeps no copy
        await bob.read(alice, header.message_id, device=0)
        await bob.read(alice, header.message_id, device=1)
    report = await alice.report(headers[0].message_id)
    assert report["state"] == "complete"
    await _wait_until_gone(relay, secrets, before)


@pytest.fixture
async def expiring(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Relay]:
    relay = await start_relay(tmp_path, Clock(), purge_interval="100ms")
    yield relay
    await relay.runner.cleanup()


async def test_expiry_by_the_retention_job_leaves_no_window(
    expiring: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob = Person("alice", expiring, http), Person("bob", expiring, http)
    await alice.add_device()
    await bob.add_device()
    headers, secrets = await _send_secrets(alice, bob, 20)
    for header in headers[:10]:  # some delivered sealed, none opened
        await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    assert _hits(_relay_files(expiring), secrets)
    before = _truncations(expiring)
    expiring.clock.advance(15 * DAY)  # past the 14-day retention: the job expires them itself
    await _wait_until_gone(expiring, secrets, before)
    stats = await expiring.services.storage.stats()
    assert stats.get("messages_expired") == len(headers)
    assert stats.get("messages_live", 0) == 0


async def test_a_recall_leaves_no_window_of_a_blob(people: tuple[Person, Person]) -> None:
    """The blob's bytes leave the blob directory and were never in the database files."""
    alice, bob = people
    relay = alice.relay
    blobs = [os.urandom(size) for size in (65553, 3000)]
    ids = [await upload(alice, blob) for blob in blobs]
    header = await send_with(alice, bob, "the wrong attachment", ids)
    await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    await download(bob, ids[1])  # one file downloaded, one not
    secrets = set().union(*(_windows(blob) for blob in blobs))
    assert _hits(blob_files(relay), secrets), "before the recall the blobs must be there"
    relay.clock.advance(MINUTE)
    before = _truncations(relay)
    await alice.recall(header)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while blob_files(relay) or _hits(_relay_files(relay), secrets):
        assert loop.time() < deadline, f"still on disk: {blob_files(relay)}"
        await asyncio.sleep(0.05)
    await _wait_until_gone(relay, secrets, before)
