"""Every device's WebSocket: receive events, hand them on, acknowledge them in batches.

Each device holds one connection for the whole run, as a client does.  The
listener decodes each event frame and calls back into the workload with
the device, the kind and the message id (``message`` notices, ``expired`` events and
``revocation`` events; ``report`` events to senders are only acknowledged).
Acknowledgements are coalesced: at most one ``ack`` frame per device every
:data:`ACK_EVERY` seconds, carrying the highest sequence number seen, as the
relay itself coalesces their writes; a client acknowledging every event
would add a frame per event to the load without changing what is measured.

The same connections carry requests (``--transport ws``): :meth:`Listener.request`
sends a ``request`` frame and waits for the ``response`` with its id, which
may arrive out of order and between events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp

from e2e_recall import wire

from .errors import BenchFailed
from .protocol import ANSWER_LIMITS, BenchDevice, RelayClient, RelayRefused

__all__ = ["ACK_EVERY", "EventHandler", "Listener"]

ACK_EVERY = 0.02
CONNECT_TIMEOUT = 30.0

EventHandler = Callable[[BenchDevice, str, bytes, dict[str, Any]], None]
"""Called with (device, kind, message id, decoded payload) for each event, in order."""


class Listener:
    """The open WebSockets of a set of devices, and what arrives on them."""

    def __init__(self, client: RelayClient, on_event: EventHandler) -> None:
        self.client = client
        self.on_event = on_event
        self.sockets: dict[bytes, aiohttp.ClientWebSocketResponse] = {}
        self.closed: list[int | None] = []
        self.stopping = False
        self._seen: dict[bytes, int] = {}
        self._acked: dict[bytes, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[int, Any]]] = {}

    async def open(self, devices: list[BenchDevice]) -> None:
        """Connect every device and wait until each has caught up with what was queued."""
        caught_up = [asyncio.get_running_loop().create_future() for _ in devices]
        for device, ready in zip(devices, caught_up, strict=True):
            self._tasks.append(asyncio.create_task(self._listen(device, ready)))
        self._tasks.append(asyncio.create_task(self._acknowledge()))
        try:
            await asyncio.wait_for(asyncio.gather(*caught_up), CONNECT_TIMEOUT)
        except TimeoutError:
            raise BenchFailed(
                f"The relay did not let {len(devices)} WebSockets connect within "
                f"{CONNECT_TIMEOUT:.0f} s."
            ) from None

    async def _listen(self, device: BenchDevice, ready: asyncio.Future[None]) -> None:
        url = self.client.websocket_url(device)
        try:
            ws = await self.client.http.ws_connect(url, headers=device.authorization)
        except aiohttp.WSServerHandshakeError as exc:
            if not ready.done():
                ready.set_exception(
                    BenchFailed(f"The relay refused a WebSocket: {exc.status} {exc.message}.")
                )
            return
        except (aiohttp.ClientError, OSError) as exc:
            if not ready.done():
                ready.set_exception(BenchFailed(f"A WebSocket could not connect: {exc}."))
            return
        self.sockets[device.device_id] = ws
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    break
                frame = wire.decode(message.data, limits=ANSWER_LIMITS)
                kind = frame.get("type")
                if kind == "response":
                    waiter = self._waiting.pop(frame["id"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result((frame["status"], frame["body"]))
                elif kind == "caught_up" and not ready.done():
                    ready.set_result(None)
                elif kind == "event":
                    self._seen[device.device_id] = frame["seq"]
                    if frame["kind"] in ("message", "revocation", "expired"):
                        payload = wire.decode(frame["payload"], limits=ANSWER_LIMITS)
                        self.on_event(device, frame["kind"], frame["message_id"], payload)
        finally:
            if not self.stopping:
                self.closed.append(ws.close_code)
            if not ready.done():
                ready.set_exception(
                    BenchFailed(f"The relay closed a WebSocket at once (code {ws.close_code}).")
                )

    async def request(
        self, device: BenchDevice, op: str, message_id: bytes | None, body: Any
    ) -> Any:
        """One operation as a request frame on the device's socket; its answer's body."""
        ws = self.sockets.get(device.device_id)
        if ws is None or ws.closed:
            raise ConnectionError("the device's WebSocket is closed")
        request_id = next(self._ids) % (1 << 32)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        frame = {
            "type": "request",
            "id": request_id,
            "op": op,
            "message_id": message_id,
            "body": body,
        }
        try:
            await ws.send_bytes(wire.encode(frame))
            status, answer = await waiter
        finally:
            self._waiting.pop(request_id, None)
        if status >= 400:
            code = answer.get("error") if isinstance(answer, dict) else None
            raise RelayRefused(status, code if isinstance(code, str) else f"http_{status}")
        return answer

    async def _acknowledge(self) -> None:
        while True:
            await asyncio.sleep(ACK_EVERY)
            for device_id, seq in list(self._seen.items()):
                if self._acked.get(device_id) == seq:
                    continue
                ws = self.sockets.get(device_id)
                if ws is None or ws.closed:
                    continue
                self._acked[device_id] = seq
                try:
                    await ws.send_bytes(wire.encode({"type": "ack", "seq": seq}))
                except (aiohttp.ClientError, ConnectionError):
                    continue

    async def close(self) -> None:
        self.stopping = True
        for waiter in self._waiting.values():
            waiter.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
