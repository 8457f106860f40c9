"""What a recall leaves in PostgreSQL's files: after the relay's own scrub, not one window.

A relay on a PostgreSQL server of its own (tests/support/remanence_pg.py)
stores messages with random bodies, each to a person with two devices;
some are fetched, some opened by one device, and ANALYZE runs, as
autovacuum would, so that the planner's statistics could copy ciphertext
or wraps into ``pg_statistic`` if the schema let it.  Before the recall
every scanned file together must hold windows of them (a scan that sees
nothing cannot pass for a clean disk); then all are recalled, and the test
waits, with a deadline, for the relay's scrub (``VACUUM FULL`` of the
content tables, ``CHECKPOINT``, a WAL switch and another checkpoint), which
the test never runs itself.  After it no 16-byte window of any ciphertext
(with its nonce and signature) or wrap may be in any file of the data
directory or the server's log, and no plaintext canary ever.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

import e2e_recall as er
from e2e_recall import wire
from relay.bench.postgres_server import PostgresServer

from driver import Clock, Person, Relay, start_relay
from remanence_harness import Windows, scan
from remanence_pg import read_present, scrub_server, server_files

COUNT = 20


@pytest.fixture
def backend() -> str:
    """A server of this test's own, not the conftest's shared cluster (see the docstring)."""
    return "postgresql"


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    started = scrub_server()
    try:
        yield started
    finally:
        started.stop()


def _scrubs(relay: Relay) -> float:
    for metric in relay.services.metrics.db_scrub_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0


async def _send(alice: Person, bob: Person, canary: str) -> tuple[list[er.Header], Windows]:
    secrets = Windows()
    headers = []
    for index in range(COUNT):
        header, sealed = alice.seal(bob, f"{canary} {os.urandom(200).hex()}")
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
        envelope = wire.decode(sealed.envelope)
        secrets.add(envelope["nonce"] + envelope["ciphertext"] + envelope["signature"])
        for item in wraps:
            secrets.add(item["wrap"])
        path = f"/v1/messages/{header.message_id.hex()}"
        if index % 3 == 1:  # delivered, still sealed
            await bob.call("GET", path)
        elif index % 3 == 2:  # opened by one device of two: its wrap released, one left
            await bob.read(alice, header.message_id, device=1)
        headers.append(header)
    secrets.seal()
    return headers, secrets


def _no_canary(files: list[tuple[Path, bytes]], canary: str) -> None:
    for path, data in files:
        assert canary.encode() not in data, f"plaintext in {path}"


async def test_a_recall_leaves_no_window_in_any_file_of_the_server(
    tmp_path: Path, server: PostgresServer
) -> None:
    dsn = server.create_database("relay")
    relay = await start_relay(
        tmp_path / "relay", Clock(), database_url=dsn, db_pool_size=4, scrub_interval="1s"
    )
    try:
        async with aiohttp.ClientSession() as http:
            alice, bob = Person("alice", relay, http), Person("bob", relay, http)
            await alice.add_device()
            await bob.add_device()
            await bob.add_device()
            canary = os.urandom(12).hex()
            headers, secrets = await _send(alice, bob, canary)
            server.sql("relay", "ANALYZE")  # what autovacuum does on its own, later
            server.sql("postgres", "CHECKPOINT")  # the rows reach the table files too
            stored = read_present(server_files(server))
            hits, _, _, _ = scan(stored, secrets, Windows())
            assert len({hit.split("@")[0] for hit in hits}) >= 2, hits  # a table file, the WAL
            _no_canary(stored, canary)

            before = _scrubs(relay)
            for header in headers:
                await alice.recall(header)
            started = time.monotonic()
            while True:  # the relay's own scrub: the test neither vacuums nor checkpoints
                left = read_present(server_files(server))
                hits, scanned, _, _ = scan(left, secrets, Windows())
                if not hits and _scrubs(relay) > before:
                    break
                assert time.monotonic() - started < 20, f"still on disk: {hits[:10]}"
                await asyncio.sleep(0.5)
            assert scanned > 1 << 20
            _no_canary(left, canary)
            outcome = relay.services.storage.last_scrub  # type: ignore[attr-defined]
            assert outcome.checkpointed
            assert outcome.wal_switched
    finally:
        await relay.runner.cleanup()
