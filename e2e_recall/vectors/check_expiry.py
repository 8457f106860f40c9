"""Runners for the disappearing-message vectors (``expiry.json``).

``EnvelopeOpen`` and ``RecallAcceptance`` tests there use the runners of
``check.py``; a ``CopyExpiry`` test decodes ``header`` (a malformed timer is
refused there) and computes when the copy expires from ``openedAt``,
``senderCopy`` and ``now``, as the relay and every client do.
"""

from __future__ import annotations

from typing import Any

from ..envelope import Header
from ..expiry import copy_expires_at, is_expired
from .fields import hex_field

__all__ = ["EXPIRY_RUNNERS"]


def _copy_expiry(group: dict[str, Any], test: dict[str, Any]) -> Any:
    header = Header.decode(hex_field(test["header"]))
    opened, own = test["openedAt"], bool(test["senderCopy"])
    return {
        "expiresAt": copy_expires_at(header, opened, sender_copy=own),
        "expired": is_expired(header, opened, test["now"], sender_copy=own),
    }


EXPIRY_RUNNERS = {"CopyExpiry": _copy_expiry}
