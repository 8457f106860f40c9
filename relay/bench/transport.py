"""How a send reaches the relay: one small interface, one class per path.

``http`` posts each send (``POST /v1/messages``) over the worker's pool of
kept-alive connections.  ``ws`` sends it as a ``request`` frame on the
sending device's own WebSocket, the one it already holds for its events,
and waits for the ``response`` frame with the same id (docs/relay-api.md,
"Requests on the WebSocket"): no HTTP parsing or headers per message.
Either way the send counts as acknowledged only on a 2xx answer, which the
relay gives once the message is durable.  Only sends change transport;
opens, recalls, fetches and receipts stay on HTTP, so ``--transport``
compares the two paths for the operation that dominates a relay's load.
Another path is one more class with :meth:`SendTransport.send`, registered
in :data:`TRANSPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .listener import Listener
from .protocol import PreparedSend, RelayClient

__all__ = ["TRANSPORTS", "HttpSendTransport", "SendTransport", "WebSocketSendTransport"]


class SendTransport(Protocol):
    """Deliver one prepared send and return when the relay acknowledged it (durably)."""

    async def send(self, message: PreparedSend) -> None:
        """Raise :class:`~.protocol.RelayRefused` (or a transport error) when not acknowledged."""


class HttpSendTransport:
    """``POST /v1/messages`` with the sending device's session, over the shared HTTP pool."""

    def __init__(self, client: RelayClient, listener: Listener) -> None:
        self.client = client

    async def send(self, message: PreparedSend) -> None:
        await self.client.call("POST", "/v1/messages", message.request, message.sender)


class WebSocketSendTransport:
    """A ``send`` request frame on the sending device's WebSocket."""

    def __init__(self, client: RelayClient, listener: Listener) -> None:
        self.listener = listener

    async def send(self, message: PreparedSend) -> None:
        await self.listener.request(message.sender, "send", None, message.body)


TRANSPORTS: dict[str, Callable[[RelayClient, Listener], SendTransport]] = {
    "http": HttpSendTransport,
    "ws": WebSocketSendTransport,
}
"""Transport name (``--transport``) to a factory given the relay client and the sockets."""
