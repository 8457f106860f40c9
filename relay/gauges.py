"""Gauges of what the database holds now, refreshed on a timer.

Counting rows is a scan, so it is done every ``stats_interval`` in the
background, never on the request path, and a scrape of ``/metrics`` (which
anyone allowed to reach it may repeat as often as they like) costs nothing.
"""

from __future__ import annotations

import asyncio
import logging

from .metrics import Metrics
from .storage.base import MessageState, Storage

__all__ = ["HeldGauges"]

log = logging.getLogger("relay.gauges")


class HeldGauges:
    """Copies the storage statistics into the ``relay_*_held`` gauges."""

    def __init__(self, storage: Storage, metrics: Metrics, interval_ms: int) -> None:
        self.storage = storage
        self.metrics = metrics
        self.interval_ms = interval_ms

    async def refresh(self) -> None:
        stats = await self.storage.stats()
        for state in MessageState:
            self.metrics.messages_held.labels(str(state)).set(stats.get(f"messages_{state}", 0))
        self.metrics.ciphertext_bytes_held.set(stats.get("ciphertext_bytes", 0))
        self.metrics.events_queued.set(stats.get("events", 0))

    async def run_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "statistics not refreshed", exc_info=True, extra={"event": "stats_failed"}
                )
            await asyncio.sleep(self.interval_ms / 1000)
