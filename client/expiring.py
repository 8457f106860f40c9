"""Disappearing messages on this device: timers, per-conversation defaults, deletion.

A message's timer is in its signed header, so every device computes the same
moment with :func:`e2e_recall.copy_expires_at`: from sending for a from-sent
timer and for the sender's own copy, from this device's own opening for a
from-opened one.  That moment is stored on the row (``expires_at``), and the
copy is deleted when it comes, by whichever notices first:

- every command, as it opens the profile (:func:`expire_due`), so a device
  that was offline deletes before it shows anything;
- ``watch``, which sleeps until the next moment (:func:`next_due`);
- the relay's ``expired`` event, which deletes at once (the relay's clock may
  be ahead of ours) and is answered with a deletion receipt.

Deleting is what a recall does here: the sealed envelope, the text, the
notification and the saved files (only those still as they were written)
go, and the row stays as a content-free ``expired`` marker.  A client never
extends a timer: a copy whose moment has passed is not shown, opened or
saved again.
"""

from __future__ import annotations

from typing import Any

from e2e_recall import DeletionCause, ExpireFrom, Header, copy_expires_at, sign_deletion_receipt

from .core import Core
from .errors import UsageProblem
from .group_store import by_conversation
from .receiving import Update, _wipe, deliver_receipt
from .store import OutboxItem, StoredMessage

__all__ = [
    "Timer",
    "conversation_timer",
    "describe_timer",
    "expire_due",
    "expires_at_for",
    "next_due",
    "on_expired_event",
    "parse_timer",
    "set_conversation_timer",
]

Timer = tuple[int, ExpireFrom]
"""``expire_after`` in ms and what it counts from."""

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_NAMES = {1_000: "s", 60_000: "m", 3_600_000: "h", 86_400_000: "d", 604_800_000: "w"}
_MIN_MS, _MAX_MS = 1_000, 365 * 86_400_000


def parse_timer(text: str, start: str = "sent") -> Timer | None:
    """``30s``, ``5m``, ``1h``, ``1d``, ``1w`` (or ``off``: None) with ``sent``/``opened``."""
    word = text.strip().lower()
    if word == "off":
        return None
    number, unit = word[:-1], word[-1:]
    if unit not in _UNITS or not number.isascii() or not number.isdigit() or len(number) > 6:
        raise UsageProblem(
            f"{text!r} is not a timer; write it like 30s, 5m, 1h, 1d or 1w, or off.",
            "bad_expire",
        )
    after = int(number) * _UNITS[unit]
    if not _MIN_MS <= after <= _MAX_MS:
        raise UsageProblem(
            f"A timer runs from 1 second to one year (365d); {text!r} is outside that.",
            "bad_expire",
        )
    if start not in ("sent", "opened"):
        raise UsageProblem("A timer counts from 'sent' or 'opened'.", "bad_expire")
    return after, ExpireFrom(start)


def describe_timer(timer: Timer | None) -> str:
    """``5m after sending``, or ``off``."""
    if timer is None:
        return "off"
    after, start = timer
    for unit in sorted(_NAMES, reverse=True):
        if after % unit == 0:
            amount = f"{after // unit}{_NAMES[unit]}"
            break
    else:  # pragma: no cover - every timer is whole seconds or a multiple of 1 ms below
        amount = f"{after}ms"
    return f"{amount} after {'sending' if start is ExpireFrom.SENT else 'opening'}"


def _key(conversation_id: bytes) -> str:
    return f"expire:{conversation_id.hex()}"


def conversation_timer(core: Core, conversation_id: bytes) -> Timer | None:
    """The timer later messages in this conversation get (set with ``expire NAME``)."""
    value = core.store.get_meta(_key(conversation_id))
    if value is None:
        return None
    after, start = value.decode().split(":", 1)
    return int(after), ExpireFrom(start)


def set_conversation_timer(core: Core, conversation_id: bytes, timer: Timer | None) -> None:
    with core.store.transaction():
        value = None if timer is None else f"{timer[0]}:{timer[1]}".encode()
        core.store.set_meta(_key(conversation_id), value)


def timer_json(timer: Timer | None) -> dict[str, Any] | None:
    return None if timer is None else {"after_ms": timer[0], "from": str(timer[1])}


def expires_at_for(header: Header, opened_at: int | None, *, own: bool) -> int | None:
    """When this device's copy goes, by the core's rule (``own``: we sent it)."""
    return copy_expires_at(header, opened_at, sender_copy=own)


def _peer_name(core: Core, row: StoredMessage) -> str:
    group = by_conversation(core.store, row.conversation_id)
    if group is not None:
        return group.name
    who = core.store.contact_by_user(row.peer)
    return who.name if who else row.peer.hex()[:8]


def _delete(core: Core, row: StoredMessage, at: int) -> OutboxItem | None:
    """Inside a transaction: wipe the copy, keep an ``expired`` marker; a receipt to send."""
    _wipe(core, row)
    if row.outgoing and row.state == "sending":  # it never left: nothing to send now
        core.store.drop_outbox(row.message_id, "send")
    row.state, row.recalled_at = "expired", at
    row.replaced_by = None
    core.store.save_message(row)
    return None if row.outgoing else _receipt_only(core, row, at)


def expire_due(core: Core) -> list[Update]:
    """Delete every copy whose moment has passed by this device's clock; no network.

    The deletion receipts wait in the outbox and go with the next command
    that reaches the relay.
    """
    now = core.clock()
    due = core.store.expiring(now)
    if not due:
        return []
    updates = []
    with core.store.transaction():
        for row in due:
            _delete(core, row, now)
            updates.append(_update(core, row))
    core.store.scrub()
    return updates


def next_due(core: Core) -> int | None:
    return core.store.next_expiry()


def _update(core: Core, row: StoredMessage) -> Update:
    return Update(
        "expired",
        row.message_id,
        _peer_name(core, row),
        "its timer ran out, and it is deleted from this device.",
    )


async def on_expired_event(core: Core, message_id: bytes, event: dict[str, Any]) -> Update | None:
    """The relay destroyed our copy of a message: delete it here too, and confirm."""
    row = core.store.message(message_id)
    if row is None or row.outgoing:
        return None
    if event.get("sender") != row.peer or event.get("conversation_id") != row.conversation_id:
        return None
    if row.state == "recalled":
        return None
    already = row.state in ("expired", "deleted")
    now = core.clock()
    with core.store.transaction():
        # deleted for me: nothing is left to delete, but the receipt still says so
        deleted = row.state == "deleted"
        item = _receipt_only(core, row, now) if deleted else _delete(core, row, now)
    core.store.scrub()
    if item is not None:
        await deliver_receipt(core, item)  # if unreachable it stays in the outbox
    return None if already else _update(core, row)


def _receipt_only(core: Core, row: StoredMessage, at: int) -> OutboxItem:
    receipt = sign_deletion_receipt(
        core.keys.device.signing_key,
        user=core.user_id,
        device_id=core.device_id,
        message_id=row.message_id,
        conversation_id=row.conversation_id,
        deleted_at=at,
        opened_at=row.opened_at,
        cause=DeletionCause.EXPIRY,
    )
    item = OutboxItem(row.message_id, "receipt", receipt.signed, at)
    core.store.save_outbox(item)
    return item
