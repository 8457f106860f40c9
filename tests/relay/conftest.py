"""Fixtures: a real relay on 127.0.0.1 with a controlled clock, and people using it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from postgres import postgres_database

from driver import Clock, Person, Relay, start_relay

# The backends the relay's tests run on: both, always, in CI and by default (a machine without
# PostgreSQL's binaries fails those tests with a sentence on how to install them).
# E2E_RECALL_TEST_BACKENDS=sqlite narrows a local run to one.
BACKENDS = os.environ.get("E2E_RECALL_TEST_BACKENDS", "sqlite,postgresql").split(",")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_options(backend: str) -> Iterator[dict[str, Any]]:
    """The relay options that put its database on this test's backend."""
    if backend == "sqlite":
        yield {}
        return
    with postgres_database() as dsn:
        yield {"database_url": dsn, "db_pool_size": 4}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def relay(
    tmp_path: Path, clock: Clock, database_options: dict[str, Any]
) -> AsyncIterator[Relay]:
    running = await start_relay(tmp_path / "relay", clock, **database_options)
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
