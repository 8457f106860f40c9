"""Events from the relay: fetched in pages (``sync``) or pushed live (``watch``).

Both paths apply an event the same way (:func:`apply_event`) and move the
stored cursor past it, so a device that switches between them, or reconnects
after a break, resumes exactly where it stopped and misses nothing.  ``watch``
keeps one WebSocket open, reconnecting with backoff, and stops for good when
the relay says another session of this device took over (close code 4409):
the relay keeps one live connection per device, and two sessions
reconnecting would only keep displacing each other.  While it listens it
also deletes copies whose timer ran out and rotates the wrapping key when it
is due, since a long-running client never passes through a command's start;
the rotation's requests go over the WebSocket it holds (client/ws_channel.py),
whose reader hands the frame loop everything but their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp

from e2e_recall import wire
from e2e_recall.errors import E2ERecallError

from . import account, expiring, receiving, rotation, sending
from .core import Core
from .device_events import device_updates
from .errors import ClientError, RelayKeyChanged, RelayUnreachable
from .receiving import Update
from .ws_channel import RequestChannel

__all__ = [
    "FRAME_LIMITS",
    "REPLACED_CLOSE",
    "TAKEN_OVER",
    "apply_event",
    "flush_quietly",
    "sync",
    "watch",
]

_PAGE = 200
_BACKOFF_START, _BACKOFF_MAX = 0.5, 30.0
FRAME_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20)
REPLACED_CLOSE = 4409  # the relay's close code: a newer connection of this device took over
TAKEN_OVER = "another session of this device took over the live connection"


def _closed_because(code: int | None) -> str:
    """Why the relay ended a live connection, in words (RFC 6455 close codes)."""
    reasons = {
        1001: "the relay is shutting down",
        1008: "the session ended; logged in again",
        1011: "the relay had an internal problem",
        1013: "the relay is busy",
    }
    if code is None or code == 1006:
        return "the connection was lost"
    return reasons.get(code, f"the relay closed the connection ({code})")


async def apply_event(core: Core, event: dict[str, Any]) -> Update | None:
    """Apply one event and move the cursor past it.

    A relay that cannot be reached stops here (the event is applied again
    later); any other failure is about this one event, which is reported
    and skipped so that one bad event cannot block every later one.
    """
    try:
        update = await receiving.process_event(
            core, event["kind"], event.get("message_id") or b"", event["payload"]
        )
    except (RelayUnreachable, RelayKeyChanged):
        raise
    except (ClientError, E2ERecallError, KeyError, TypeError, ValueError) as exc:
        reason = exc.sentence if isinstance(exc, ClientError) else "it could not be read"
        update = Update(
            "dropped",
            event.get("message_id") or b"",
            "",
            f"An event from the relay was skipped: {reason}",
        )
    core.store.set_int("cursor", event["seq"])
    return update


async def flush_quietly(core: Core) -> None:
    """Send what waits in the outbox if the relay answers; it stays queued if not."""
    if core.store.outbox():
        with contextlib.suppress(RelayUnreachable):
            await sending.flush_outbox(core)


async def sync(core: Core) -> list[Update]:
    """Send what waits in the outbox, then fetch and apply every queued event."""
    updates: list[Update] = [*core.pending_updates, *expiring.expire_due(core)]
    core.pending_updates.clear()
    await sending.flush_outbox(core)
    while True:
        cursor = core.store.get_int("cursor")
        answer = await account.authed(core, "GET", f"/v1/sync?after={cursor}&limit={_PAGE}")
        for event in answer["events"]:
            update = await apply_event(core, event)
            if update is not None:
                updates.append(update)
        if answer["events"]:
            await account.authed(
                core, "POST", "/v1/sync/ack", {"seq": core.store.get_int("cursor")}
            )
        if not answer.get("more"):
            return updates + device_updates(core)


async def watch(core: Core, stop: asyncio.Event | None = None) -> AsyncGenerator[Update, None]:
    """Live updates over the WebSocket, reconnecting with backoff until ``stop`` is set.

    Connection changes come as updates too: ``connected``, ``caught_up``,
    ``disconnected`` (it reconnects) and, last, ``displaced`` when another
    session of this device took over the connection (it does not).
    """
    stop = stop or asyncio.Event()
    delay = _BACKOFF_START
    while not stop.is_set():
        try:
            await sending.flush_outbox(core)
            await account.ensure_session(core)
            cursor = core.store.get_int("cursor")
            async with core.relay.websocket(cursor) as ws:
                delay = _BACKOFF_START
                yield Update("connected", b"", "", core.relay.url)
                async for update in _frames(core, ws, stop):
                    yield update
                if stop.is_set():
                    return
                if ws.close_code == REPLACED_CLOSE:  # reconnecting would push it off in turn
                    yield Update("displaced", b"", "", TAKEN_OVER)
                    return
                if ws.close_code == 1008:  # the session ended: log in again
                    core.relay.token = None
                    await account.login(core)
                yield Update("disconnected", b"", "", _closed_because(ws.close_code))
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:  # the token ended while we were away
                core.relay.token = None
                with contextlib.suppress(RelayUnreachable):
                    await account.login(core)
            yield Update("disconnected", b"", "", f"the relay refused ({exc.status})")
        except (TimeoutError, RelayUnreachable, aiohttp.ClientError, OSError) as exc:
            detail = exc.sentence if isinstance(exc, ClientError) else str(exc)
            yield Update("disconnected", b"", "", detail or "connection lost")
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * (0.5 + random.random()))  # noqa: S311
        delay = min(delay * 2, _BACKOFF_MAX)


async def _frames(core: Core, ws: RequestChannel, stop: asyncio.Event) -> AsyncIterator[Update]:
    """One connection's frames as updates, each event acknowledged once applied."""
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    receiver: asyncio.Future[Any] | None = None
    try:
        while not stop.is_set():
            for expired in expiring.expire_due(core):  # a timer that ran out here
                yield expired
            receiver = receiver or asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait(
                {receiver, stopper},
                timeout=_quiet_for(core),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:  # a copy's moment came, or the wrapping key may be due
                await rotation.maybe_rotate(core)
                continue
            if receiver not in done:
                receiver.cancel()
                await ws.close()
                return
            message = receiver.result()
            receiver = None
            if message.type is not aiohttp.WSMsgType.BINARY:
                return
            frame = wire.decode(message.data, limits=FRAME_LIMITS)
            if not isinstance(frame, dict):
                return
            if frame.get("type") == "event":
                update = await apply_event(core, frame)
                await ws.send_bytes(wire.encode({"type": "ack", "seq": frame["seq"]}))
                if update is not None:
                    yield update
            elif frame.get("type") == "caught_up":
                for noted in device_updates(core):
                    yield noted
                yield Update("caught_up", b"", "", "")
    finally:
        stopper.cancel()
        if receiver is not None:
            receiver.cancel()


def _quiet_for(core: Core) -> float:
    """Seconds to listen before looking again: the next copy's deletion, or rotation."""
    wait = rotation.check_interval(core) / 1000
    due = expiring.next_due(core)
    if due is not None:
        wait = min(wait, max(0.0, (due - core.clock()) / 1000))
    return wait
