"""HTTP routes of wrapping-key rotation (docs/relay-api.md, "Wrapping keys").

The operations themselves are in :mod:`.operations`, shared with the
WebSocket ops of the same names.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..api import read_request, respond
from ..handlers import session_of
from ..services import SERVICES
from . import operations

__all__ = ["WRAP_KEY_ROUTES"]


async def upload_certificate(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "certificate")
    services = request.app[SERVICES]
    status, answer = await operations.upload_certificate(services, session, None, body)
    return respond(answer, status=status)


async def key_status(request: web.Request) -> web.Response:
    session = await session_of(request)
    status, answer = await operations.key_status(request.app[SERVICES], session, None, None)
    return respond(answer, status=status)


WRAP_KEY_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/devices/self/certificate", upload_certificate),
    ("GET", "/v1/devices/self/keys", key_status),
]
