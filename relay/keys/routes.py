"""HTTP routes of wrapping-key rotation (docs/relay-api.md, "Wrapping keys")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..api import read_request, respond
from ..handlers import session_of
from ..services import SERVICES

__all__ = ["WRAP_KEY_ROUTES"]


async def upload_certificate(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "certificate")
    outcome = await request.app[SERVICES].wrap_keys.rotate(session, body["certificate"])
    answer = {
        "created": outcome.created,
        "key_id": outcome.key_id,
        "expires_at": outcome.expires_at,
    }
    return respond(answer, status=201 if outcome.created else 200)


async def key_status(request: web.Request) -> web.Response:
    session = await session_of(request)
    return respond(await request.app[SERVICES].wrap_keys.status(session))


WRAP_KEY_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/devices/self/certificate", upload_certificate),
    ("GET", "/v1/devices/self/keys", key_status),
]
