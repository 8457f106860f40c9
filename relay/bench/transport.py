"""How the bench's operations reach the relay: one small interface, one class per path.

``http`` makes each operation an HTTP request (``POST /v1/messages``,
``GET /v1/messages/{id}`` and so on) over the worker's pool of kept-alive
connections, authenticated by the device's session token.  ``ws`` makes it
a ``request`` frame on the acting device's own WebSocket, the one it
already holds for its events, and waits for the ``response`` frame with the
same id (docs/relay-api.md, "Requests on the WebSocket"): no HTTP parsing,
headers or token check per operation, as a client that keeps its socket
open would do.  Either way an operation counts only on a 2xx answer, which
for a send the relay gives once the message is durable.  Another path is
one more class with these five methods, registered in :data:`TRANSPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from e2e_recall import wire

from .listener import Listener
from .protocol import ANSWER_LIMITS, BenchDevice, PreparedSend, RelayClient

__all__ = ["TRANSPORTS", "HttpOperations", "Operations", "WebSocketOperations"]


class Operations(Protocol):
    """Each raises :class:`~.protocol.RelayRefused` (or a transport error) when refused."""

    async def send(self, message: PreparedSend) -> None: ...

    async def fetch(self, device: BenchDevice, message_id: bytes) -> None: ...

    async def open(self, device: BenchDevice, message_id: bytes) -> None: ...

    async def recall(self, sent: PreparedSend, request: bytes) -> None: ...

    async def receipt(self, device: BenchDevice, message_id: bytes, request: bytes) -> None: ...


class HttpOperations:
    """One HTTP request per operation, with the acting device's session."""

    def __init__(self, client: RelayClient, listener: Listener) -> None:
        self.client = client

    async def send(self, message: PreparedSend) -> None:
        await self.client.call("POST", "/v1/messages", message.request, message.sender)

    async def fetch(self, device: BenchDevice, message_id: bytes) -> None:
        await self.client.fetch(device, message_id)

    async def open(self, device: BenchDevice, message_id: bytes) -> None:
        await self.client.open(device, message_id)

    async def recall(self, sent: PreparedSend, request: bytes) -> None:
        await self.client.recall(sent, request)

    async def receipt(self, device: BenchDevice, message_id: bytes, request: bytes) -> None:
        await self.client.receipt(device, message_id, request)


class WebSocketOperations:
    """One request frame per operation, on the acting device's WebSocket."""

    def __init__(self, client: RelayClient, listener: Listener) -> None:
        self.listener = listener

    async def send(self, message: PreparedSend) -> None:
        await self.listener.request(message.sender, "send", None, message.body)

    async def fetch(self, device: BenchDevice, message_id: bytes) -> None:
        await self.listener.request(device, "fetch", message_id, None)

    async def open(self, device: BenchDevice, message_id: bytes) -> None:
        await self.listener.request(device, "open", message_id, {})

    async def recall(self, sent: PreparedSend, request: bytes) -> None:
        body = wire.decode(request, limits=ANSWER_LIMITS)
        await self.listener.request(sent.sender, "recall", sent.message_id, body)

    async def receipt(self, device: BenchDevice, message_id: bytes, request: bytes) -> None:
        body = wire.decode(request, limits=ANSWER_LIMITS)
        await self.listener.request(device, "receipt", message_id, body)


TRANSPORTS: dict[str, Callable[[RelayClient, Listener], Operations]] = {
    "http": HttpOperations,
    "ws": WebSocketOperations,
}
"""Transport name (``--transport``) to a factory given the relay client and the sockets."""
