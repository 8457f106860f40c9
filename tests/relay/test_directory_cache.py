"""The directory cache: fewer reads per send, and never a stale answer after a local change."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er
from relay.directory import DirectoryCache
from relay.storage.base import DeviceRecord, UserRecord
from relay.storage.sqlite import SqliteStorage

from driver import Clock, Person, RelayRefused, start_relay

T0 = 1_800_000_000_000


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_are_read_once_refreshed_after_forget_and_after_the_ttl(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "relay.db", clock=lambda: T0)
    await storage.open()
    try:
        identity = er.SigningKey.generate()
        user = UserRecord(er.fingerprint(identity.public_key), identity.public_key.raw, None, T0)
        first = DeviceRecord(os.urandom(16), user.user_id, b"cert", os.urandom(32), T0)
        await storage.add_device(user, first)
        ticks = Ticks()
        cache = DirectoryCache(storage, ttl=10.0, clock=ticks)
        assert await cache.identity(user.user_id) == identity.public_key
        assert await cache.identity(os.urandom(32)) is None
        assert [d.device_id for d in await cache.devices(user.user_id)] == [first.device_id]

        second = DeviceRecord(os.urandom(16), user.user_id, b"cert", os.urandom(32), T0)
        await storage.add_device(user, second)
        assert len(await cache.devices(user.user_id)) == 1  # cached: not read again
        assert await cache.device(second.device_id) == second  # unknown ids are read
        cache.forget(user.user_id, (second.device_id,))
        assert len(await cache.devices(user.user_id)) == 2  # a local change: read afresh

        third = DeviceRecord(os.urandom(16), user.user_id, b"cert", os.urandom(32), T0)
        await storage.add_device(user, third)  # as if another relay process registered it
        assert len(await cache.devices(user.user_id)) == 2
        ticks.now += 10.5
        assert len(await cache.devices(user.user_id)) == 3  # the ttl bounds staleness
    finally:
        await storage.close()


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "relay.db", clock=lambda: T0)
    await storage.open()
    try:
        cache = DirectoryCache(storage, size=3)
        users = []
        for _ in range(5):
            identity = er.SigningKey.generate()
            user = UserRecord(
                er.fingerprint(identity.public_key), identity.public_key.raw, None, T0
            )
            await storage.add_device(
                user, DeviceRecord(os.urandom(16), user.user_id, b"c", os.urandom(32), T0)
            )
            users.append(user)
            await cache.identity(user.user_id)
        assert len(cache._identities._items) == 3
    finally:
        await storage.close()


async def test_a_cached_session_dies_with_its_logout_at_once(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    """Sessions are cached for a moment, but a logout here ends them immediately."""
    relay = await start_relay(tmp_path / "relay", Clock(), **database_options)
    try:
        async with aiohttp.ClientSession() as http:
            alice = Person("alice", relay, http)
            await alice.add_device()
            path = f"/v1/users/{alice.user_id.hex()}"
            await alice.call("GET", path)  # the session is now cached
            token = alice.devices[0].token
            await alice.call("POST", "/v1/logout", {})
            with pytest.raises(RelayRefused) as refused:
                await alice.call("GET", path, token=token)
            assert refused.value.status == 401
    finally:
        await relay.runner.cleanup()
