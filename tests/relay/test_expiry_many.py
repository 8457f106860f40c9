"""Many timers due at one moment, at a real relay process: the batched timer job.

The job destroys due messages a batch at a time in one write transaction;
this checks that nothing of a batch is lost on the way: 300 messages from
Alice to Bob's two devices, all signed with the same ``sent_at`` and timer
so that they are due at the same millisecond.  Bob's first device fetches
each one (so it must get an ``expired`` event for it), his second never
does (so its notice must be withdrawn).  Afterwards every message is an
expired tombstone in the database (the test's backend), every report line says expired, and
neither device can fetch or open any of them.  Nothing asserts how long any
of it took; a message that reached the relay after its moment is expired
all the same, and a fetch that came too late is refused, not served.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stored_rows
from test_expiry import SENT, frames_until, until, world

import e2e_recall as er

from driver import RelayRefused, states
from relay_process import RelayProcess, WallClock

MESSAGES = 300
TIMER = 6000  # ms from the common sent_at: the sends usually take well under that
AT_ONCE = 16  # requests in flight


class FrozenClock(WallClock):
    """The test's clock stopped at one moment, so every header gets the same ``sent_at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    @property
    def now(self) -> int:
        return self.at


async def _gather(calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def _tombstones(relay: RelayProcess, ids: list[bytes]) -> dict[str, int]:
    """How the database holds these messages: states, envelopes and wraps still there."""
    database, places = relay.database, ", ".join("?" * len(ids))
    held = {
        str(state): int(number)
        for state, number in await stored_rows.query(
            database,
            f"SELECT state, count(*) FROM messages WHERE message_id IN ({places}) GROUP BY state",
            *ids,
        )
    }
    held["envelopes"] = await stored_rows.count(
        database,
        f"SELECT count(*) FROM messages WHERE message_id IN ({places}) AND envelope IS NOT NULL",
        *ids,
    )
    held["wraps"] = await stored_rows.count(
        database,
        f"SELECT count(*) FROM deliveries WHERE message_id IN ({places}) AND wrap IS NOT NULL",
        *ids,
    )
    return held


async def test_three_hundred_timers_due_at_once_are_all_destroyed_and_told(
    tmp_path: Any, database_options: dict[str, Any]
) -> None:
    async with world(tmp_path, database_options) as (relay, alice, bob):
        moment_base = alice.relay.clock.now
        alice.relay.clock = FrozenClock(moment_base)  # Bob's Person shares this target
        headers = []
        bodies = []
        for index in range(MESSAGES):
            header, sealed = alice.seal(bob, f"timed {index}", expire_after=TIMER, expire_from=SENT)
            wraps = alice.wraps_to(bob, header, sealed.message_key)
            headers.append(header)
            bodies.append({"envelope": sealed.envelope, "wraps": wraps, "blobs": []})
        ids = [h.message_id for h in headers]
        moment = moment_base + TIMER
        assert {er.expiry.message_expires_at(h) for h in headers} == {moment}

        async with bob.websocket(0) as bob_ws:
            await _gather([alice.call("POST", "/v1/messages", body) for body in bodies])

            async def fetch(message_id: bytes) -> tuple[int, str]:
                try:
                    await bob.call("GET", f"/v1/messages/{message_id.hex()}", device=0)
                except RelayRefused as refused:  # reached after the moment: refused, not served
                    return refused.status, refused.code
                return 200, "served"

            answers = await _gather([fetch(i) for i in ids])
            assert set(answers) <= {(200, "served"), (410, "message_expired")}
            fetched = {i for i, a in zip(ids, answers, strict=True) if a[0] == 200}
            told: set[bytes] = set()

            def all_told(frame: dict[str, Any]) -> bool:
                if frame.get("kind") == "expired":
                    told.add(frame["message_id"])
                return fetched <= told

            if fetched:
                await frames_until(bob_ws, all_told)
            assert told <= set(ids)
            assert fetched <= told  # every fetched copy's device was told it expired

        async def destroyed() -> dict[str, int] | None:
            held = await _tombstones(relay, ids)
            return held if held.get("expired") == MESSAGES else None

        held = await until(destroyed, f"all {MESSAGES} messages to expire")
        assert held == {"expired": MESSAGES, "envelopes": 0, "wraps": 0}

        reports = await _gather([alice.report(i) for i in ids])
        for report in reports:
            assert report["state"] == "expired"
            assert states(report) == ["expired", "expired"]
            assert all(line["expired_at"] >= moment for line in report["devices"])

        # The device that never fetched is told nothing, and no notice of any of them is
        # left in its queue (withdrawn with its copy).
        left = [e for e in await bob.sync(device=1) if e["message_id"] in set(ids)]
        assert left == []

        async def refused(message_id: bytes, device: int, path: str) -> tuple[int, str]:
            method = "POST" if path else "GET"
            with pytest.raises(RelayRefused) as answer:
                await bob.call(
                    method,
                    f"/v1/messages/{message_id.hex()}{path}",
                    {} if path else None,
                    device=device,
                )
            return answer.value.status, answer.value.code

        answers = await _gather(
            [refused(i, d, p) for i in ids for d in (0, 1) for p in ("", "/open")]
        )
        assert set(answers) == {(410, "message_expired")}
