"""Each device's queue of events: reading it after a cursor, and acknowledging it.

Both ``/v1/sync`` and the websocket go through here, so the paging rule and
the acknowledgement rule live in one place.  Acknowledgements are coalesced:
at most one acknowledgement write is in flight at a time, and every ack that
arrives meanwhile (from any device) rides in the next one, keeping only the
highest sequence number per device.  So a client that acknowledges each
event separately, or floods its websocket with ack frames, costs the
database one write per round trip of the writer, not one per frame.

An HTTP ack waits for the write that carries it (its ``200`` means durable);
a websocket ack does not wait, because the client gets no answer to it and
resumes from its own cursor anyway.  An ack lost in a crash only means the
events are offered again, never that one is missed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .storage.base import EventRecord, Storage

__all__ = ["Inbox", "Page"]

log = logging.getLogger("relay.inbox")


@dataclass(frozen=True, slots=True)
class Page:
    events: list[EventRecord]
    more: bool


class Inbox:
    """Reads and acknowledgements of device event queues."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._pending: dict[bytes, int] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def page(self, device_id: bytes, after: int, limit: int) -> Page:
        """Up to ``limit`` events with ``seq > after``, oldest first, and whether more wait."""
        events = await self.storage.events_since(device_id, after, limit + 1)
        return Page(events[:limit], len(events) > limit)

    def ack_later(self, device_id: bytes, seq: int) -> None:
        """Acknowledge up to ``seq`` in the next write, without waiting for it."""
        current = self._pending.get(device_id)
        if current is None or seq > current:
            self._pending[device_id] = seq
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def ack(self, device_id: bytes, seq: int) -> None:
        """Acknowledge up to ``seq`` and return once that is durable."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.ack_later(device_id, seq)
        await waiter

    async def drain(self) -> None:
        """Write every acknowledgement still pending (before the database closes)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            try:
                await self.storage.ack_events(batch)
            except Exception as exc:
                if not waiters:
                    log.warning(
                        "acknowledgements not written",
                        extra={"event": "ack_failed", "count": len(batch), "error": str(exc)},
                    )
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
