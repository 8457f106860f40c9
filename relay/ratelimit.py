"""Request rate limits: a token bucket per key (a user, or a client address), in memory.

In memory because a limit only has to hold within a process's lifetime: a
restart makes it looser for one minute, never stricter.  Memory is bounded:
when the table is full, buckets that have refilled completely (which mean
the same as no bucket) are dropped first; only if that frees nothing is
the table cleared.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` requests per key, with bursts of up to that many."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ):
        self.per_minute = per_minute
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)

    def check(self, key: Hashable) -> float | None:
        """Take one request from ``key``'s bucket: None if allowed, else seconds to wait."""
        if self.per_minute <= 0:
            return None
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * 60.0 / self.per_minute
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def allow(self, key: Hashable) -> bool:
        return self.check(key) is None

    def retry_after(self, wait: float) -> int:
        """A ``Retry-After`` value: whole seconds, at least one."""
        return max(1, math.ceil(wait))

    def _prune(self, now: float) -> None:
        full = float(self.per_minute)
        for key in [k for k in self._buckets if self._tokens(k, now) >= full]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()  # bounded memory; a reset only ever makes limits looser
