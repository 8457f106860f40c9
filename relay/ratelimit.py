"""Per-user request rate limits: a token bucket per user, in memory."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` requests per user, with bursts of up to that many."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_users: int = 100_000
    ):
        self.per_minute = per_minute
        self.clock = clock
        self.max_users = max_users
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def allow(self, user_id: bytes) -> bool:
        if self.per_minute <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.get(user_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_users and user_id not in self._buckets:
            self._buckets.clear()  # bounded memory; a reset only ever makes limits looser
        self._buckets[user_id] = (tokens - 1.0, now)
        return True
