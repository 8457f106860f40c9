"""What relay processes sharing one database tell each other, and who runs the jobs.

Queued events reach other processes through the storage itself (NOTIFY in
the committing transaction, :mod:`.storage.postgres_engine`).  Some facts
live only in a process's memory, though, and must not wait for a cache to
run out when another process changes them:

- a revoked device's live WebSocket must close wherever it is held;
- a logged-out session must stop working everywhere at once;
- a device registered, rotated or revoked makes cached directory entries
  stale;
- a new timer may fall due before the process running the timer job
  planned to wake.

The first three are signalled by the storage in the transaction that makes
the change (:meth:`~.storage.postgres_engine.Tx.signal`): PostgreSQL
delivers a NOTIFY with its commit or not at all, so a process killed just
after committing a revocation still tells the others.  A new timer is sent
after its message committed; a lost one (the process died in between) is
bounded by the timer job's longest sleep (a minute).  A process whose
LISTEN connection dropped may have missed any of them: once it listens
again it forgets what it cached and reads every queue (``relisten``).

Background jobs that write (retention, the timer job) run in one process at
a time: each process asks the storage to :meth:`~.storage.base.Storage.lead`
the job and runs it only while it holds it, so N processes do not each
destroy, log and count the same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .accounts import Accounts
from .expiry import ExpiryTimer
from .hub import Hub
from .storage.base import Storage, StorageError

__all__ = ["JOBS", "Cluster"]

log = logging.getLogger("relay.cluster")

JOBS = {"retention": 1, "timers": 2}  # advisory lock numbers: fixed, shared by every version
_LEAD_RETRY = 5.0  # seconds between a follower's attempts to take a job over
_TIMER_COALESCE = 0.05  # seconds: new timers told to the timer job's process together


class Cluster:
    """Sends this process's in-memory changes to the others and applies theirs."""

    def __init__(self, storage: Storage, accounts: Accounts, hub: Hub, timers: ExpiryTimer) -> None:
        self.storage = storage
        self.accounts = accounts
        self.hub = hub
        self.timers = timers
        self.leading: set[str] = set()  # the jobs this process runs now (for tests and logs)
        self._sending: set[asyncio.Task[None]] = set()
        storage.on_signal(self._heard)
        timers.on_schedule = self._timer
        self._timer_at: int | None = None  # the earliest timer not yet told to the others

    # sending --------------------------------------------------------------------------------
    def _timer(self, at: int) -> None:
        """A new timer: the process running the timer job must wake for it.

        Not needed when that process is this one; otherwise coalesced, so
        that a burst of timed sends costs one signal per 50 ms, not one each.
        """
        if "timers" in self.leading:
            return
        if self._timer_at is not None:
            self._timer_at = min(self._timer_at, at)
            return
        self._timer_at = at

        async def tell() -> None:
            await asyncio.sleep(_TIMER_COALESCE)
            at, self._timer_at = self._timer_at, None
            if at is not None:
                await self._deliver("timer", [max(at, 0).to_bytes(8, "big")])

        self._track(asyncio.get_running_loop().create_task(tell()))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _send(self, kind: str, values: list[bytes]) -> None:
        """Send in the background: the change it reports has committed already."""
        self._track(asyncio.get_running_loop().create_task(self._deliver(kind, values)))

    async def _deliver(self, kind: str, values: list[bytes]) -> None:
        try:
            await self.storage.signal(kind, values)
        except StorageError:
            log.warning("signal not sent", extra={"event": "signal_failed", "kind": kind})

    async def drain(self) -> None:
        """Wait for the signals still being sent (before the storage closes)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    # receiving ------------------------------------------------------------------------------
    def _heard(self, kind: str, values: list[bytes]) -> None:
        if kind == "devices" and values:
            self.accounts.cache.forget(values[0], tuple(values[1:]))
        elif kind == "revoked" and len(values) == 1:
            self.accounts.drop_device_sessions(values[0])
            self._in_background(self.hub.close_device(values[0]))
        elif kind == "logout" and len(values) == 1:
            self.accounts.drop_session(values[0])
            self._in_background(self.hub.end_session(values[0]))
        elif kind == "timer" and len(values) == 1:
            self.timers.schedule(int.from_bytes(values[0], "big"), tell=False)
        elif kind == "relisten":  # notifications may have been missed: read every queue
            self.accounts.forget_cached()  # and a revocation, a logout or a rotation
            self.hub.wake_all()
            self.timers.schedule(0, tell=False)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        self._track(asyncio.get_running_loop().create_task(work))

    # jobs -----------------------------------------------------------------------------------
    async def run_led(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` (a run-forever loop) only while this process holds its lead.

        The lead is checked again every few seconds: a process whose lock
        connection died stops the job, since another process may have taken
        it over by then.
        """
        number = JOBS[name]
        while True:
            if not await self.storage.lead(number):
                await asyncio.sleep(_LEAD_RETRY)
                continue
            self.leading.add(name)
            log.info("leading", extra={"event": "job_leader", "job": name})
            running = asyncio.ensure_future(job())
            try:
                while not running.done():
                    await asyncio.wait({running}, timeout=_LEAD_RETRY)
                    if not running.done() and not await self.storage.lead(number):
                        log.warning("lost the lead", extra={"event": "job_lost", "job": name})
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running
            finally:
                self.leading.discard(name)
                if not running.done():  # cancelled from outside: stop the job too
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
            if not running.cancelled() and running.exception() is not None:
                log.error("job failed", extra={"event": "job_failed", "job": name})
            await asyncio.sleep(_LEAD_RETRY)
