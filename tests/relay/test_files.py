"""What the relay creates on disk: private files in a private directory, and a log that says where.

The database, its WAL and SHM, and the relay key are 0600 and the data
directory 0700, whatever the umask (here a permissive 002), because anyone
who can read them holds every wrap still in escrow.  On PostgreSQL the rows
are on the server; the data directory keeps the key and the blob files, as
private, and the log names the database without its password.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from postgres import postgres_database

from driver import Clock, Person, start_relay
from relay_process import relay_process


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
async def test_database_wal_shm_and_key_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    relay = await start_relay(data, Clock())
    try:
        async with aiohttp.ClientSession() as http:
            alice, bob = Person("alice", relay, http), Person("bob", relay, http)
            await alice.add_device()
            await bob.add_device()
            await alice.send(bob, "written through the WAL")
            names = {p.name for p in data.iterdir()}
            assert {"relay.db", "relay.db-wal", "relay.db-shm", "relay.key", "blobs"} <= names
            for name in sorted(names - {"blobs"}):
                assert _mode(data / name) == 0o600, f"{name} is {oct(_mode(data / name))}"
            for folder in (data / "blobs", data / "blobs" / "partial", data / "blobs" / "complete"):
                assert _mode(folder) == 0o700, f"{folder} is {oct(_mode(folder))}"
    finally:
        await relay.runner.cleanup()
    assert _mode(data) == 0o700


@pytest.mark.usefixtures("permissive_umask")
async def test_a_database_elsewhere_gets_a_private_directory_too(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "deep" / "relay.db"
    relay = await start_relay(tmp_path / "data", Clock(), database_url=f"sqlite:///{db}")
    await relay.runner.cleanup()
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700


def test_the_started_line_names_the_database_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with relay_process(tmp_path, data) as relay:
        assert relay.stop() == 0
        entries = relay.log_entries()
    started = [e for e in entries if e.get("event") == "started"]
    assert [e["database"] for e in started] == [str(data / "relay.db")]


@pytest.fixture
def dsn() -> Iterator[str]:
    """A PostgreSQL database, made outside the test's event loop (the cluster may start)."""
    with postgres_database() as made:
        yield made


@pytest.mark.usefixtures("permissive_umask")
async def test_on_postgresql_the_data_directory_holds_only_the_key_and_blobs(
    tmp_path: Path, dsn: str
) -> None:
    """The rows are the server's to protect; what the relay still writes is private as ever."""
    data = tmp_path / "data"
    relay = await start_relay(data, Clock(), database_url=dsn)
    try:
        async with aiohttp.ClientSession() as http:
            alice, bob = Person("alice", relay, http), Person("bob", relay, http)
            await alice.add_device()
            await bob.add_device()
            await alice.send(bob, "stored on the server")
            assert {p.name for p in data.iterdir()} == {"relay.key", "blobs"}
            assert _mode(data / "relay.key") == 0o600
            assert _mode(data / "blobs") == 0o700
    finally:
        await relay.runner.cleanup()
    assert _mode(data) == 0o700


def test_the_started_line_names_postgresql_without_its_password(tmp_path: Path, dsn: str) -> None:
    secret = "not-for-the-log"
    with_password = dsn.replace("postgres@", f"postgres:{secret}@", 1)
    with relay_process(tmp_path, tmp_path / "data", "--db", with_password) as relay:
        assert relay.stop() == 0
        entries = relay.log_entries()
    started = [e for e in entries if e.get("event") == "started"]
    assert len(started) == 1
    assert started[0]["database"] == "postgresql://postgres@" + dsn.split("@", 1)[1].split("?")[0]
    assert secret not in relay.stderr()
    assert not any(secret in str(entry) for entry in entries)
