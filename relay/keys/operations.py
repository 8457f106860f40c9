"""The wrapping-key operations, once, for both transports (docs/relay-api.md, "Wrapping keys").

``routes`` puts them behind ``POST /v1/devices/self/certificate`` and
``GET /v1/devices/self/keys``; :mod:`relay.operations` lists them as the
``certificate`` and ``keys`` WebSocket ops, so a device that keeps its
WebSocket open rotates over it with the same checks, errors and rate limit.
They take the arguments every operation takes (the message id is unused)
and decide nothing: the rules are in :class:`~relay.keys.service.WrapKeys`.
"""

from __future__ import annotations

from typing import Any

from ..accounts import Session
from ..services import Services

__all__ = ["key_status", "upload_certificate"]

Answer = tuple[int, dict[str, Any]]


async def upload_certificate(
    services: Services, session: Session, _: bytes | None, body: dict[str, Any]
) -> Answer:
    """Make the body's certificate this device's current one (201), or find it already is (200)."""
    outcome = await services.wrap_keys.rotate(session, body["certificate"])
    answer = {
        "created": outcome.created,
        "key_id": outcome.key_id,
        "expires_at": outcome.expires_at,
    }
    return (201 if outcome.created else 200), answer


async def key_status(services: Services, session: Session, _: bytes | None, __: Any) -> Answer:
    """The device's keys that accept wraps, and the wraps still pending per key id."""
    return 200, await services.wrap_keys.status(session)
