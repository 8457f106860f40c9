"""The HTTP face of device linking and revocation (docs/relay-api.md, "Devices")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..api import parse_hex_id, read_request, respond
from ..handlers import anonymous, session_of
from ..services import SERVICES
from .service import Devices

__all__ = ["DEVICE_ROUTES"]


def _devices(request: web.Request) -> Devices:
    return request.app[SERVICES].devices


def _link_id(request: web.Request) -> bytes:
    return parse_hex_id(request.match_info["link_id"], what="link id")


async def open_link(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "link")
    link = await _devices(request).open_link(session, body["link_id"], body["expires_at"])
    return respond({"link_id": link.link_id, "expires_at": link.expires_at}, status=201)


async def put_request(request: web.Request) -> web.Response:
    anonymous(request)
    body = await read_request(request, "link_message")
    await _devices(request).put_request(_link_id(request), body["sealed"])
    return respond({"stored": True}, status=201)


async def read_link(request: web.Request) -> web.Response:
    session = await session_of(request)
    link = await _devices(request).read_link(session, _link_id(request))
    return respond(
        {
            "link_id": link.link_id,
            "expires_at": link.expires_at,
            "request": link.request,
            "answered": link.answer is not None,
        }
    )


async def put_answer(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "link_message")
    await _devices(request).put_answer(session, _link_id(request), body["sealed"])
    return respond({"stored": True}, status=201)


async def take_answer(request: web.Request) -> web.Response:
    anonymous(request)
    answer, expires_at = await _devices(request).take_answer(_link_id(request))
    return respond({"answer": answer, "expires_at": expires_at})


async def list_devices(request: web.Request) -> web.Response:
    session = await session_of(request)
    devices = await _devices(request).list_devices(session)
    return respond({"devices": devices, "this_device": session.device_id})


async def revoke(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "device_revocation")
    device_id = parse_hex_id(request.match_info["device_id"], what="device id")
    outcome = await _devices(request).revoke(session, device_id, body["revocation"])
    return respond(
        {
            "device_id": device_id,
            "revoked_at": outcome.revoked_at,
            "already_revoked": not outcome.newly,
            "wraps_destroyed": outcome.wraps_destroyed,
        }
    )


DEVICE_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/links", open_link),
    ("GET", "/v1/links/{link_id}", read_link),
    ("PUT", "/v1/links/{link_id}/request", put_request),
    ("PUT", "/v1/links/{link_id}/answer", put_answer),
    ("GET", "/v1/links/{link_id}/answer", take_answer),
    ("GET", "/v1/devices", list_devices),
    ("POST", "/v1/devices/{device_id}/revoke", revoke),
]
