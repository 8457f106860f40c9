"""Two real ``e2e-recall-relay serve`` processes on one PostgreSQL database.

As an operator runs them behind a load balancer: the same data directory
(so the same relay key), the same database, each its own port.  A device
connected to one process must be told at once of what arrives through the
other, a recall or a revocation through one must reach a connection held by
the other, and the background jobs must run in one process at a time, taken
over when that process dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from group_driver import create_group, seal_to_group, wraps_to_people
from postgres import postgres_database
from ws_close import received_close_code

from e2e_recall import GroupAction, wire
from e2e_recall.device_admin import sign_device_revocation
from e2e_recall.expiry import ExpireFrom

from driver import Person
from relay_process import RelayProcess, target

LEAD_RETRY = 5.0  # relay/cluster.py: how often a follower tries to take a job over


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@dataclasses.dataclass
class Processes:
    a: RelayProcess
    b: RelayProcess

    def __iter__(self) -> Iterator[RelayProcess]:
        return iter((self.a, self.b))


@pytest.fixture
def processes(tmp_path: Path, dsn: str) -> Iterator[Processes]:
    data = tmp_path / "relay"  # shared: one relay key for both, as behind a load balancer
    env = {"E2E_RECALL_RELAY_DATABASE_URL": dsn, "E2E_RECALL_RELAY_LOG_LEVEL": "info"}
    a = RelayProcess(tmp_path / "a", data, **env).start()
    b = RelayProcess(tmp_path / "b", data, **env).start()
    try:
        yield Processes(a, b)
    finally:
        a.kill()
        b.kill()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _on(http: aiohttp.ClientSession, process: RelayProcess, person: Person) -> Person:
    """The same person (identity, devices, tokens) talking to another relay process."""
    return dataclasses.replace(person, relay=await target(http, process.url()))


async def _events(
    ws: aiohttp.ClientWebSocketResponse, kind: str, message_id: bytes | None = None
) -> list[dict[str, Any]]:
    """Event frames until one of ``kind`` (for ``message_id`` if given) within 5 s each.

    5 s is 'at once', generously.  A new socket first replays what is still
    queued for the device, so a wait for one message's event names it.
    """
    seen = []
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=5)
        assert message.type is aiohttp.WSMsgType.BINARY, message
        frame = wire.decode(message.data, limits=wire.Limits(max_size=1 << 22, max_bin=1 << 21))
        if frame["type"] != "event":
            continue
        seen.append({**frame, "payload": wire.decode(frame["payload"])})
        if frame["kind"] == kind and message_id in (None, frame["message_id"]):
            return seen


def _leaders(processes: Processes, job: str) -> list[RelayProcess]:
    return [
        process
        for process in processes
        if any(
            e.get("event") == "job_leader" and e.get("job") == job for e in process.log_entries()
        )
    ]


async def test_a_message_and_its_recall_cross_between_processes_at_once(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    alice = Person("alice", await target(http, processes.a.url()), http)
    await alice.add_device(handle="alice")
    bob = Person("bob", await target(http, processes.b.url()), http)
    await bob.add_device(handle="bob")
    async with bob.websocket() as ws:
        header = await alice.send(bob, "sent through a, pushed by b")
        (notice,) = await _events(ws, "message")
        assert notice["payload"]["message_id"] == header.message_id
        assert await bob.read(alice, header.message_id) == "sent through a, pushed by b"
        await alice.recall(header)
        events = await _events(ws, "revocation")
        assert events[-1]["message_id"] == header.message_id
    report = await (await _on(http, processes.b, alice)).report(header.message_id)
    assert report["state"] == "recalled"


async def test_a_device_revoked_through_one_process_loses_its_connection_to_the_other(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    bob = Person("bob", await target(http, processes.b.url()), http)
    await bob.add_device(handle="bob")
    await bob.add_device()
    bob_via_a = await _on(http, processes.a, bob)
    async with bob.websocket(device=1) as ws:
        # Attached at process b before the revocation: else it has nothing to close yet.
        while wire.decode((await asyncio.wait_for(ws.receive(), 10)).data)["type"] != "caught_up":
            pass
        revocation = sign_device_revocation(
            bob.identity,
            device_id=bob.devices[1].secrets.device_id,
            revoked_at=int(time.time() * 1000),
            relay=bob.relay.relay_id,
        ).signed
        await bob_via_a.call(
            "POST",
            f"/v1/devices/{bob.devices[1].secrets.device_id.hex()}/revoke",
            {"revocation": revocation},
            device=0,
        )
        assert await received_close_code(ws, timeout=5) == 1008
    for process in processes:  # and its token works at neither process
        async with http.get(
            process.url() + "/v1/sync?after=0",
            headers={"Authorization": f"Bearer {bob.devices[1].token}"},
        ) as answer:
            assert answer.status == 401


async def test_each_job_runs_in_one_process_and_the_other_takes_it_over(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    deadline = time.monotonic() + 10
    while not (_leaders(processes, "timers") and _leaders(processes, "retention")):
        assert time.monotonic() < deadline, "no process took the jobs"
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * LEAD_RETRY)  # the follower tried at least once more meanwhile
    (timers,) = _leaders(processes, "timers")
    assert len(_leaders(processes, "retention")) == 1
    survivor = processes.b if timers is processes.a else processes.a

    alice = Person("alice", await target(http, survivor.url()), http)
    await alice.add_device(handle="alice")
    bob = Person("bob", await target(http, survivor.url()), http)
    await bob.add_device(handle="bob")
    # A timer sent through the process that does not run the timer job fires on time:
    # the new timer is signalled to the leader, which would otherwise sleep up to a minute.
    async with bob.websocket() as ws:
        header = await alice.send(
            bob, "gone in two seconds", expire_after=2000, expire_from=ExpireFrom.SENT
        )
        await _events(ws, "message")
        await bob.read(alice, header.message_id)  # a copy never fetched is dropped untold
        events = await _events(ws, "expired", header.message_id)
        assert events[-1]["message_id"] == header.message_id

    timers.send_signal(signal.SIGKILL)
    timers.wait()
    deadline = time.monotonic() + 3 * LEAD_RETRY + 5
    while not any(
        e.get("event") == "job_leader" and e.get("job") == "timers" for e in survivor.log_entries()
    ):
        assert time.monotonic() < deadline, "the survivor did not take the timer job over"
        await asyncio.sleep(0.2)
    async with bob.websocket() as ws:
        header = await alice.send(
            bob, "after the failover", expire_after=1000, expire_from=ExpireFrom.SENT
        )
        await _events(ws, "message")
        await bob.read(alice, header.message_id)  # a copy never fetched is dropped untold
        events = await _events(ws, "expired", header.message_id)
        assert events[-1]["message_id"] == header.message_id


async def test_a_group_send_checked_on_a_membership_another_process_moved_is_stored(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    """Process b caches the group; a adds Carol and removes her: the members are as b saw.

    The wraps b checks against its cached membership are right, but the group's head
    moved, so the storing transaction refuses b's check; b checks again on the database
    rather than refusing a sender who did everything right (409 group_changed before).
    """
    people = []
    for name in ("alice", "bob", "carol"):
        person = Person(name, await target(http, processes.a.url()), http)
        await person.add_device(handle=name)
        people.append(person)
    alice, bob, carol = people
    group = await create_group(alice, bob)
    alice_via_b = await _on(http, processes.b, alice)

    async def send_via_b(text: str) -> bytes:
        header, sealed = seal_to_group(alice_via_b, group, text)
        wraps = wraps_to_people(alice_via_b, group.members, header, sealed.message_key)
        body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        await alice_via_b.call("POST", "/v1/messages", body)
        return header.message_id

    await send_via_b("b now caches the group")
    await group.change(alice, GroupAction.ADD, [carol])  # both through process a
    await group.change(alice, GroupAction.REMOVE, [carol])
    message_id = await send_via_b("checked on b's cached membership")
    report = await alice_via_b.report(message_id)
    assert {line["user"] for line in report["devices"]} == {bob.user_id}
