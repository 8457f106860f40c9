"""Fixtures: a relay process on loopback and people using the real ``e2e-recall`` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
