"""The old device's side of a link, as one object: show the code, then wait for the join.

:class:`client.linking.LinkOffer` holds the protocol steps; this module
holds the waiting.  The new device's request may come at any moment within
the code's lifetime, so the wait listens on the live connection (a ``link``
event wakes it at once) and polls the slot as well, which covers a relay
whose push was lost or a connection another session took over.  Nothing is
certified before the request opens with the code's key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from e2e_recall.linking import LinkRequest

from .core import Core
from .errors import ClientError
from .linking import LinkFailed, LinkOffer
from .live import watch

__all__ = ["LinkedDevice", "PendingLink", "open_link"]

_WAKE_SECONDS = 2.0  # between polls when no link event arrives
_REGISTER_WAIT_MS = 60_000  # for the new device to register once it has its answer


@dataclass(frozen=True)
class LinkedDevice:
    device_id: bytes
    registered: bool  # False: it got its answer but had not registered when we stopped waiting


@dataclass
class PendingLink:
    """A link waiting for a new device; give it :attr:`code` and :attr:`relay_url`."""

    offer: LinkOffer

    @property
    def code(self) -> str:
        """The one-time code: it gives a device this identity, so only type it on your own."""
        return self.offer.code

    @property
    def relay_url(self) -> str:
        return self.offer.core.relay.url

    @property
    def expires_at(self) -> int:
        return self.offer.expires_at

    async def joined(self, on_request: Callable[[bytes], None] | None = None) -> LinkedDevice:
        """Wait for the new device, certify it, answer, and wait for it to register.

        ``on_request`` is told the new device's id as soon as its request has
        opened, so the person can compare it with what the new device shows.
        Raises :class:`LinkFailed` when the code expires unused.
        """
        request = await self._request()
        if on_request is not None:
            on_request(request.device_id)
        await self.offer.answer(request)
        core = self.offer.core
        registered = await self.offer.registered(
            request.device_id, core.clock() + _REGISTER_WAIT_MS
        )
        return LinkedDevice(request.device_id, registered)

    async def _request(self) -> LinkRequest:
        """The checked request: each ``link`` event wakes the wait, polling covers the rest."""
        core, offer = self.offer.core, self.offer
        wake, stop = asyncio.Event(), asyncio.Event()

        async def listen() -> None:
            with contextlib.suppress(ClientError):
                async with contextlib.aclosing(watch(core, stop)) as updates:
                    async for update in updates:
                        if update.kind == "link" and update.message_id == offer.keys.link_id:
                            wake.set()
                        elif update.kind == "displaced":
                            return

        listener = asyncio.create_task(listen())
        try:
            while core.clock() < offer.expires_at:
                request = await offer.poll_request()
                if request is not None:
                    return request
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), _WAKE_SECONDS)
                wake.clear()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await asyncio.wait_for(listener, 5)
        raise LinkFailed("No new device used the code in time; run 'device link' again.", "timeout")


async def open_link(core: Core, timeout_ms: int) -> PendingLink:
    """Open a link slot at the relay for at most 10 minutes (the relay's own limit)."""
    offer = await LinkOffer.open(core, min(timeout_ms, 10 * 60 * 1000))
    return PendingLink(offer)
