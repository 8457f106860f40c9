"""The crash suite on PostgreSQL, short: two relay processes, SIGKILLs of them and of PostgreSQL.

Each run starts a PostgreSQL server of its own (``initdb`` in a temporary
directory: the PostgreSQL kill must hit no other test's server) and two
relay processes on one database, each client request going to either.
``python reliability/crash.py --postgres`` runs the long version.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
from crash_fleet import RelayFleet, log_problems
from crash_pgkill import RECOVERY_LIMIT

from e2e_recall import wire

from crash_harness import CrashConfig, crash_suite
from driver import Person, RelayRefused
from relay_process import target

FRAMES = wire.Limits(max_size=1 << 22, max_bin=1 << 21)


async def test_kills_of_relays_and_of_postgresql_lose_nothing_and_bring_nothing_back(
    tmp_path: Path,
) -> None:
    config = CrashConfig(
        operations=240,
        kills=4,
        postgres_kills=1,
        people=4,
        workers=8,
        seed=11,
        postgres=True,
        relays=2,
        linking=False,  # the SQLite run covers it; the time goes to the kills here
    )
    findings = await crash_suite(tmp_path, config)
    print("\n".join(f"{name}: {value}" for name, value in findings.table()))
    assert findings.problems() == {}
    assert findings.kills == 4
    assert findings.postgres_kills == 1
    assert findings.restarts == 3 + 1  # the relay kills, and the start-up sweep's check
    # Whether the other process acknowledged anything while one was down is up to where
    # the three relay kills land (a clean-clone CI run had 0, others 23 to 67); the long
    # run's table gives the figure, and tests/relay/test_cluster.py checks the crossing.
    # PostgreSQL down: every relay answered 503 with a sentence, then recovered by itself
    assert findings.outage_answers == {"503 storage": 2}
    assert len(findings.recovery_seconds) == 2
    assert max(findings.recovery_seconds) < RECOVERY_LIMIT
    assert set(findings.unavailable) <= {"503 storage", "503 unavailable"}
    # The reckoning looked at real data. How many copies stay unopened and unrecalled
    # (so can be checked present) is up to the scheduler: a CI run left 9 of 40 sends.
    assert findings.checked_present + findings.checked_group_present > 0
    assert findings.checked_recalled > 0
    assert findings.operations["send ok"] + findings.operations["send with files ok"] > 0
    assert findings.operations["recall ok"] > 0
    assert findings.operations["rotate ok"] > 0


async def _frames_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, message_id: bytes
) -> list[str]:
    """Frame types until the event of ``kind`` for ``message_id``, each within 5 s."""
    seen = []
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=5)
        assert message.type is aiohttp.WSMsgType.BINARY, message
        frame = wire.decode(message.data, limits=FRAMES)
        seen.append(frame["type"])
        if frame.get("kind") == kind and frame.get("message_id") == message_id:
            return seen


async def test_after_postgresql_restarts_a_connection_held_by_one_process_hears_the_other(
    tmp_path: Path,
) -> None:
    """The LISTEN connection dies with PostgreSQL; the relay listens again and pushes on its own.

    Bob's WebSocket stays open at process a through the outage; Alice sends
    through process b once PostgreSQL is back.  Only a re-established LISTEN
    at a tells it of b's message, so the push proves the recovery.
    """
    fleet = RelayFleet(tmp_path, postgres=True, relays=2, E2E_RECALL_RELAY_LOG_LEVEL="info")
    try:
        fleet.start()
        a, b = fleet.processes
        async with aiohttp.ClientSession() as http:
            bob = Person("bob", await target(http, a.url()), http)
            await bob.add_device(handle="bob")
            alice = Person("alice", await target(http, b.url()), http)
            await alice.add_device(handle="alice")
            async with bob.websocket() as ws:
                while wire.decode((await asyncio.wait_for(ws.receive(), 10)).data)["type"] != (
                    "caught_up"
                ):
                    pass
                assert fleet.postgres is not None
                await asyncio.to_thread(fleet.postgres.kill)
                await asyncio.sleep(1.0)
                async with http.get(b.url() + "/healthz") as response:
                    assert response.status == 503
                await asyncio.to_thread(fleet.postgres.restart)
                restarted = time.monotonic()
                header = None
                refusals = set()
                while header is None and time.monotonic() - restarted < RECOVERY_LIMIT:
                    try:  # the first requests may still meet the old pool's dead connections
                        header = await alice.send(bob, "after the outage")
                    except RelayRefused as refused:
                        refusals.add((refused.status, refused.code))
                        await asyncio.sleep(0.2)
                assert refusals <= {(503, "storage")}
                assert header is not None
                assert "event" in await _frames_until(ws, "message", header.message_id)
                assert not ws.closed
            assert await bob.read(alice, header.message_id) == "after the outage"
        events = [entry.get("event") for entry in a.log_entries()]
        assert "listen_lost" in events
        assert "listen_restored" in events
    finally:
        fleet.stop()
    assert log_problems(fleet.logs()) == []


async def test_requests_in_flight_when_postgresql_dies_get_503_never_500(tmp_path: Path) -> None:
    """Sends keep coming at both processes while PostgreSQL is killed, down, and back.

    A request whose connection the dying server leaves half-used must be
    told ``503 storage`` like the ones that find it down, and each sender
    gets through again once it is back, with no restart of either relay.
    """
    fleet = RelayFleet(tmp_path, postgres=True, relays=2)
    answers: Counter[str] = Counter()
    try:
        fleet.start()
        async with aiohttp.ClientSession() as http:
            people = []
            for index, process in enumerate(fleet.processes * 4):
                person = Person(f"p{index}", await target(http, process.url()), http)
                await person.add_device()
                people.append(person)
            restarted: list[float] = []

            async def keep_sending(sender: Person, to: Person) -> None:
                while not restarted or answers[f"{sender.name} ok after"] == 0:
                    try:
                        await sender.send(to, "through the outage")
                        answers[f"{sender.name} ok after" if restarted else "ok"] += 1
                    except RelayRefused as refused:
                        answers[f"{refused.status} {refused.code}"] += 1
                        await asyncio.sleep(0.05)
                    assert not restarted or time.monotonic() - restarted[0] < RECOVERY_LIMIT

            senders = [
                asyncio.create_task(keep_sending(p, people[(i + 1) % len(people)]))
                for i, p in enumerate(people)
            ]
            await asyncio.sleep(1.0)
            assert fleet.postgres is not None
            await asyncio.to_thread(fleet.postgres.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(fleet.postgres.restart)
            restarted.append(time.monotonic())
            await asyncio.gather(*senders)
    finally:
        fleet.stop()
    refusals = {key for key in answers if key[0].isdigit()}
    assert refusals == {"503 storage"}, answers
    assert answers["ok"] > 0
    assert log_problems(fleet.logs()) == []
