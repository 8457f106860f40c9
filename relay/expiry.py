"""The timer job: destroy each copy when the sender's timer says, and tell every device.

A message whose signed header carries a timer has, per delivery, an
``expires_at`` (set at the send when the timer counts from sending, at the
device's key release when it counts from opening).  The job sleeps until the
earliest one not yet dealt with (``next_expiry``), or until a send or an
opening schedules an earlier one, so a timer fires within the time a write
transaction takes of its moment rather than at the next poll.

What is due is destroyed a batch at a time, every message of a batch in one
write transaction (each in its own savepoint, so one message's failure
leaves the others done: ``change_messages``), the same way a recall or
retention destroys: each due device's wrap is dropped and its report line
moves through ``timer_expired``; a device that fetched gets an
``expired`` event (delete your copy), one that never did has its notice
withdrawn.  Once every device's copy has expired, the ciphertext and every
blob go too (``purge``, so the storage zero-fills and later scrubs as for a
recall), leaving a content-free tombstone.  A from-opened copy that is never
opened has no ``expires_at``: it stays sealed until retention removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from e2e_recall.report import DeviceState, Event

from .errors import NotFound
from .messaging import Messaging, _merge, _transition
from .reports import expired_event, report_events
from .storage.base import Changes, MessageState, MessageView, Storage, StorageError

__all__ = ["ExpiryTimer"]

log = logging.getLogger("relay.expiry")
_BATCH = 200  # messages per write transaction: about 100 ms of the writer at most
# Lines that hold no copy any more: expired, or (for a message still live) a device revoked
# before its timer, whose wrap the revocation destroyed.  Without them a revoked device's
# line kept the ciphertext past the timer (found by the crash suite).
_SETTLED = frozenset(
    {
        DeviceState.EXPIRED,
        DeviceState.NEVER_DELIVERED,
        DeviceState.DELIVERED_SEALED,
        DeviceState.DELETED,
    }
)
_RETRY = 1.0  # seconds before a message whose rule failed is tried again
_MAX_SLEEP = 60.0  # seconds; a missed wake-up (another process's write) is caught by then


class ExpiryTimer:
    """Runs inside the relay beside retention; ``schedule`` is called by sends and opens."""

    def __init__(
        self,
        storage: Storage,
        messaging: Messaging,
        clock: Callable[[], int],
        max_sleep: float = _MAX_SLEEP,
    ) -> None:
        self.storage = storage
        self.messaging = messaging
        self.clock = clock
        self.max_sleep = max_sleep
        self._next: int | None = None
        self.failed = 0  # messages whose rule failed in the last run (tried again later)
        self._wake = asyncio.Event()
        self.on_schedule: Callable[[int], None] | None = None  # relay/cluster.py
        messaging.on_expiry = self.schedule

    def schedule(self, at: int, tell: bool = True) -> None:
        """A copy will expire at ``at`` (ms): wake earlier than planned if need be.

        ``tell`` passes it on to ``on_schedule`` (the process running the
        job may be another one); a schedule heard from another process is not.
        """
        if self._next is None or at < self._next:
            self._next = at
            self._wake.set()
        if tell and self.on_schedule is not None:
            self.on_schedule(at)

    async def run_once(self) -> int:
        """Destroy every copy due now; the number of messages changed.

        Due messages go to the storage a batch at a time, each batch in one
        write transaction (``change_messages``).  A message whose rule failed
        is logged, counted in ``failed`` and left for the next run; the
        others of its batch are written all the same.
        """
        now = self.clock()
        changed = 0
        self.failed = 0
        previous: list[bytes] = []
        while True:
            ids = await self.storage.copies_to_expire(now, _BATCH)
            if ids == previous:  # nothing the last batch did moved them on: do not spin
                break
            done, failed = await self._expire(ids, now)
            changed += done
            self.failed += failed
            if len(ids) < _BATCH or failed:  # a failed message would come back: stop here
                break
            previous = ids
        if changed:
            log.info("timers", extra={"event": "timers_expired", "messages": changed})
        return changed

    async def _expire(self, ids: list[bytes], now: int) -> tuple[int, int]:
        """One batch in one transaction: (messages changed, messages whose rule failed)."""
        if not ids:
            return 0, 0
        owners = await self.storage.message_senders(ids)
        senders = {user: await self.messaging.sender_devices(user) for user in set(owners.values())}

        def decide(view: MessageView) -> tuple[Changes, int]:
            return _expire_due(view, now, senders[view.message.sender])

        outcomes = await self.storage.change_messages([i for i in ids if i in owners], decide)
        changed = failed = 0
        for outcome in outcomes:
            if isinstance(outcome, NotFound):
                continue  # forgotten meanwhile (retention): nothing left to expire
            if isinstance(outcome, Exception):
                failed += 1
                log.error(
                    "timer failed for a message",
                    extra={"event": "timer_failed", "error": type(outcome).__name__},
                )
                continue
            changed += outcome
        return changed, failed

    async def run_forever(self) -> None:
        """Sleep until the next due copy (or a wake-up), expire what is due, repeat."""
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                self._next = await self.storage.next_expiry()
            except asyncio.CancelledError:
                raise
            except StorageError as exc:  # the database is down: expected, and said in a sentence
                log.warning(
                    "timer job failed: the database is unavailable",
                    extra={"event": "timers_failed", "error": str(exc)[:120]},
                )
                self._next = self.clock() + int(_RETRY * 1000)  # what is due waits: try soon
            except Exception:
                log.exception("timer job failed", extra={"event": "timers_failed"})
                self._next = None
            delay = self.max_sleep
            if self._next is not None:
                delay = min(delay, max(0.0, (self._next - self.clock()) / 1000))
            if self.failed:  # what failed is still due: try again soon, not in a tight loop
                delay = max(delay, _RETRY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)


def _expire_due(view: MessageView, now: int, senders: list[bytes]) -> tuple[Changes, int]:
    """The changes for every copy of this message whose timer is due at ``now``."""
    message = view.message
    due = [
        d
        for d in view.deliveries
        if d.expires_at is not None and d.expired_at is None and d.expires_at <= now
    ]
    if not due:
        return Changes(), 0
    changes = Changes()
    if message.state is MessageState.RECALLED:  # the recall destroyed it first: timer void
        changes.deliveries = [replace(d, expires_at=None) for d in due]
        return changes, 0
    for delivery in due:
        after = _transition(delivery, Event.TIMER_EXPIRED, now)
        if after.state is not DeviceState.EXPIRED:  # recalled or deleted already: nothing to do
            changes.deliveries.append(replace(after, expires_at=None))
            continue
        after = replace(after, wrap=None)
        changes.deliveries.append(after)
        if delivery.fetched_at is not None:
            changes.events.append(expired_event(message, after))
        else:
            changes.drop_notices.append(delivery.device_id)
    changes.purge = True
    updated = {d.device_id: d for d in changes.deliveries}
    every = [updated.get(d.device_id, d) for d in view.deliveries]
    if all(d.state in _SETTLED or d.expired_at is not None for d in every):
        changes.message = replace(message, envelope=None, state=MessageState.EXPIRED)
        changes.destroy_blobs = bool(view.files)
    changes.events.extend(report_events(_merge(view, changes), senders))
    return changes, 1
