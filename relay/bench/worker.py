"""A load generator process: set up, say ready, wait for the common start, run, hand back.

Load runs in separate processes (``--workers``) so that generating it can
use more than one core, and even with one worker it runs apart from the
parent, which only keeps the progress display and reads the relay's CPU:
neither steals time from the generator's event loop.  Processes are
started with ``spawn``, so none inherits the parent's state.

Messages to the parent on ``queue``: ``("ready", i, None)``,
``("progress", i, counts)``, ``("done", i, WorkerResult)`` and
``("failed", i, sentence)``.  The parent sets ``start`` (a monotonic time,
the same clock in every process on Linux) and then ``go``; ``abort`` tells
a worker to give up.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, Protocol

import aiohttp

from .baseline_load import BaselineLoad
from .errors import BenchError
from .plan import WorkerPlan, WorkerResult
from .protocol import RelayClient
from .workload import Workload

__all__ = ["worker_main"]

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60)


class _Event(Protocol):
    def is_set(self) -> bool: ...


class _Value(Protocol):
    value: float


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...


async def _wait_for_go(go: _Event, start: _Value, abort: _Event) -> float | None:
    while not go.is_set():
        if abort.is_set():
            return None
        await asyncio.sleep(0.005)
    return start.value


async def _main(plan: WorkerPlan, queue: _Queue, go: _Event, start: _Value, abort: _Event) -> None:
    def progress(counts: dict[str, int]) -> None:
        queue.put(("progress", plan.index, counts))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=HTTP_TIMEOUT) as http:
        load: Workload | BaselineLoad
        if plan.mode == "relay":
            load = Workload(plan, await RelayClient.connect(http, plan.url))
        else:
            load = BaselineLoad(plan, http)
        await load.setup()
        queue.put(("ready", plan.index, None))
        begin = await _wait_for_go(go, start, abort)
        if begin is None:
            return
        result: WorkerResult = await load.run(begin, progress)
    queue.put(("done", plan.index, result))


def worker_main(plan: WorkerPlan, queue: _Queue, go: _Event, start: _Value, abort: _Event) -> None:
    """The process's entry point; every failure goes back to the parent as one sentence."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    began = time.monotonic()
    try:
        asyncio.run(_main(plan, queue, go, start, abort))
    except BenchError as exc:
        queue.put(("failed", plan.index, str(exc)))
    except Exception as exc:  # a bug in the generator: still one sentence, never a traceback
        queue.put(
            (
                "failed",
                plan.index,
                f"A load generator failed after {time.monotonic() - began:.1f} s "
                f"({type(exc).__name__}: {exc}).",
            )
        )
