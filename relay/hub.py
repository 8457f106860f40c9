"""Pushing events to devices over WebSocket, resumable from a cursor.

Every event a device must see is first committed to its queue in storage
(with a sequence number), then the connections of that device are woken.  A
woken connection reads its queue after its cursor and sends what it finds,
in order.  So a push can be lost only together with the connection, and the
next connection, resuming from the cursor the client kept, gets it again:
nothing is missed, and since events are sent strictly by sequence number,
nothing is repeated on one connection.  The client acknowledges what it has
processed; acknowledged events are deleted (through :class:`~relay.inbox.Inbox`,
which batches those writes).

One connection per device: a new connection of a device replaces the one it
already has, which is closed with 4409.  A reconnecting client whose old
connection the relay has not yet seen die (a phone that changed networks)
must not be locked out until the idle timeout, and a device has no use for
two streams of the same queue.  A user may hold at most
``max_websockets_per_user`` connections (one per device), so one account
cannot take the whole ``max_websockets``; beyond either cap a new
connection is refused before the upgrade.

Frames are canonical msgpack maps; from the relay:
``{"type": "event", "seq", "kind", "message_id", "payload"}`` and
``{"type": "caught_up", "seq"}``; from the client: ``{"type": "ack", "seq"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from e2e_recall import wire
from e2e_recall.errors import DecodeError

from .accounts import Session
from .api import check_body
from .errors import RateLimited, RelayError, ServiceUnavailable
from .inbox import Inbox
from .metrics import Metrics
from .storage.base import EventRecord, StorageError

__all__ = ["REPLACED", "Hub"]

log = logging.getLogger("relay.hub")
_PAGE = 256
# A request frame carries at most a request body (an envelope and its wraps).
_FRAME_LIMITS = wire.Limits(max_size=2 << 20, max_bin=1 << 20, max_array=4096, max_depth=6)
REPLACED = 4409  # close code: a newer connection of the same device took over


class Requests(Protocol):
    """What the hub needs of the runner of a connection's requests (``ws_requests``)."""

    def check(self, frame: dict[str, Any]) -> dict[str, Any]: ...

    async def submit(self, request: dict[str, Any]) -> None: ...

    async def stop(self) -> None: ...


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, session: Session, cursor: int) -> None:
        self.ws = ws
        self.session = session
        self.device_id = session.device_id
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.wake.set()  # first, catch up
        self.attached = False
        self.sending = asyncio.Lock()  # events and answers to requests share the socket
        # Events committed since the last read of the queue, as this process wrote them:
        # pushed from here without reading them back.  ``must_read`` when only the
        # queue itself can tell (the first catch-up, events another process wrote, any
        # event on PostgreSQL, or more announced than is worth holding).
        self.announced: deque[EventRecord] = deque()
        self.must_read = True

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.sending:
            await self.ws.send_bytes(wire.encode(frame))


class Hub:
    """The open websockets of this relay process, by device."""

    def __init__(
        self,
        inbox: Inbox,
        metrics: Metrics,
        clock: Callable[[], int],
        max_connections: int,
        max_per_user: int,
        push_from_memory: bool = True,
    ) -> None:
        self.clock = clock
        # False where the backend may announce a device's events out of sequence order:
        # then an announcement only wakes the connection, which reads its queue.
        self.push_from_memory = push_from_memory
        self.inbox = inbox
        self.metrics = metrics
        self.max_connections = max_connections
        self.max_per_user = max_per_user
        self._by_device: dict[bytes, set[_Connection]] = defaultdict(set)
        self._per_user: dict[bytes, set[bytes]] = defaultdict(set)  # user -> connected devices
        self._count = 0
        self._closers: set[asyncio.Task[bool]] = set()
        self.closing = False

    @property
    def count(self) -> int:
        return self._count

    def admit(self, session: Session) -> None:
        """Refuse a new connection the caps do not allow (before the upgrade).

        A device that is already connected is always admitted: its new
        connection replaces the old one and takes no more room.
        """
        if self.closing:
            raise ServiceUnavailable("The relay is shutting down; reconnect shortly.", "busy")
        if session.device_id in self._by_device:
            return
        if self._count >= self.max_connections:
            raise ServiceUnavailable(
                "The relay cannot take more live connections now; use /v1/sync or retry later.",
                "busy",
                retry_after=30,
            )
        if len(self._per_user.get(session.user_id, ())) >= self.max_per_user:
            raise RateLimited(
                f"Your devices already hold {self.max_per_user} live connections, the most "
                "this relay allows one account; close one or use /v1/sync.",
                "too_many_websockets",
                retry_after=30,
            )

    def notify(self, device_ids: set[bytes], events: list[EventRecord] | None = None) -> None:
        """Wake the connections of these devices: their queues have new events.

        With ``events`` (what this process just committed, in commit order),
        a connection is handed the ones for its device to push as they are.
        """
        for device_id in device_ids:
            for connection in self._by_device.get(device_id, ()):
                if events is None or connection.must_read or not self.push_from_memory:
                    connection.must_read = True
                else:
                    connection.announced.extend(e for e in events if e.device_id == device_id)
                    if len(connection.announced) > _PAGE:  # a slow reader: read instead
                        connection.announced.clear()
                        connection.must_read = True
                connection.wake.set()

    def wake_all(self) -> None:
        """Every connection reads its queue (notifications of other processes were missed)."""
        for connections in self._by_device.values():
            for connection in connections:
                connection.must_read = True
                connection.wake.set()

    async def end_session(self, token_hash: bytes) -> None:
        """Close every connection opened with this session (after a logout)."""
        sockets = [
            c.ws
            for conns in self._by_device.values()
            for c in conns
            if c.session.token_hash == token_hash
        ]
        await asyncio.gather(  # together: one dead peer must not hold up the others
            *(ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"logged out") for ws in sockets),
            return_exceptions=True,
        )

    async def close_device(self, device_id: bytes) -> None:
        """Close every connection of a device that was just revoked."""
        sockets = [c.ws for c in self._by_device.get(device_id, ())]
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"device revoked")
                for ws in sockets
            ),
            return_exceptions=True,
        )

    async def _session_over(self, connection: _Connection) -> bool:
        """A connection lives no longer than its session; closing it if that has ended."""
        if self.clock() < connection.session.expires_at:
            return False
        await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session expired")
        return True

    def _attach(self, connection: _Connection) -> list[_Connection]:
        """Register a connection; detach and return the device's older ones."""
        older = list(self._by_device.get(connection.device_id, ()))
        for previous in older:
            self._detach(previous)
        self._by_device[connection.device_id].add(connection)
        self._per_user[connection.session.user_id].add(connection.device_id)
        connection.attached = True
        self._count += 1
        self.metrics.websockets.set(self._count)
        return older

    def _detach(self, connection: _Connection) -> None:
        """Forget a connection (once): it no longer counts and is no longer woken."""
        if not connection.attached:
            return
        connection.attached = False
        device_id, user_id = connection.device_id, connection.session.user_id
        self._by_device[device_id].discard(connection)
        if not self._by_device[device_id]:
            del self._by_device[device_id]
            self._per_user[user_id].discard(device_id)
            if not self._per_user[user_id]:
                del self._per_user[user_id]
        self._count -= 1
        self.metrics.websockets.set(self._count)

    async def serve(
        self,
        ws: web.WebSocketResponse,
        session: Session,
        cursor: int,
        requests: Callable[[Callable[[dict[str, Any]], Awaitable[None]]], Requests] | None = None,
    ) -> None:
        """Run one device's connection until either side closes it.

        ``requests`` builds the runner of the connection's request frames from
        the function that sends a frame back; without it, only acks are taken.
        """
        connection = _Connection(ws, session, cursor)
        runner = requests(connection.send) if requests is not None else None
        for previous in self._attach(connection):
            # In the background: a peer that is gone would hold up this connection
            # for the whole close timeout.
            closer = asyncio.create_task(
                previous.ws.close(code=REPLACED, message=b"replaced by a newer connection")
            )
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        pusher = asyncio.create_task(self._push(connection))
        remaining = max(0.0, (session.expires_at - self.clock()) / 1000)
        expiry = asyncio.get_running_loop().call_later(remaining, connection.wake.set)
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await self._receive(connection, message.data, runner)
                elif message.type is WSMsgType.TEXT:
                    await ws.close(
                        code=WSCloseCode.UNSUPPORTED_DATA, message=b"frames are binary msgpack"
                    )
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            expiry.cancel()
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            if runner is not None:
                await runner.stop()
            self._detach(connection)

    async def _receive(self, connection: _Connection, data: bytes, runner: Requests | None) -> None:
        try:
            frame = wire.decode(data, limits=_FRAME_LIMITS)
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "request" and runner is not None:
                assert isinstance(frame, dict)
                request = runner.check(frame)
            elif kind == "ack":
                assert isinstance(frame, dict)
                ack = check_body({k: v for k, v in frame.items() if k != "type"}, "ack")
            else:
                raise DecodeError("unknown_frame", "only ack and request frames are accepted")
        except (DecodeError, RelayError):
            await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"malformed frame")
            return
        if await self._session_over(connection):
            return
        if kind == "request":
            assert runner is not None
            await runner.submit(request)
        else:
            self.inbox.ack_later(connection.device_id, ack["seq"])

    async def _push(self, connection: _Connection) -> None:
        ws = connection.ws
        try:
            while not ws.closed:
                await connection.wake.wait()
                connection.wake.clear()
                if await self._session_over(connection):
                    return
                if connection.must_read:
                    # What is announced from now on was committed after the read below
                    # starts, so it follows everything the read finds.
                    connection.must_read = False
                    connection.announced.clear()
                    while True:
                        page = await self.inbox.page(connection.device_id, connection.cursor, _PAGE)
                        for event in page.events:
                            await self._send_event(connection, event)
                        if not page.more:
                            break
                while connection.announced and not connection.must_read:
                    event = connection.announced.popleft()
                    if event.seq > connection.cursor:  # else the read above already sent it
                        await self._send_event(connection, event)
                await connection.send({"type": "caught_up", "seq": connection.cursor})
        except (ConnectionResetError, RuntimeError):
            return  # the peer went away mid-send; it resumes from its cursor
        except StorageError:  # the database is down: the device reconnects and resumes
            log.warning("push failed: the database is unavailable", extra={"event": "push_failed"})
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"database unavailable")
        except Exception:
            log.exception("push failed", extra={"event": "push_failed"})
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"relay error")

    @staticmethod
    async def _send_event(connection: _Connection, event: EventRecord) -> None:
        await connection.send(
            {
                "type": "event",
                "seq": event.seq,
                "kind": str(event.kind),
                "message_id": event.message_id,
                "payload": event.payload,
            }
        )
        connection.cursor = event.seq

    async def close_all(self) -> None:
        """Close every websocket with 'going away' (1001), for a graceful shutdown."""
        self.closing = True
        sockets = [c.ws for conns in self._by_device.values() for c in conns]
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"relay shutting down")
                for ws in sockets
            ),
            return_exceptions=True,
        )
