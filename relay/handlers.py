"""HTTP and WebSocket handlers: translate requests to the rules and back.

No rule lives here.  A handler reads and checks its body (:mod:`.api`),
authenticates the session, calls one method of the accounts, messaging or
recall services, and encodes the answer.  The routes are listed in
docs/relay-api.md.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from e2e_recall.identity import fingerprint

from . import operations
from .accounts import Session
from .addresses import client_address, rate_key
from .api import parse_hex_id, read_request, respond
from .errors import BadRequest, RateLimited, Unauthorized
from .services import SERVICES, Services
from .ws_requests import RequestRunner

__all__ = ["anonymous", "session_of", "setup_routes"]


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def session_of(request: web.Request) -> Session:
    """The request's session (401 without one), counted against the user's rate limit."""
    services = _services(request)
    session = await services.accounts.authenticate(request.headers.get("Authorization"))
    wait = services.rate.check(session.user_id)
    if wait is not None:
        raise RateLimited(
            "Too many requests; slow down and try again in a moment.",
            "rate_limited",
            retry_after=services.rate.retry_after(wait),
        )
    return session


def anonymous(request: web.Request) -> None:
    """Count a request that needs no session against its client address."""
    services = _services(request)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = client_address(
        peer[0] if isinstance(peer, tuple) else None,
        request.headers.getall("X-Forwarded-For", []),
        services.config.trusted_proxies,
    )
    wait = services.address_rate.check(rate_key(address))
    if wait is not None:
        raise RateLimited(
            "Too many login and registration requests from your address; "
            "wait a minute and try again.",
            "rate_limited",
            retry_after=services.address_rate.retry_after(wait),
        )


def _message_id(request: web.Request) -> bytes:
    return parse_hex_id(request.match_info["message_id"], what="message id")


async def healthz(request: web.Request) -> web.Response:
    services = _services(request)
    try:
        latency = await services.storage.ping()
    except Exception:
        return web.json_response({"status": "unavailable", "database": "failing"}, status=503)
    services.metrics.db_ping_seconds.set(latency)
    if services.hub.closing:
        return web.json_response({"status": "shutting_down"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    services = _services(request)
    if services.metrics_token is not None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, b"Bearer " + services.metrics_token):
            raise Unauthorized("The metrics need the operator's bearer token.", "bad_token")
    body = generate_latest(services.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def well_known(request: web.Request) -> web.Response:
    services = _services(request)
    config, policy = services.config, services.config.policy
    return respond(
        {
            "protocol_version": 1,
            "relay_key": services.relay_key.public_key.raw,
            "relay_id": fingerprint(services.relay_key.public_key),
            "policy": {
                "max_sealed_window_ms": policy.max_sealed_window_ms,
                "max_opened_window_ms": policy.max_opened_window_ms,
                "only_while_unread": policy.only_while_unread,
                "recalls_per_conversation_per_day": policy.max_recalls_per_conversation_per_day,
                "retention_ms": config.retention,
            },
            "limits": {
                "max_message_size": config.max_message_size,
                "max_request_size": config.max_request_size,
                "max_file_size": config.max_file_size,
                "blob_quota": config.blob_quota,
            },
        }
    )


async def challenge(request: web.Request) -> web.Response:
    anonymous(request)
    value, expires_at = await _services(request).accounts.challenge()
    return respond({"challenge": value, "expires_at": expires_at})


async def register(request: web.Request) -> web.Response:
    anonymous(request)
    body = await read_request(request, "register")
    device = await _services(request).accounts.register(
        body["identity_key"],
        body["certificate"],
        body["challenge"],
        body["identity_signature"],
        body["device_signature"],
        body["handle"],
        body.get("approval"),
    )
    return respond({"user_id": device.user_id, "device_id": device.device_id}, status=201)


async def login(request: web.Request) -> web.Response:
    anonymous(request)
    body = await read_request(request, "login")
    token, expires_at = await _services(request).accounts.login(
        body["device_id"], body["challenge"], body["signature"]
    )
    return respond({"token": token, "expires_at": expires_at})


async def logout(request: web.Request) -> web.Response:
    session = await session_of(request)
    services = _services(request)
    await services.accounts.logout(session)
    await services.hub.end_session(session.token_hash)
    return respond({"logged_out": True})


async def _directory_answer(
    services: Services, user_id: bytes | None, handle: str | None
) -> web.Response:
    user, devices = await services.accounts.directory(user_id=user_id, handle=handle)
    return respond(
        {
            "user_id": user.user_id,
            "identity_key": user.identity_key,
            "handle": user.handle,
            "devices": [d.certificate for d in devices],
        }
    )


async def user(request: web.Request) -> web.Response:
    await session_of(request)
    user_id = parse_hex_id(request.match_info["user_id"], size=32, what="user id")
    return await _directory_answer(_services(request), user_id, None)


async def handle(request: web.Request) -> web.Response:
    await session_of(request)
    return await _directory_answer(_services(request), None, request.match_info["handle"])


async def send(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "send")
    status, answer = await operations.send(_services(request), session, None, body)
    return respond(answer, status=status)


async def fetch(request: web.Request) -> web.Response:
    session = await session_of(request)
    status, answer = await operations.fetch(_services(request), session, _message_id(request), None)
    return respond(answer, status=status)


async def open_message(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "open")
    services, message_id = _services(request), _message_id(request)
    status, answer = await operations.open_message(services, session, message_id, body)
    return respond(answer, status=status)


async def receipt(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "receipt")
    services, message_id = _services(request), _message_id(request)
    status, answer = await operations.receipt(services, session, message_id, body)
    return respond(answer, status=status)


async def recall(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "recall")
    services, message_id = _services(request), _message_id(request)
    status, answer = await operations.recall(services, session, message_id, body)
    return respond(answer, status=status)


async def report(request: web.Request) -> web.Response:
    session = await session_of(request)
    status, answer = await operations.report(
        _services(request), session, _message_id(request), None
    )
    return respond(answer, status=status)


def _group_id(request: web.Request) -> bytes:
    return parse_hex_id(request.match_info["group_id"], what="group id")


async def group_change(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "group_change")
    services, group_id = _services(request), _group_id(request)
    status, answer = await operations.group_change(services, session, group_id, body)
    return respond(answer, status=status)


async def group(request: web.Request) -> web.Response:
    session = await session_of(request)
    status, answer = await operations.group(_services(request), session, _group_id(request), None)
    return respond(answer, status=status)


async def group_devices(request: web.Request) -> web.Response:
    session = await session_of(request)
    services, group_id = _services(request), _group_id(request)
    status, answer = await operations.group_devices(services, session, group_id, None)
    return respond(answer, status=status)


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > maximum:
        raise BadRequest(f"{name} must be a whole number up to {maximum}.", "bad_query")
    return int(text)


async def sync(request: web.Request) -> web.Response:
    session = await session_of(request)
    after = _int_query(request, "after", 0, 2**63 - 1)
    limit = _int_query(request, "limit", 256, 1024)
    page = await _services(request).inbox.page(session.device_id, after, limit)
    return respond(
        {
            "events": [
                {
                    "seq": e.seq,
                    "kind": str(e.kind),
                    "message_id": e.message_id,
                    "payload": e.payload,
                }
                for e in page.events
            ],
            "more": page.more,
        }
    )


async def ack(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "ack")
    await _services(request).inbox.ack(session.device_id, body["seq"])
    return respond({"acked": body["seq"]})


async def websocket(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    services = _services(request)
    cursor = _int_query(request, "cursor", 0, 2**63 - 1)
    services.hub.admit(session)
    heartbeat = services.config.websocket_idle_timeout / 2000
    # A peer that does not answer our close frame within the timeout is disconnected.
    frame_limit = services.config.max_request_size + 4096  # a request frame carries a body
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=frame_limit, timeout=5.0)
    await ws.prepare(request)
    await services.hub.serve(
        ws, session, cursor, lambda reply: RequestRunner(services, session, reply)
    )
    return ws


def setup_routes(app: web.Application) -> None:
    from .blobs.routes import BLOB_ROUTES  # they check sessions with session_of, above
    from .devices.routes import DEVICE_ROUTES
    from .keys.routes import WRAP_KEY_ROUTES

    routes: list[tuple[str, str, Any]] = [
        ("GET", "/healthz", healthz),
        ("GET", "/metrics", metrics),
        ("GET", "/.well-known/e2e-recall", well_known),
        ("POST", "/v1/challenge", challenge),
        ("POST", "/v1/register", register),
        ("POST", "/v1/login", login),
        ("POST", "/v1/logout", logout),
        ("GET", "/v1/users/{user_id}", user),
        ("GET", "/v1/handles/{handle}", handle),
        ("POST", "/v1/messages", send),
        ("GET", "/v1/messages/{message_id}", fetch),
        ("POST", "/v1/messages/{message_id}/open", open_message),
        ("POST", "/v1/messages/{message_id}/receipt", receipt),
        ("POST", "/v1/messages/{message_id}/recall", recall),
        ("GET", "/v1/messages/{message_id}/report", report),
        ("POST", "/v1/groups/{group_id}/changes", group_change),
        ("GET", "/v1/groups/{group_id}", group),
        ("GET", "/v1/groups/{group_id}/devices", group_devices),
        ("GET", "/v1/sync", sync),
        ("POST", "/v1/sync/ack", ack),
        ("GET", "/v1/ws", websocket),
        *BLOB_ROUTES,
        *DEVICE_ROUTES,
        *WRAP_KEY_ROUTES,
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
