"""Retention: messages nobody opened in time expire; old tombstones are forgotten.

Runs inside the relay on a timer (and on demand from ``e2e-recall-relay
purge-expired``).  Expiring a message destroys its ciphertext and remaining
wraps in one transaction, like a recall, and reports ``expired`` for every
device that had not opened it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from e2e_recall.report import Event

from .config import Config
from .messaging import Messaging, _merge, _transition, completion
from .reports import expired_event, report_events
from .storage.base import Changes, MessageState, MessageView, Storage, StorageError

__all__ = ["Retention", "RetentionResult"]

log = logging.getLogger("relay.retention")
_BATCH = 500


@dataclass(frozen=True, slots=True)
class RetentionResult:
    expired: int
    forgotten: int
    completed: int = 0  # messages every device opened, whose grace is over
    uploads_expired: int = 0  # unbound or unfinished blobs older than upload_expiry


class Retention:
    def __init__(
        self,
        storage: Storage,
        messaging: Messaging,
        config: Config,
        clock: Callable[[], int],
        sweep: Callable[[], Awaitable[int]] | None = None,
    ):
        self.sweep = sweep  # removes blob files without a row (a crash before their unlink)
        self.storage = storage
        self.messaging = messaging
        self.config = config
        self.clock = clock

    async def run_once(self) -> RetentionResult:
        now = self.clock()
        expired = 0
        while True:
            ids = await self.storage.messages_to_expire(now - self.config.retention, _BATCH)
            for message_id in ids:
                expired += await self._expire(message_id, now)
            if len(ids) < _BATCH:
                break
        completed = 0
        while True:
            ids = await self.storage.messages_to_complete(now - self.config.open_grace, _BATCH)
            for message_id in ids:
                completed += await self._complete(message_id)
            if len(ids) < _BATCH:
                break
        uploads = 0
        while True:
            ids = await self.storage.expire_uploads(now - self.config.upload_expiry, _BATCH)
            uploads += len(ids)
            if len(ids) < _BATCH:
                break
        forgotten = await self.storage.forget_tombstones(now - self.config.tombstone_retention)
        await self.storage.forget_challenges(now)
        await self.storage.forget_links(now)
        if self.sweep is not None:
            await self.sweep()
        try:
            await self.storage.checkpoint()
        except StorageError as exc:  # readers kept the WAL busy; the next run tries again
            log.warning(
                "checkpoint deferred", extra={"event": "checkpoint_deferred", "error": str(exc)}
            )
        if expired or forgotten or completed or uploads:
            log.info(
                "retention",
                extra={
                    "event": "retention",
                    "expired": expired,
                    "completed": completed,
                    "forgotten": forgotten,
                    "uploads_expired": uploads,
                },
            )
        return RetentionResult(expired, forgotten, completed, uploads)

    async def _complete(self, message_id: bytes) -> int:
        """Drop what every device already has, once the grace for lost answers is over."""

        def decide(view: MessageView) -> tuple[Changes, int]:
            if view.message.state is not MessageState.LIVE or view.message.all_opened_at is None:
                return Changes(), 0
            return completion(view, view.message, list(view.deliveries)), 1

        return await self.storage.change_message(message_id, decide)

    async def _expire(self, message_id: bytes, now: int) -> int:
        view = await self.storage.get_message(message_id)
        if view is None:
            return 0
        senders = await self.messaging.sender_devices(view.message.sender)

        def decide(view: MessageView) -> tuple[Changes, int]:
            if view.message.state is not MessageState.LIVE:
                return Changes(), 0
            deliveries = [
                replace(_transition(d, Event.EXPIRED, now), wrap=None) for d in view.deliveries
            ]
            expired = replace(view.message, envelope=None, state=MessageState.EXPIRED)
            changes = Changes(
                message=expired,
                deliveries=deliveries,
                drop_notices=[d.device_id for d in deliveries if d.fetched_at is None],
                purge=True,
                destroy_blobs=bool(view.files),
            )
            changes.events.extend(
                expired_event(expired, d) for d in deliveries if d.fetched_at is not None
            )
            changes.events.extend(report_events(_merge(view, changes), senders))
            return changes, 1

        return await self.storage.change_message(message_id, decide)

    async def run_forever(self) -> None:
        """The in-server job: run, sleep ``purge_interval``, repeat, until cancelled."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except StorageError as exc:  # the database is down: expected, and said in a sentence
                log.warning(
                    "retention job failed: the database is unavailable",
                    extra={"event": "retention_failed", "error": str(exc)[:120]},
                )
            except Exception:
                log.exception("retention job failed", extra={"event": "retention_failed"})
            await asyncio.sleep(self.config.purge_interval / 1000)
