"""Fault injection: a full disk, an I/O error or a locked database at every step of a write.

The relay runs in-process on loopback with a real SQLite file whose engine
takes a fault plan (tests/support/faults.py).  For each of send, open and
recall, the suite first counts the steps the write takes (the transaction's
start, each statement, the commit), then makes each step fail in turn on a
fresh message, and checks three promises every time:

- no acknowledgement without a commit: the answer is 503, never a 2xx;
- nothing half-applied: the message, its deliveries, the events and the
  sender's quota are exactly as before;
- recovery without a manual step: the same request, sent again once the
  fault is gone, succeeds, and the database passes its integrity check.

Then the same for the checkpoint and the scrub after a recall (the recall
stands; the WAL and the file are cleaned once the fault is gone), and the
same with a real full disk (a page cap) and a real lock held by another
connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.storage.sqlite import SqliteStorage

from driver import MINUTE, Clock, Person, Relay, RelayRefused, start_relay
from faults import KINDS, FaultPlan

WINDOW = 16


@dataclass
class Stage:
    relay: Relay
    plan: FaultPlan
    storage: SqliteStorage
    alice: Person
    bob: Person


@pytest.fixture
def scrub_interval() -> float:
    """Seconds between the relay's scrubs; a test may parametrise it."""
    return 1.0


@pytest.fixture
async def stage(tmp_path: Path, scrub_interval: float) -> AsyncIterator[Stage]:
    plan = FaultPlan()
    clock = Clock()
    storage = SqliteStorage(
        tmp_path / "relay" / "relay.db", clock, scrub_interval=scrub_interval, faults=plan
    )
    relay = await start_relay(tmp_path / "relay", clock, storage=storage)
    async with aiohttp.ClientSession() as http:
        alice, bob = Person("alice", relay, http), Person("bob", relay, http)
        await alice.add_device()
        await bob.add_device()
        yield Stage(relay, plan, storage, alice, bob)
    await relay.runner.cleanup()


async def _snapshot(stage: Stage, message_id: bytes) -> tuple[Any, ...]:
    view = await stage.storage.get_message(message_id)
    stats = await stage.storage.stats()
    quota = await stage.storage.stored_bytes(stage.alice.user_id)
    return (view, stats, quota)


Operation = Callable[[], Awaitable[dict[str, Any]]]


async def _prepare(stage: Stage, kind: str) -> tuple[bytes, Operation]:
    """A fresh message, and the write under test as a request that can be sent again."""
    alice, bob = stage.alice, stage.bob
    header, sealed = alice.seal(bob, f"fault test, {kind}")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    path = f"/v1/messages/{header.message_id.hex()}"
    if kind == "send":
        return header.message_id, lambda: alice.call("POST", "/v1/messages", body)
    await alice.call("POST", "/v1/messages", body)
    await bob.call("GET", path)
    if kind == "open":
        return header.message_id, lambda: bob.call("POST", path + "/open", {})
    await bob.call("POST", path + "/open", {})
    stage.relay.clock.advance(MINUTE)
    revocation = alice.revocation(header).signed
    recall = {"revocation": revocation, "replacement": None}
    return header.message_id, lambda: alice.call("POST", path + "/recall", recall)


async def _count_steps(stage: Stage, kind: str) -> int:
    """How many statements the write of ``kind`` runs (on a message of its own)."""
    _, operation = await _prepare(stage, kind)
    stage.plan.reset_counts()
    await operation()
    return stage.plan.counts["execute"]


async def _fails_then_recovers(stage: Stage, kind: str, fault: str, step: Any, nth: int) -> None:
    message_id, operation = await _prepare(stage, kind)
    before = await _snapshot(stage, message_id)
    stage.plan.arm(step, fault, nth=nth)
    with pytest.raises(RelayRefused) as refused:
        await operation()
    assert refused.value.status == 503, (kind, fault, step, nth, refused.value.body)
    assert refused.value.code == "storage"
    assert stage.plan.fired == 1
    assert await _snapshot(stage, message_id) == before, (kind, fault, step, nth)
    stage.plan.fired = 0
    answer = await operation()  # the fault has passed: the same request now goes through
    assert answer
    view = await stage.storage.get_message(message_id)
    assert view is not None
    expected = {"send": "live", "open": "complete", "recall": "recalled"}[kind]
    assert str(view.message.state) == expected
    assert await stage.storage.check() == []


@pytest.mark.parametrize("fault", sorted(KINDS))
@pytest.mark.parametrize("kind", ["send", "open", "recall"])
async def test_a_fault_at_any_step_is_refused_undone_and_recovered_from(
    stage: Stage, kind: str, fault: str
) -> None:
    statements = await _count_steps(stage, kind)
    assert statements >= 2  # the write really was counted
    await _fails_then_recovers(stage, kind, fault, "begin", 1)
    for nth in range(1, statements + 1):
        await _fails_then_recovers(stage, kind, fault, "execute", nth)
    await _fails_then_recovers(stage, kind, fault, "commit", 1)


def _windows(data: bytes) -> set[bytes]:
    return {data[i : i + WINDOW] for i in range(len(data) - WINDOW + 1)}


def _on_disk(stage: Stage, secrets: set[bytes]) -> bool:
    for path in stage.relay.database_files():
        data = path.read_bytes()
        if any(data[i : i + WINDOW] in secrets for i in range(len(data) - WINDOW + 1)):
            return True
    return False


# A scrub also truncates the WAL, so while a checkpoint is tested no scrub may come first
# and do its work (on a slow machine, one every second would).
@pytest.mark.parametrize(("step", "scrub_interval"), [("checkpoint", 3600.0), ("scrub", 1.0)])
async def test_a_failed_clean_up_after_a_recall_is_retried_by_the_relay(
    stage: Stage, step: Any
) -> None:
    alice, bob = stage.alice, stage.bob
    header, sealed = alice.seal(bob, "x" * 600)
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    await alice.call(
        "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    )
    secrets = _windows(wraps[0]["wrap"])
    assert _on_disk(stage, secrets)
    stage.plan.arm(step, "io_error", times=3)
    stage.relay.clock.advance(MINUTE)
    answer = await alice.recall(header)  # committed: the fault comes after, in the clean-up
    assert answer["report"]["state"] == "recalled"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the relay retries on its own; the test does not
        if stage.plan.fired == 3 and not _on_disk(stage, secrets):
            break
        await asyncio.sleep(0.05)
    assert stage.plan.fired == 3
    assert not _on_disk(stage, secrets)
    assert await stage.storage.check() == []


async def test_a_really_full_disk_refuses_the_send_and_recovers(stage: Stage) -> None:
    alice, bob = stage.alice, stage.bob
    header, sealed = alice.seal(bob, "big " * 15_000)
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    stage.plan.cap_pages()
    with pytest.raises(RelayRefused) as refused:
        await alice.call("POST", "/v1/messages", body)
    assert refused.value.status == 503
    assert await stage.storage.get_message(header.message_id) is None
    stage.plan.uncap_pages()
    await alice.call("POST", "/v1/messages", body)
    assert await bob.read(alice, header.message_id) == "big " * 15_000
    assert await stage.storage.check() == []


async def test_a_database_locked_by_another_process_refuses_then_recovers(stage: Stage) -> None:
    alice, bob = stage.alice, stage.bob
    holder = sqlite3.connect(stage.storage.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    header, sealed = alice.seal(bob, "while locked")
    wraps = await alice.wraps_for(bob, header, sealed.message_key)
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    try:
        with pytest.raises(RelayRefused) as refused:
            await alice.call("POST", "/v1/messages", body)  # waits out the busy timeout
        assert refused.value.status == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await alice.call("POST", "/v1/messages", body)
    assert await bob.read(alice, header.message_id) == "while locked"
