"""Pushing events to devices over WebSocket, resumable from a cursor.

Every event a device must see is first committed to its queue in storage
(with a sequence number), then the connections of that device are woken.  A
woken connection reads its queue after its cursor and sends what it finds,
in order.  So a push can be lost only together with the connection, and the
next connection, resuming from the cursor the client kept, gets it again:
nothing is missed, and since events are sent strictly by sequence number,
nothing is repeated on one connection.  The client acknowledges what it has
processed; acknowledged events are deleted.

Frames are canonical msgpack maps; from the relay:
``{"type": "event", "seq", "kind", "message_id", "payload"}`` and
``{"type": "caught_up", "seq"}``; from the client: ``{"type": "ack", "seq"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode, WSMsgType, web

from e2e_recall import wire
from e2e_recall.errors import DecodeError

from .accounts import Session
from .api import parse_body
from .errors import RelayError
from .metrics import Metrics
from .storage.base import Storage

__all__ = ["Hub"]

log = logging.getLogger("relay.hub")
_PAGE = 256


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, session: Session, cursor: int) -> None:
        self.ws = ws
        self.session = session
        self.device_id = session.device_id
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.wake.set()  # first, catch up


class Hub:
    """The open websockets of this relay process, by device."""

    def __init__(
        self, storage: Storage, metrics: Metrics, max_connections: int, clock: Callable[[], int]
    ) -> None:
        self.clock = clock
        self.storage = storage
        self.metrics = metrics
        self.max_connections = max_connections
        self._by_device: dict[bytes, set[_Connection]] = defaultdict(set)
        self._count = 0
        self.closing = False

    @property
    def count(self) -> int:
        return self._count

    def has_room(self) -> bool:
        return not self.closing and self._count < self.max_connections

    def notify(self, device_ids: Iterable[bytes]) -> None:
        """Wake the connections of these devices: their queues have new events."""
        for device_id in set(device_ids):
            for connection in self._by_device.get(device_id, ()):
                connection.wake.set()

    async def end_session(self, token_hash: bytes) -> None:
        """Close every connection opened with this session (after a logout)."""
        sockets = [
            c.ws
            for conns in self._by_device.values()
            for c in conns
            if c.session.token_hash == token_hash
        ]
        for ws in sockets:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"logged out")

    async def _session_over(self, connection: _Connection) -> bool:
        """A connection lives no longer than its session; closing it if that has ended."""
        if self.clock() < connection.session.expires_at:
            return False
        await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session expired")
        return True

    async def serve(self, ws: web.WebSocketResponse, session: Session, cursor: int) -> None:
        """Run one device's connection until either side closes it."""
        device_id = session.device_id
        connection = _Connection(ws, session, cursor)
        self._by_device[device_id].add(connection)
        self._count += 1
        self.metrics.websockets.set(self._count)
        pusher = asyncio.create_task(self._push(connection))
        remaining = max(0.0, (session.expires_at - self.clock()) / 1000)
        expiry = asyncio.get_running_loop().call_later(remaining, connection.wake.set)
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await self._receive(connection, message.data)
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
            self._by_device[device_id].discard(connection)
            if not self._by_device[device_id]:
                del self._by_device[device_id]
            self._count -= 1
            self.metrics.websockets.set(self._count)

    async def _receive(self, connection: _Connection, data: bytes) -> None:
        try:
            frame = wire.decode(data)
            if not isinstance(frame, dict) or frame.get("type") != "ack":
                raise DecodeError("unknown_frame", "only ack frames are accepted")
            body = parse_body(wire.encode({k: v for k, v in frame.items() if k != "type"}), "ack")
        except (DecodeError, RelayError):
            await connection.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"malformed frame")
            return
        if await self._session_over(connection):
            return
        await self.storage.ack_events(connection.device_id, body["seq"])

    async def _push(self, connection: _Connection) -> None:
        ws = connection.ws
        try:
            while not ws.closed:
                await connection.wake.wait()
                connection.wake.clear()
                if await self._session_over(connection):
                    return
                while True:
                    events = await self.storage.events_since(
                        connection.device_id, connection.cursor, _PAGE
                    )
                    for event in events:
                        await ws.send_bytes(
                            wire.encode(
                                {
                                    "type": "event",
                                    "seq": event.seq,
                                    "kind": str(event.kind),
                                    "message_id": event.message_id,
                                    "payload": event.payload,
                                }
                            )
                        )
                        connection.cursor = event.seq
                    if len(events) < _PAGE:
                        break
                await ws.send_bytes(wire.encode({"type": "caught_up", "seq": connection.cursor}))
        except (ConnectionResetError, RuntimeError):
            return  # the peer went away mid-send; it resumes from its cursor
        except Exception:
            log.exception("push failed", extra={"event": "push_failed"})
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"relay error")

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
