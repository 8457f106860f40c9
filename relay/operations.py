"""The operations, once, for both transports: HTTP routes and WebSocket requests.

Each takes the session, the message id (where there is one) and the checked
body, calls the services, counts what the metrics count, and returns the
status and answer map.  ``handlers`` puts them behind HTTP routes;
``ws_requests`` behind ``request`` frames on a device's WebSocket, the hot
path for clients that keep one open.  The rules themselves are in the
services; nothing here decides anything.
"""

from __future__ import annotations

from typing import Any

from e2e_recall import wire

from .accounts import Session
from .api import parse_body
from .keys.operations import key_status, upload_certificate
from .messaging import Wrap
from .services import Services

__all__ = [
    "OPERATIONS",
    "fetch",
    "group",
    "group_change",
    "open_message",
    "recall",
    "receipt",
    "report",
    "send",
]

Answer = tuple[int, dict[str, Any]]


def _wraps(items: list[dict[str, bytes]]) -> list[Wrap]:
    return [Wrap(item["device_id"], item["wrap"], item["key_id"]) for item in items]


async def send(
    services: Services, session: Session, _: bytes | None, body: dict[str, Any]
) -> Answer:
    stored, created = await services.messaging.send(
        session, body["envelope"], _wraps(body["wraps"]), body["blobs"]
    )
    if created:
        services.metrics.messages_stored.inc()
    answer = {
        "message_id": stored.message_id,
        "received_at": stored.received_at,
        "created": created,
    }
    return (201 if created else 200), answer


async def fetch(services: Services, session: Session, message_id: bytes | None, _: Any) -> Answer:
    assert message_id is not None
    envelope, key_id = await services.messaging.fetch(session, message_id)
    return 200, {"envelope": envelope, "key_id": key_id}


async def open_message(
    services: Services, session: Session, message_id: bytes | None, _: Any
) -> Answer:
    assert message_id is not None
    wrap, key_id = await services.messaging.open(session, message_id)
    return 200, {"wrap": wrap, "key_id": key_id}


async def receipt(
    services: Services, session: Session, message_id: bytes | None, body: dict[str, Any]
) -> Answer:
    assert message_id is not None
    await services.messaging.receipt(session, message_id, body["receipt"])
    return 200, {"accepted": True}


async def recall(
    services: Services, session: Session, message_id: bytes | None, body: dict[str, Any]
) -> Answer:
    assert message_id is not None
    replacement = None
    if body["replacement"] is not None:
        fields = parse_body(wire.encode(body["replacement"]), "replacement")
        replacement = (fields["envelope"], _wraps(fields["wraps"]), fields["blobs"])
    try:
        outcome = await services.recalls.recall(
            session, message_id, body["revocation"], replacement
        )
    except Exception as exc:
        services.metrics.recalls.labels(getattr(exc, "code", "error")).inc()
        raise
    services.metrics.recalls.labels("repeat" if outcome.already_recalled else "accepted").inc()
    if not outcome.already_recalled and outcome.replacement_id is not None:
        services.metrics.messages_stored.inc()  # the replacement was stored with the recall
    return 200, {
        "already_recalled": outcome.already_recalled,
        "report": outcome.report,
        "replacement_id": outcome.replacement_id,
        "expired": outcome.expired,
    }


async def report(services: Services, session: Session, message_id: bytes | None, _: Any) -> Answer:
    assert message_id is not None
    return 200, await services.messaging.report(session, message_id)


async def group_change(
    services: Services, session: Session, group_id: bytes | None, body: dict[str, Any]
) -> Answer:
    assert group_id is not None
    outcome = await services.groups.change(session, group_id, body["change"])
    return (201 if outcome.created else 200), {"seq": outcome.seq, "created": outcome.created}


async def group(services: Services, session: Session, group_id: bytes | None, _: Any) -> Answer:
    assert group_id is not None
    return 200, {"group_id": group_id, "changes": await services.groups.chain(session, group_id)}


async def group_devices(
    services: Services, session: Session, group_id: bytes | None, _: Any
) -> Answer:
    assert group_id is not None
    view, entries = await services.groups.member_directory(session, group_id)
    members = [
        {
            "user_id": user.user_id,
            "identity_key": user.identity_key,
            "handle": user.handle,
            "devices": [d.certificate for d in devices],
        }
        for user, devices in entries
    ]
    return 200, {"group_id": group_id, "seq": view.group.seq, "members": members}


OPERATIONS = {
    # name: (function, request schema in api.REQUESTS or None for no body, needs a message id)
    "send": (send, "send", False),
    "fetch": (fetch, None, True),
    "open": (open_message, "open", True),
    "receipt": (receipt, "receipt", True),
    "recall": (recall, "recall", True),
    "report": (report, None, True),
    # the group operations take the group id where the others take a message id
    "group_change": (group_change, "group_change", True),
    "group": (group, None, True),
    "group_devices": (group_devices, None, True),
    # this device's wrapping keys (relay/keys/operations.py): rotation and key status
    "certificate": (upload_certificate, "certificate", False),
    "keys": (key_status, None, False),
}
