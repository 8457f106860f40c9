"""Limits an operator sets: request rate, storage quota, message size; and group commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er
from relay.ratelimit import RateLimiter

from driver import Clock, Person, Relay, RelayRefused, start_relay, states


@pytest.fixture
async def limited(
    tmp_path: Path, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> AsyncIterator[tuple[Relay, Person, Person]]:
    relay = await start_relay(
        tmp_path,
        Clock(),
        requests_per_minute=40,
        user_quota="4KiB",
        max_message_size="2KiB",
        **database_options,
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


# Group commit is how the SQLite engine batches its one writer; on PostgreSQL every
# transaction commits on its own connection (the server groups WAL flushes itself).
@pytest.mark.parametrize("backend", ["sqlite"])
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
            alice.call("POST", "/v1/messages", {"envelope": envelope, "wraps": wraps, "blobs": []})
            for envelope, wraps in prepared
        )
    )
    after = metrics.db_batch_size.collect()[0].samples
    batches = next(s.value for s in after if s.name.endswith("_count")) - count_before
    jobs = next(s.value for s in after if s.name.endswith("_sum")) - jobs_before
    assert jobs >= 60
    assert batches < jobs  # some commits carried several sends: one fsync for many acknowledgements


async def test_concurrent_sends_stop_exactly_at_the_quota(
    limited: tuple[Relay, Person, Person],
) -> None:
    relay, alice, bob = limited
    prepared = []
    for index in range(10):
        header, sealed = alice.seal(bob, f"{index:02d}" + "z" * 1000)
        prepared.append((sealed.envelope, await alice.wraps_for(bob, header, sealed.message_key)))
    size = len(prepared[0][0])
    assert {len(envelope) for envelope, _ in prepared} == {size}

    async def send(envelope: bytes, wraps: list[dict[str, bytes]]) -> str:
        try:
            await alice.call(
                "POST", "/v1/messages", {"envelope": envelope, "wraps": wraps, "blobs": []}
            )
        except RelayRefused as exc:
            return f"{exc.status} {exc.code}"
        return "stored"

    outcomes = await asyncio.gather(*(send(e, w) for e, w in prepared))
    fits = 4096 // size
    assert outcomes.count("stored") == fits
    assert outcomes.count("413 quota_exceeded") == len(prepared) - fits
    assert await relay.services.storage.stored_bytes(alice.user_id) == fits * size


async def test_a_replacement_is_stored_counted_and_held_to_the_quota(
    limited: tuple[Relay, Person, Person],
) -> None:
    relay, alice, bob = limited
    stored = relay.services.metrics.messages_stored
    original = await alice.send(bob, "a" * 200)
    sent = 1
    while (outcome := await _outcome(alice.send(bob, "a" * 200))) == "stored":
        sent += 1
    assert outcome == "quota_exceeded"
    assert 3 <= sent < 20
    assert stored._value.get() == sent
    held = await relay.services.storage.stored_bytes(alice.user_id)
    relay.clock.advance(60_000)
    with pytest.raises(RelayRefused) as refused:  # more than the recall frees plus the room left
        await _recall_with(alice, bob, original, "c" * 1000)
    assert (refused.value.status, refused.value.code) == (413, "quota_exceeded")
    assert states(await alice.report(original.message_id)) == ["queued"]  # nothing was recalled
    assert await relay.services.storage.stored_bytes(alice.user_id) == held
    answer = await _recall_with(alice, bob, original, "d" * 200)  # fits in the freed room
    assert answer["replacement_id"] is not None
    assert stored._value.get() == sent + 1
    size = answer["replacement_size"]
    assert await relay.services.storage.stored_bytes(alice.user_id) == held - held // sent + size


async def _outcome(call: Any) -> str:
    try:
        await call
    except RelayRefused as exc:
        return str(exc.code)
    return "stored"


async def _recall_with(
    alice: Person, bob: Person, original: er.Header, text: str
) -> dict[str, Any]:
    header, sealed = alice.seal(bob, text, replaces=original.message_id)
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    answer = await alice.recall(
        original,
        replacement={"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
        replacement_id=header.message_id,
    )
    return {**answer, "replacement_size": len(sealed.envelope)}
