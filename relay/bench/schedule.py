"""Which operation comes next, and when: the mix and the pace.

The mix is dealt by smooth weighted round-robin (the nginx upstream
algorithm) rather than drawn at random, so any window of the run holds the
shares asked for, not shares that wander with the seed; kinds with a
larger share are spread evenly between the smaller ones.  The pace is an
open-loop schedule: operation *i* is due at ``start + i / rate`` whatever
happened to earlier ones, so a slow answer does not slow the offered load
(the generator falls behind only when it reaches its in-flight cap, which
the results then show as a lower achieved rate).
"""

from __future__ import annotations

import time

__all__ = ["Mix", "Pace"]


class Mix:
    """Deals kinds in proportion to their shares, evenly interleaved."""

    def __init__(self, shares: dict[str, float]) -> None:
        self.shares = {kind: share for kind, share in shares.items() if share > 0}
        self.current = dict.fromkeys(self.shares, 0.0)
        self.total = sum(self.shares.values())

    def next(self) -> str:
        for kind, share in self.shares.items():
            self.current[kind] += share
        chosen = max(self.current, key=self.current.__getitem__)
        self.current[chosen] -= self.total
        return chosen


class Pace:
    """An open-loop schedule of ``rate`` operations per second from ``start`` (monotonic)."""

    def __init__(self, rate: float, start: float) -> None:
        self.interval = 1.0 / rate
        self.start = start
        self.issued = 0

    def due(self, now: float | None = None) -> int:
        """How many operations are due now and not yet issued (they are counted as issued)."""
        at = time.monotonic() if now is None else now
        owed = int((at - self.start) / self.interval) + 1 - self.issued
        if owed <= 0:
            return 0
        self.issued += owed
        return owed

    def next_at(self) -> float:
        """When the next operation falls due."""
        return self.start + self.issued * self.interval
