"""Latency samples, kept cheaply in the generator and summarised once in the parent.

Each worker appends two floats per completed operation (when it started,
seconds after the common start, and how long it took, in milliseconds) to
plain ``array`` buffers: no allocation per sample, and the buffers cross
the process boundary as bytes.  Percentiles are nearest-rank over every
sample (no histogram buckets, no interpolation), so ``p50 <= p90 <= p99 <=
max`` holds by construction and each figure is a latency that occurred.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["LatencySummary", "Samples", "Tally", "summarize"]

PERCENTILES = (50, 90, 99)


@dataclass
class Samples:
    """Start offsets (s) and latencies (ms) of one kind of operation, in completion order."""

    started: array[float] = field(default_factory=lambda: array("d"))
    latency_ms: array[float] = field(default_factory=lambda: array("d"))

    def add(self, started: float, latency_ms: float) -> None:
        self.started.append(started)
        self.latency_ms.append(latency_ms)

    def __len__(self) -> int:
        return len(self.latency_ms)

    def to_wire(self) -> tuple[bytes, bytes]:
        """As bytes, to cross from a worker process to the parent."""
        return self.started.tobytes(), self.latency_ms.tobytes()

    @classmethod
    def from_wire(cls, data: tuple[bytes, bytes]) -> Samples:
        samples = cls()
        samples.started.frombytes(data[0])
        samples.latency_ms.frombytes(data[1])
        return samples

    def extend(self, other: Samples) -> None:
        self.started.extend(other.started)
        self.latency_ms.extend(other.latency_ms)


@dataclass(frozen=True)
class LatencySummary:
    """What the table and the JSON show for one kind of operation."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50": round(self.p50, 3),
            "p90": round(self.p90, 3),
            "p99": round(self.p99, 3),
            "max": round(self.max, 3),
            "mean": round(self.mean, 3),
        }


def _rank(ordered: list[float], percentile: int) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``percentile``% at or below."""
    index = max(0, math.ceil(percentile / 100 * len(ordered)) - 1)
    return ordered[index]


def summarize(latencies: Iterable[float]) -> LatencySummary | None:
    """Percentiles of ``latencies`` (ms), or None when there are none."""
    ordered = sorted(latencies)
    if not ordered:
        return None
    p50, p90, p99 = (_rank(ordered, p) for p in PERCENTILES)
    return LatencySummary(
        len(ordered), p50, p90, p99, ordered[-1], math.fsum(ordered) / len(ordered)
    )


class Tally:
    """One worker's record: successes with their latency, and failures by kind and code.

    Only operations started inside the measured window count, so a run's
    rate is its count over the window; answers that arrive during the drain
    still give their latency.
    """

    def __init__(self, start: float, duration_s: float) -> None:
        self.start = start
        self.end = start + duration_s
        self.counts: Counter[str] = Counter()
        self.samples: defaultdict[str, Samples] = defaultdict(Samples)
        self.errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.starved: Counter[str] = Counter()

    def running(self) -> bool:
        return time.monotonic() < self.end

    def ok(self, kind: str, began: float, ended: float | None = None) -> None:
        """An operation of ``kind`` that began at ``began`` (monotonic) succeeded just now."""
        if began >= self.end or began < self.start:
            return
        finished = time.monotonic() if ended is None else ended
        self.counts[kind] += 1
        self.samples[kind].add(began - self.start, (finished - began) * 1000)

    def failed(self, kind: str, code: str, began: float) -> None:
        if self.start <= began < self.end:
            self.errors[kind][code] += 1

    def snapshot(self) -> dict[str, int]:
        """Counts so far, for the progress display."""
        shown = dict(self.counts)
        shown["errors"] = sum(sum(codes.values()) for codes in self.errors.values())
        return shown
