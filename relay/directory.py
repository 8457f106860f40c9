"""What every send looks up, kept in memory: identity keys and devices.

A send is checked against the sender's identity key, each wrapped device,
and the recipient's current devices; without this cache those are several
database reads, each a hop to a reader thread, for every message.  What is
cached changes rarely and only through this relay's own registration path:

- an identity key never changes for a user id (the id is its fingerprint),
  so it is kept until evicted;
- a user's devices change when a device registers (or, later, is revoked);
  :meth:`DirectoryCache.forget` drops that user's entries at once, and every
  device entry also expires after ``ttl`` seconds, which bounds how long a
  change made by another relay process on a shared database goes unseen.

The cache is bounded (least recently used entries go first), so a relay
with millions of users keeps only the active ones.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from e2e_recall.signing import VerifyKey

from .storage.base import DeviceRecord, Storage

__all__ = ["DirectoryCache", "LruCache"]

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """Entries with an expiry, the least recently used dropped beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        found = self._items.get(key)
        if found is None or found[0] < now:
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: K, value: V, until: float) -> None:
        self._items[key] = (until, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, key: K) -> None:
        self._items.pop(key, None)

    def drop_where(self, condition: Callable[[V], bool]) -> None:
        """Drop every entry whose value meets ``condition`` (rare: a device revoked)."""
        for key in [k for k, (_, value) in self._items.items() if condition(value)]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()


class DirectoryCache:
    def __init__(
        self,
        storage: Storage,
        *,
        ttl: float = 10.0,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self.clock = clock
        self._identities: LruCache[bytes, VerifyKey] = LruCache(size)
        self._devices: LruCache[bytes, DeviceRecord] = LruCache(size)
        self._by_user: LruCache[bytes, tuple[DeviceRecord, ...]] = LruCache(size)

    async def identity(self, user_id: bytes) -> VerifyKey | None:
        """The user's identity key (None for an unknown user; that is not cached)."""
        now = self.clock()
        key = self._identities.get(user_id, now)
        if key is None:
            user = await self.storage.get_user(user_id=user_id)
            if user is None:
                return None
            key = VerifyKey(user.identity_key)
            self._identities.put(user_id, key, float("inf"))
        return key

    async def device(self, device_id: bytes) -> DeviceRecord | None:
        """A registered device as last read (its ``acked_seq`` may be old: not for acks)."""
        now = self.clock()
        device = self._devices.get(device_id, now)
        if device is None:
            device = await self.storage.get_device(device_id)
            if device is None:
                return None
            self._devices.put(device_id, device, now + self.ttl)
        return device

    async def devices(self, user_id: bytes) -> tuple[DeviceRecord, ...]:
        """Every device of a user, revoked ones included."""
        now = self.clock()
        found = self._by_user.get(user_id, now)
        if found is None:
            found = tuple(await self.storage.get_devices(user_id))
            self._by_user.put(user_id, found, now + self.ttl)
            for device in found:
                self._devices.put(device.device_id, device, now + self.ttl)
        return found

    def forget_all(self) -> None:
        """Forget every user's devices (identity keys never change, so they stay)."""
        self._devices.clear()
        self._by_user.clear()

    def forget(self, user_id: bytes, device_ids: tuple[bytes, ...] = ()) -> None:
        """A user's devices changed (here, or in another process: relay/cluster.py)."""
        self._by_user.drop(user_id)
        for device_id in device_ids:
            self._devices.drop(device_id)
