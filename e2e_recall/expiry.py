"""Disappearing messages: the header's timer and the moment each copy expires.

A message may carry a timer in its signed header: ``expire_after`` (ms) and
``expire_from`` (``sent`` or ``opened``), both set or both nil.  The relay
and every client compute the moment a copy expires with the same pure
function here, from the header and the facts each holds (a device's own
opening time, the sender's copy or not), so they agree on the rule and
differ only in whose clock measured the opening.  The core reads no clock:
``now`` is always passed in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from .errors import DecodeError

if TYPE_CHECKING:
    from .envelope import Header

__all__ = [
    "MAX_EXPIRE_MS",
    "MIN_EXPIRE_MS",
    "ExpireFrom",
    "check_timer",
    "copy_expires_at",
    "is_expired",
    "message_expires_at",
]

MIN_EXPIRE_MS = 1_000
MAX_EXPIRE_MS = 365 * 24 * 60 * 60 * 1000  # 31,536,000,000: one year


class ExpireFrom(StrEnum):
    """What a timer counts from."""

    SENT = "sent"  # the header's sent_at: one moment for every copy
    OPENED = "opened"  # each device's own opening; an unopened copy waits, sealed


_NAMES = frozenset(str(start) for start in ExpireFrom)


def check_timer(expire_after: int | None, expire_from: str | None) -> None:
    """Refuse a timer a conforming sender cannot make (reason ``bad_expiry``)."""
    if (expire_after is None) != (expire_from is None):
        raise DecodeError("bad_expiry", "expire_after and expire_from are set together or not")
    if expire_after is not None and not MIN_EXPIRE_MS <= expire_after <= MAX_EXPIRE_MS:
        raise DecodeError(
            "bad_expiry", f"expire_after must be between {MIN_EXPIRE_MS} and {MAX_EXPIRE_MS} ms"
        )
    if expire_from is not None and expire_from not in _NAMES:
        raise DecodeError("bad_expiry", "expire_from must be 'sent' or 'opened'")


def message_expires_at(header: Header) -> int | None:
    """When a from-sent timer ends for every copy; None without one or counting from opening."""
    if header.expire_after is None or header.expire_from is not ExpireFrom.SENT:
        return None
    return header.sent_at + header.expire_after


def copy_expires_at(
    header: Header, opened_at: int | None, *, sender_copy: bool = False
) -> int | None:
    """The moment (ms) one copy of the message expires, or None (no timer, or not yet known).

    ``opened_at`` is when this device opened it (for the relay: released its
    key).  ``sender_copy`` is the sending device's own copy, which counts
    from sending whatever the timer says, as the sender has read it already.
    A from-opened copy that was never opened has no expiry yet: it stays
    sealed until it is opened or the relay's retention ends.
    """
    after = header.expire_after
    if after is None:
        return None
    if header.expire_from is ExpireFrom.SENT or sender_copy:
        return header.sent_at + after
    return None if opened_at is None else opened_at + after


def is_expired(
    header: Header, opened_at: int | None, now: int, *, sender_copy: bool = False
) -> bool:
    """Whether the copy's time has come at ``now`` (the expiry instant itself counts)."""
    at = copy_expires_at(header, opened_at, sender_copy=sender_copy)
    return at is not None and now >= at
