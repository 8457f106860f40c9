"""A change another relay process committed on the shared database, then died.

Relay processes on one PostgreSQL database tell each other to forget cached
devices, close a revoked device's sockets and end logged-out sessions.  A
signal sent after the commit was lost when the process died in between, or
PostgreSQL went down then (the PostgreSQL crash suite met both); the storage
now sends it in the committing transaction.  Here the change is committed
through the storage layer alone, as such a process left it: the relay
process that cached the old facts must hear of it, and decide a refusal on
the stored facts even before it has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from postgres import postgres_database
from ws_close import received_close_code

import e2e_recall as er
from e2e_recall import wire
from relay.storage.postgres import PostgresStorage
from relay.storage.wrap_key_records import WrapKeyRecord

from driver import Person
from relay_process import relay_process, target
from rotation_cases import issue


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
async def pair(tmp_path: Path, dsn: str) -> AsyncIterator[tuple[Person, Person]]:
    """Alice and Bob on one relay process over the test's database."""
    with relay_process(tmp_path, None, "--database-url", dsn) as relay:
        async with aiohttp.ClientSession() as http:
            at = await target(http, relay.url())
            alice, bob = Person("alice", at, http), Person("bob", at, http)
            await alice.add_device(handle="alice")
            await bob.add_device(handle="bob")
            yield alice, bob


async def test_a_wrap_to_a_key_rotated_unsignalled_is_accepted_not_stale_key(
    pair: tuple[Person, Person], dsn: str
) -> None:
    alice, bob = pair
    await alice.send(bob, "before")  # the relay now caches Bob's device and certificate

    device = bob.devices[0]
    identity = bob.identity.public_key
    old = er.verify_device_certificate(device.certificate, identity, now=None)
    new_key = er.WrapPrivateKey.generate(er.WrapSuite.X25519)
    certificate = issue(bob, device, new_key)
    now = int(time.time() * 1000)
    storage = PostgresStorage(dsn)  # another process's commit, without its signal
    await storage.open()
    try:
        assert await storage.rotate_certificate(
            device.secrets.device_id,
            device.certificate,
            certificate,
            WrapKeyRecord(
                device_id=device.secrets.device_id,
                key_id=old.wrap_key.key_id,
                certificate=device.certificate,
                created_at=old.created_at,
                usable_until=now + 60_000,
                superseded_at=now,
            ),
        )
    finally:
        await storage.close()

    header, sealed = alice.seal(bob, "to the new key")
    wrap = er.wrap_message_key(
        sealed.message_key,
        new_key.public_key,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        device_id=device.secrets.device_id,
    )
    body = {
        "envelope": sealed.envelope,
        "wraps": [
            {
                "device_id": device.secrets.device_id,
                "wrap": wrap,
                "key_id": new_key.public_key.key_id,
            }
        ],
        "blobs": [],
    }
    # within the cache's 10 s: the relay's entry still names the old certificate
    await alice.call("POST", "/v1/messages", body)
    report = await alice.report(header.message_id)
    assert [line["state"] for line in report["devices"]] == ["queued"]


async def test_a_revocation_committed_by_a_process_that_died_closes_the_device_here(
    pair: tuple[Person, Person], dsn: str
) -> None:
    alice, bob = pair
    await bob.add_device()
    await alice.send(bob, "before")  # the relay now caches both of Bob's devices
    revoked = bob.devices[1].secrets.device_id
    async with bob.websocket(device=1) as ws:
        while wire.decode((await asyncio.wait_for(ws.receive(), 10)).data)["type"] != ("caught_up"):
            pass
        storage = PostgresStorage(dsn)  # the other process: it commits, then dies
        await storage.open()
        try:
            outcome = await storage.revoke_device(revoked, int(time.time() * 1000), [])
        finally:
            await storage.close()
        assert outcome.newly
        # At once, well within the directory cache's 10 s: a send that leaves the
        # revoked device out is not refused as missing one of Bob's devices ...
        header, sealed = alice.seal(bob, "after")
        wraps = alice.wraps_to(bob, header, sealed.message_key)
        wraps = [w for w in wraps if w["device_id"] != revoked]
        body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        await alice.call("POST", "/v1/messages", body)
        # ... and the revoked device's socket here is closed (nothing else would).
        assert await received_close_code(ws, timeout=5) == 1008
    report = await alice.report(header.message_id)
    assert [line["state"] for line in report["devices"]] == ["queued"]
