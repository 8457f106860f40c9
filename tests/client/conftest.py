"""Fixtures: a relay process on loopback and people using the real ``e2e-recall`` command."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client.client import Client

from cli_harness import Person
from relay_process import RelayProcess, free_port


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay on a fixed port, so a test can stop it and bring it back where clients expect."""
    process = RelayProcess(tmp_path / "relay", tmp_path / "relay" / "data", port=free_port())
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
def alice(tmp_path: Path, relay: RelayProcess) -> Person:
    person = Person(tmp_path / "people", "alice")
    person.setup(relay.url())
    return person


@pytest.fixture
def bob(tmp_path: Path, relay: RelayProcess) -> Person:
    person = Person(tmp_path / "people", "bob")
    person.setup(relay.url())
    return person


@pytest.fixture
def pair(alice: Person, bob: Person) -> tuple[Person, Person]:
    """Alice and Bob, each with the other pinned as a contact."""
    alice.run("contacts", "add", "bob", "bob")
    bob.run("contacts", "add", "alice", "alice")
    return alice, bob


@pytest.fixture
async def clients(tmp_path: Path, relay: RelayProcess) -> AsyncIterator[tuple[Client, Client]]:
    """Alice and Bob through the client library in this process, each the other's contact."""
    alice = Client.create(tmp_path / "alice", "alice passphrase", strength="interactive")
    bob = Client.create(tmp_path / "bob", "bob passphrase", strength="interactive")
    try:
        await alice.register(relay.url(), "alice")
        await bob.register(relay.url(), "bob")
        await alice.add_contact("bob", "bob")
        await bob.add_contact("alice", "alice")
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()
