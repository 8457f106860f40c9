"""Requests on a device's WebSocket: the message, group and wrapping-key operations.

A client that keeps its WebSocket open can make the operations of
:data:`relay.operations.OPERATIONS` there instead of one HTTP request each:
no new connection, no headers, no per-request authentication (the
connection is the session).  A request is
``{"type": "request", "id", "op", "message_id", "body"}`` (the last two nil
where an operation has none); the answer,
``{"type": "response", "id", "status", "body"}``, carries exactly what the
HTTP route would have answered, refusals included (same status, code and
sentence), and may come out of order: the ``id`` pairs them.  The same
rules, rate limits and metrics apply as over HTTP (``operations``).

Up to ``MAX_IN_FLIGHT`` requests of one connection run at once; beyond
that the relay stops reading the socket, so a client that sends faster
than the relay commits is slowed by TCP, not by a growing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from e2e_recall.domains import ID_LEN
from e2e_recall.errors import ProtocolError
from e2e_recall.schema import Field, check_map

from .accounts import Session
from .api import check_body
from .errors import BadRequest, RateLimited, RelayError, from_protocol_error
from .operations import OPERATIONS
from .services import Services
from .storage.base import StorageError

__all__ = ["MAX_IN_FLIGHT", "RequestRunner"]

log = logging.getLogger("relay.ws")
MAX_IN_FLIGHT = 64
_REQUEST = (
    Field("type", "str", max_len=16),
    Field("id", "uint", max_value=2**32 - 1),
    Field("op", "str", max_len=16),
    Field("message_id", "bin", size=ID_LEN, optional=True),
    Field("body", "map", optional=True),
)


def error_answer(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and body a refusal gets, as the HTTP middleware writes them."""
    if isinstance(exc, ProtocolError):
        exc = from_protocol_error(exc)
    if isinstance(exc, StorageError):
        return 503, {
            "error": "storage",
            "message": "The relay's database is unavailable; try again shortly.",
        }
    if not isinstance(exc, RelayError):
        return 500, {"error": "internal", "message": "The relay failed to handle this request."}
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.data:
        body["facts"] = exc.data
    if exc.retry_after is not None:
        body["retry_after"] = exc.retry_after
    return exc.status, body


class RequestRunner:
    """Runs one connection's requests, at most ``MAX_IN_FLIGHT`` at a time."""

    def __init__(
        self,
        services: Services,
        session: Session,
        reply: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.services = services
        self.session = session
        self.reply = reply
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._running: set[asyncio.Task[None]] = set()

    @staticmethod
    def check(frame: dict[str, Any]) -> dict[str, Any]:
        """The frame's fields, or ``DecodeError`` (the hub closes the connection for that)."""
        return check_map(frame, _REQUEST, "request")

    async def submit(self, request: dict[str, Any]) -> None:
        """Start a checked request; waits while the connection has too many in flight."""
        await self._slots.acquire()
        task = asyncio.create_task(self._run(request))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        """The connection is closing: let the requests already running finish."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self, request: dict[str, Any]) -> None:
        started = time.perf_counter()
        op = request["op"]
        try:
            status, body = await self._answer(op, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, RelayError | ProtocolError | StorageError):
                log.exception("unexpected error", extra={"event": "internal_error", "route": op})
            status, body = error_answer(exc)
        finally:
            self._slots.release()
        metrics = self.services.metrics
        route = f"ws:{op}" if op in OPERATIONS else "ws:unknown"
        metrics.requests.labels(route, str(status)).inc()
        metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
        answer = {"type": "response", "id": request["id"], "status": status, "body": body}
        # If the peer went away it learns the outcome from the report, or from a retry.
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self.reply(answer)

    async def _answer(self, op: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if op not in OPERATIONS:
            raise BadRequest(f"There is no operation {op!r}.", "unknown_op")
        run, schema, needs_id = OPERATIONS[op]
        message_id = request.get("message_id")
        if needs_id and message_id is None:
            raise BadRequest(f"The {op} request needs a message_id.", "bad_id")
        services = self.services
        wait = services.rate.check(self.session.user_id)
        if wait is not None:
            raise RateLimited(
                "Too many requests; slow down and try again in a moment.",
                "rate_limited",
                retry_after=services.rate.retry_after(wait),
            )
        body = check_body(request.get("body") or {}, schema) if schema is not None else {}
        return await run(services, self.session, message_id, body)
