"""Requests over the event WebSocket, beside the events (docs/relay-api.md, "Requests on the
WebSocket").

While ``watch`` holds its device's WebSocket, :class:`~client.transport.Transport`
sends the operations that have a WebSocket op on it instead of opening an
HTTP request.  The relay answers ``{"type": "response", "id", "status",
"body"}`` in any order and between events, so one reader task owns the
socket: it hands each answer to the request waiting for its id and queues
everything else for the frame loop, which reads through :meth:`receive`
exactly as it read the socket itself.  That way a request made from inside
the frame loop (a rotation that came due while it listened) cannot wait for
an answer the loop would only read after it returned.

A request whose connection closes before its answer came raises
:class:`ChannelClosed`; the transport then makes it over HTTP, which is
safe for the operations it sends here (each is answered the same when
repeated).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from e2e_recall import wire
from e2e_recall.errors import E2ERecallError

__all__ = ["ChannelClosed", "RequestChannel"]

_FRAME_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20, max_array=10_000)
_MAX_ID = 2**32 - 1
_TERMINAL = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class ChannelClosed(Exception):
    """The WebSocket closed before the request was sent or answered (HTTP can take over)."""


class RequestChannel:
    """One open event WebSocket: events and other frames in order, requests paired by id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._inbox: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._last: aiohttp.WSMessage | None = None  # the message that ended the connection
        self._next_id = 0
        self._reader = asyncio.ensure_future(self._read())

    # what the frame loop uses, as it used the socket ----------------------------------------
    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def open(self) -> bool:
        return self._last is None and not self._ws.closed

    async def receive(self) -> aiohttp.WSMessage:
        """The next frame that is not an answer to a request (the closing one, once closed)."""
        if self._inbox.empty() and self._last is not None:
            return self._last
        return await self._inbox.get()

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()

    # requests --------------------------------------------------------------------------------
    async def request(
        self, op: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, dict[str, Any]]:
        """Send one request and wait for its answer: the HTTP route's status and body."""
        if not self.open:
            raise ChannelClosed
        self._next_id = self._next_id % _MAX_ID + 1
        request_id = self._next_id
        answer: asyncio.Future[tuple[int, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[request_id] = answer
        frame = {"type": "request", "id": request_id, "op": op, "message_id": None, "body": body}
        try:
            try:
                await self._ws.send_bytes(wire.encode(frame))
            except (ConnectionResetError, RuntimeError, aiohttp.ClientError):
                raise ChannelClosed from None
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._waiting.pop(request_id, None)

    async def stop(self) -> None:
        """The connection is done with: stop reading, and let waiting requests go to HTTP."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._fail_waiting()

    # the reader ------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message.type in _TERMINAL or message.type is aiohttp.WSMsgType.ERROR:
                    self._last = message
                    self._inbox.put_nowait(message)
                    return
                if message.type is aiohttp.WSMsgType.BINARY and self._answered(message.data):
                    continue
                self._inbox.put_nowait(message)  # events, and whatever the loop must judge
        finally:
            if self._last is None:  # the reader failed or was stopped: the loop must not wait
                self._last = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)
                self._inbox.put_nowait(self._last)
            self._fail_waiting()

    def _answered(self, data: bytes) -> bool:
        """Hand a response frame to its request; False for any other frame."""
        try:
            frame = wire.decode(data, limits=_FRAME_LIMITS)
        except E2ERecallError:
            return False  # the frame loop meets it too, and ends the connection
        if not isinstance(frame, dict) or frame.get("type") != "response":
            return False
        request_id = frame.get("id")
        waiting = self._waiting.get(request_id) if type(request_id) is int else None
        status, body = frame.get("status"), frame.get("body")
        if waiting is not None and not waiting.done():
            if type(status) is int and isinstance(body, dict):
                waiting.set_result((status, body))
            else:
                waiting.set_exception(ChannelClosed())  # a garbled answer: ask over HTTP
        return True

    def _fail_waiting(self) -> None:
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(ChannelClosed())
