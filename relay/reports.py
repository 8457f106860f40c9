"""The live report and the event payloads, as wire maps.

Built from what storage holds about one message; the sentences themselves
belong to the client (from :mod:`e2e_recall.report`), the relay sends states,
times and who attests each.
"""

from __future__ import annotations

from typing import Any

from e2e_recall import wire
from e2e_recall.report import ATTESTED_BY

from .storage.base import DeliveryRecord, EventKind, MessageRecord, MessageView, NewEvent

__all__ = [
    "device_line",
    "expired_event",
    "message_notice",
    "report",
    "report_events",
    "revocation_event",
]


def device_line(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "user": delivery.user_id,
        "device_id": delivery.device_id,
        "own_device": delivery.own_device,
        "state": str(delivery.state),
        "attested_by": [str(who) for who in ATTESTED_BY[delivery.state]],
        "fetched_at": delivery.fetched_at,
        "key_released_at": delivery.key_released_at,
        "recalled_at": delivery.recalled_at,
        "deleted_at": delivery.deleted_at,
        "receipt": delivery.receipt,
        "downloaded_at": delivery.downloaded_at,
        "expires_at": delivery.expires_at,
        "expired_at": delivery.expired_at,
    }


def report(view: MessageView) -> dict[str, Any]:
    """The whole report for the sender: one line per device, and the evidence held."""
    message = view.message
    return {
        "message_id": message.message_id,
        "conversation_id": message.conversation_id,
        "state": str(message.state),
        "sent_at": message.sent_at,
        "first_opened_at": message.first_opened_at,
        "recalled_at": message.recalled_at,
        "revocation": message.revocation,
        "purge_receipt": message.purge_receipt,
        "devices": [device_line(d) for d in view.deliveries],
        "files": {
            "count": len(view.files),
            "bytes": sum(f.size for f in view.files),
            # the blobs' rows are gone (their files are unlinked right after that commit)
            "destroyed": bool(view.files) and not any(f.present for f in view.files),
        },
    }


def message_notice(message: MessageRecord, delivery: DeliveryRecord | None = None) -> bytes:
    """What a recipient device is told before it fetches: never any content.

    ``key_id`` names the device's wrapping key its wrap was made to, so the
    device knows which private key will open it (and keeps that one).
    """
    return wire.encode(
        {
            "key_id": None if delivery is None else delivery.key_id,
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "sender": message.sender,
            "sender_device": message.sender_device,
            "size": message.size,
            "sent_at": message.sent_at,
        }
    )


def revocation_event(message: MessageRecord, device_id: bytes) -> NewEvent:
    assert message.revocation is not None
    payload = wire.encode(
        {
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "sender": message.sender,
            "revocation": message.revocation,
        }
    )
    return NewEvent(device_id, EventKind.REVOCATION, message.message_id, payload)


def expired_event(message: MessageRecord, delivery: DeliveryRecord) -> NewEvent:
    """Tell a device its copy expired: delete the text and every saved file now."""
    payload = wire.encode(
        {
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "sender": message.sender,
            "expired_at": delivery.expired_at,
        }
    )
    return NewEvent(delivery.device_id, EventKind.EXPIRED, message.message_id, payload)


def report_events(view: MessageView, sender_devices: list[bytes]) -> list[NewEvent]:
    """A ``report`` event with the current report for each of the sender's devices."""
    payload = wire.encode(report(view))
    return [
        NewEvent(device, EventKind.REPORT, view.message.message_id, payload)
        for device in sender_devices
    ]
