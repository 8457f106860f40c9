"""Fixtures: a real relay on 127.0.0.1 with a controlled clock, and people using it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from driver import Clock, Person, Relay, start_relay


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def relay(tmp_path: Path, clock: Clock) -> AsyncIterator[Relay]:
    running = await start_relay(tmp_path / "relay", clock)
    yield running
    await running.runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def people(relay: Relay, http: aiohttp.ClientSession) -> tuple[Person, Person]:
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device(handle="alice")
    await bob.add_device(handle="bob")
    return alice, bob
