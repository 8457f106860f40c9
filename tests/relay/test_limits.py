"""Limits an operator sets: request rate, storage quota, message size; and group commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from relay.ratelimit import RateLimiter

from driver import Clock, Person, Relay, RelayRefused, start_relay


@pytest.fixture
async def limited(
    tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Relay, Person, Person]]:
    relay = await start_relay(
        tmp_path, Clock(), requests_per_minute=40, user_quota="4KiB", max_message_size="2KiB"
    )
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device()
    await bob.add_device()
    yield relay, alice, bob
    await relay.runner.cleanup()


async def test_requests_per_minute_per_user(limited: tuple[Relay, Person, Person]) -> None:
    _, alice, bob = limited
    refused = None
    for _ in range(60):
        try:
            await alice.call("GET", f"/v1/users/{bob.user_id.hex()}")
        except RelayRefused as exc:
            refused = exc
            break
    assert refused is not None
    assert (refused.status, refused.code) == (429, "rate_limited")
    await bob.call("GET", f"/v1/users/{alice.user_id.hex()}")  # another user is not limited


def test_the_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, clock=lambda: now[0])
    assert all(limiter.allow(b"u") for _ in range(60))
    assert not limiter.allow(b"u")
    now[0] += 1.0  # one second: one more request
    assert limiter.allow(b"u")
    assert not limiter.allow(b"u")
    assert RateLimiter(per_minute=0).allow(b"u")  # 0 means no limit


async def test_storage_quota_and_message_size(limited: tuple[Relay, Person, Person]) -> None:
    _, alice, bob = limited
    with pytest.raises(RelayRefused) as too_big:
        await alice.send(bob, "x" * 3000)
    assert (too_big.value.status, too_big.value.code) == (413, "message_too_large")
    sent, over = 0, None
    for _ in range(20):
        try:
            await alice.send(bob, "y" * 1000)
        except RelayRefused as exc:
            over = exc
            break
        sent += 1
    assert over is not None
    assert (over.status, over.code) == (413, "quota_exceeded")
    assert 2 <= sent < 20
    assert "quota" in (over.message or "")


async def test_concurrent_writes_share_commits(people: tuple[Person, Person]) -> None:
    alice, bob = people
    metrics = alice.relay.services.metrics
    before = metrics.db_batch_size.collect()[0].samples
    count_before = next(s.value for s in before if s.name.endswith("_count"))
    jobs_before = next(s.value for s in before if s.name.endswith("_sum"))
    prepared = []
    for index in range(60):
        header, sealed = alice.seal(bob, f"burst {index}")
        prepared.append((sealed.envelope, await alice.wraps_for(bob, header, sealed.message_key)))
    await asyncio.gather(
        *(
            alice.call("POST", "/v1/messages", {"envelope": envelope, "wraps": wraps})
            for envelope, wraps in prepared
        )
    )
    after = metrics.db_batch_size.collect()[0].samples
    batches = next(s.value for s in after if s.name.endswith("_count")) - count_before
    jobs = next(s.value for s in after if s.name.endswith("_sum")) - jobs_before
    assert jobs >= 60
    assert batches < jobs  # some commits carried several sends: one fsync for many acknowledgements
