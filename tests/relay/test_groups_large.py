"""A group of 256 members: create, send, recall and report, with each step's time printed.

Registering 256 users is most of this test's time, so it is the one test of
a group this large.  Run with ``-s`` to see the times.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from group_driver import create_group, send_to_group

from e2e_recall import GroupAction

from driver import Person, Relay

MEMBERS = 256


async def test_a_group_of_256_members(relay: Relay, http: aiohttp.ClientSession) -> None:
    started = time.perf_counter()
    people = [Person(f"p{i}", relay, http) for i in range(MEMBERS + 1)]
    for start in range(0, len(people), 32):
        await asyncio.gather(*(p.add_device() for p in people[start : start + 32]))
    await people[0].add_device()  # the sender has a second device, which gets a copy
    registered = time.perf_counter()

    creator, outsider, members = people[0], people[-1], people[:MEMBERS]
    group = await create_group(creator, *members[1:])
    created = time.perf_counter()
    assert len(group.members) == MEMBERS

    header, answer = await send_to_group(creator, group, "to all 256")
    sent = time.perf_counter()
    assert answer["created"] is True

    answer = await creator.recall(header)
    recalled = time.perf_counter()
    lines = answer["report"]["devices"]
    assert len(lines) == MEMBERS  # 255 members' devices and the sender's other device
    assert {line["user"] for line in lines} == {p.user_id for p in members}
    assert all(line["state"] == "never_delivered" for line in lines)

    # Every member's device heard of the group; the removed one hears no more after.
    last = members[-1]
    await group.change(creator, GroupAction.REMOVE, [last])
    await group.change(creator, GroupAction.ADD, [outsider])
    events = [e for e in await last.sync() if e["kind"] == "group"]
    assert [e["payload"]["seq"] for e in events] == [0, 1]
    assert len(await group.chain(outsider)) == 3
    changed = time.perf_counter()

    print(
        f"\n256-member group: register {registered - started:.2f}s, "
        f"create {1000 * (created - registered):.0f} ms, "
        f"send to {len(lines)} devices {1000 * (sent - created):.0f} ms, "
        f"recall {1000 * (recalled - sent):.0f} ms, "
        f"remove + add {1000 * (changed - recalled):.0f} ms"
    )
    assert changed - registered < 30  # generous: each step is well under a second here
