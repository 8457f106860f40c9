"""What one worker process is asked to do, and what it hands back: both plain and picklable.

A worker is started with the ``spawn`` method, so everything it is given
and everything it returns crosses a pipe: here are only dataclasses of
numbers, strings and bytes, no sockets, keys or event loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Mode", "WorkerPlan", "WorkerResult"]

Mode = str
"""``relay`` (the bench proper), ``http-echo`` or ``ws-echo`` (the baseline)."""


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of the run: its own users, rate and concurrency."""

    index: int
    mode: Mode
    url: str
    users: int
    devices: int
    recipients: int
    mix: dict[str, float]
    size: int
    rate: float | None  # this worker's operations per second; None: flat out
    concurrency: int
    duration_s: float
    transport: str
    fetch: bool
    prepare: int
    drain_s: float
    seed: int
    body_size: int = 0  # baseline modes: bytes per request or frame
    expire_ms: int = 0  # a from-sent timer on every message (0: none)
    groups: int = 0  # groups this worker makes among its users before the window
    group_size: int = 0
    group_share: float = 0.0  # share of its sends that go to one of its groups
    urls: tuple[str, ...] = ()  # every relay process; each device talks to one (empty: url)
    first_user: int = 0  # the run-wide number of this worker's first user


@dataclass
class WorkerResult:
    """Counts, samples and errors of one worker, for the parent to add up."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    starved: dict[str, int] = field(default_factory=dict)
    propagation_pending: int = 0
    cpu_seconds: float = 0.0
    sealed_ahead: int = 0
    sealed_live: int = 0
    behind_schedule_ms: float = 0.0
    websockets: int = 0
    groups: int = 0  # groups created before the window
