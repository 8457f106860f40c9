"""A large group through the client library and a relay process: every member device covered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.client import Client
from client.groups import create_group, remove_members

from relay_process import RelayProcess, free_port

MEMBERS = 64


@pytest.fixture
def roomy_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay that lets one address register a whole group's worth of people."""
    process = RelayProcess(
        tmp_path / "relay",
        tmp_path / "relay" / "data",
        port=free_port(),
        E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="100000",
    )
    try:
        yield process.start()
    finally:
        process.kill()


def test_a_group_of_64_gets_one_wrap_per_device_and_a_removal_takes_effect(
    tmp_path: Path, roomy_relay: RelayProcess
) -> None:
    relay = roomy_relay

    async def play() -> None:
        people = [
            Client.create(tmp_path / f"p{n}", "large group passphrase", strength="interactive")
            for n in range(MEMBERS)
        ]
        try:
            for n, person in enumerate(people):
                await person.register(relay.url(), f"member{n}")
            alice, others = people[0], people[1:]
            for n in range(1, MEMBERS):
                await alice.add_contact(f"m{n}", f"member{n}")
            names = [f"m{n}" for n in range(1, MEMBERS)]
            group = await create_group(alice.core, "everyone", names)
            assert len(group.member_ids()) == MEMBERS

            sent = await alice.send("everyone", "one message, 63 devices")
            assert not sent.queued
            assert sent.problem is None
            report = await alice.report(sent.message_id)
            assert len(report.lines) == MEMBERS - 1
            assert len({line.person for line in report.lines}) == MEMBERS - 1

            last = others[-1]
            await last.sync()
            (waiting,) = last.inbox()
            assert (waiting.message_id, waiting.group) == (
                sent.message_id,
                group.group_id.hex()[:8],
            )
            assert (await last.open_message(sent.message_id)).text == "one message, 63 devices"

            await remove_members(alice.core, "everyone", [names[-1]])
            later = await alice.send("everyone", "not for the last one")
            assert len((await alice.report(later.message_id)).lines) == MEMBERS - 2
            await last.sync()
            assert [e.message_id for e in last.inbox()] == []
        finally:
            for person in people:
                await person.close()

    asyncio.run(play())
