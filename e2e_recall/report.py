"""The honest report: per recipient device, what a recall did and did not undo.

Everything that decides which report state follows which event lives in
:data:`TRANSITIONS`, a table; nothing else in the code base changes a state.
The table does not know whether it runs in the relay or the client.  Each
state also says who attests it (the relay, or the device's signed receipt)
and has exactly one sentence a user is shown, in :func:`describe`.

Three states describe a message that has not been recalled (``queued``,
``sealed``, ``opened``); the others describe the outcome of a recall or of
expiry.  A state never claims more than is true: once a key was released,
every later sentence still says the message was possibly already read,
copied or screenshotted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from .errors import ImpossibleTransition

__all__ = [
    "ATTESTED_BY",
    "GUARANTEES",
    "SENTENCES",
    "TRANSITIONS",
    "Attester",
    "DeviceReport",
    "DeviceState",
    "Event",
    "apply_event",
    "describe",
    "format_time",
    "next_state",
    "summarize",
]


class DeviceState(StrEnum):
    """One recipient device's state for one message (its wire name)."""

    QUEUED = "queued"
    SEALED = "sealed"
    OPENED = "opened"
    NEVER_DELIVERED = "never_delivered"
    DELIVERED_SEALED = "delivered_sealed"
    PENDING = "pending"
    DELETED = "deleted"
    EXPIRED = "expired"


class Event(StrEnum):
    """What can happen to a message, as seen for one device."""

    FETCHED = "fetched"  # the device downloaded the ciphertext
    KEY_RELEASED = "key_released"  # the relay released this device's wrap
    RECALLED = "recalled"  # the relay destroyed ciphertext and wraps
    DELETION_RECEIPT = "deletion_receipt"  # the device signed that it deleted its copy
    EXPIRED = "expired"  # retention ran out and the relay destroyed it
    TIMER_EXPIRED = "timer_expired"  # the sender's timer ran out: destroyed, device told to delete


class Attester(StrEnum):
    """Whose word a state rests on."""

    RELAY = "relay"
    DEVICE = "device"


_S = DeviceState
_E = Event

TRANSITIONS: Final[dict[DeviceState, dict[Event, DeviceState]]] = {
    _S.QUEUED: {
        _E.FETCHED: _S.SEALED,
        _E.KEY_RELEASED: _S.OPENED,
        _E.RECALLED: _S.NEVER_DELIVERED,
        _E.EXPIRED: _S.EXPIRED,
        _E.TIMER_EXPIRED: _S.EXPIRED,
    },
    _S.SEALED: {
        _E.FETCHED: _S.SEALED,
        _E.KEY_RELEASED: _S.OPENED,
        _E.RECALLED: _S.DELIVERED_SEALED,
        _E.EXPIRED: _S.EXPIRED,
        _E.TIMER_EXPIRED: _S.EXPIRED,
    },
    _S.OPENED: {
        _E.FETCHED: _S.OPENED,
        _E.KEY_RELEASED: _S.OPENED,
        _E.RECALLED: _S.PENDING,
        _E.EXPIRED: _S.OPENED,  # retention only destroys what no device has opened
        _E.TIMER_EXPIRED: _S.EXPIRED,  # the sender's timer also ends opened copies
    },
    _S.NEVER_DELIVERED: {
        _E.RECALLED: _S.NEVER_DELIVERED,
        _E.DELETION_RECEIPT: _S.NEVER_DELIVERED,  # nothing to delete; stronger state stays
        _E.EXPIRED: _S.NEVER_DELIVERED,
        _E.TIMER_EXPIRED: _S.NEVER_DELIVERED,
    },
    _S.DELIVERED_SEALED: {
        _E.FETCHED: _S.DELIVERED_SEALED,
        _E.RECALLED: _S.DELIVERED_SEALED,
        _E.DELETION_RECEIPT: _S.DELETED,
        _E.EXPIRED: _S.DELIVERED_SEALED,
        _E.TIMER_EXPIRED: _S.DELIVERED_SEALED,
    },
    _S.PENDING: {
        _E.FETCHED: _S.PENDING,
        _E.RECALLED: _S.PENDING,
        _E.DELETION_RECEIPT: _S.DELETED,
        _E.EXPIRED: _S.PENDING,
        _E.TIMER_EXPIRED: _S.PENDING,
    },
    _S.DELETED: {
        _E.FETCHED: _S.DELETED,
        _E.RECALLED: _S.DELETED,
        _E.DELETION_RECEIPT: _S.DELETED,
        _E.EXPIRED: _S.DELETED,
        _E.TIMER_EXPIRED: _S.DELETED,
    },
    _S.EXPIRED: {
        _E.RECALLED: _S.EXPIRED,  # recalling what already expired changes nothing
        _E.DELETION_RECEIPT: _S.DELETED,  # the device confirms it deleted its copy
        _E.EXPIRED: _S.EXPIRED,
        _E.TIMER_EXPIRED: _S.EXPIRED,
    },
}
"""state -> event -> next state.  A pair that is absent cannot happen
(for example a key released after the recall destroyed it) and is refused."""

_RELAY = (Attester.RELAY,)
ATTESTED_BY: Final[dict[DeviceState, tuple[Attester, ...]]] = {
    _S.QUEUED: _RELAY,
    _S.SEALED: _RELAY,
    _S.OPENED: _RELAY,
    _S.NEVER_DELIVERED: _RELAY,
    _S.DELIVERED_SEALED: _RELAY,
    _S.PENDING: _RELAY,
    # The deletion is the device's word; whether and when it had the key stays the relay's.
    _S.DELETED: (Attester.DEVICE, Attester.RELAY),
    _S.EXPIRED: _RELAY,
}
"""Whose word each state rests on, first the one that set it."""

GUARANTEES: Final[dict[DeviceState, str]] = {
    _S.QUEUED: "not yet on the device",
    _S.SEALED: "unreadable until opened",
    _S.OPENED: "possibly already read, copied or screenshotted",
    _S.NEVER_DELIVERED: "no copy ever reached this device",
    _S.DELIVERED_SEALED: "cryptographically unreadable",
    _S.PENDING: "possibly already read, copied or screenshotted; deletion not yet confirmed",
    _S.DELETED: "cooperative deletion; says nothing about copies made before",
    _S.EXPIRED: (
        "destroyed at the relay and the device told to delete; if it had been opened, "
        "possibly already read, copied or screenshotted"
    ),
}


def next_state(state: DeviceState, event: Event) -> DeviceState:
    """Look ``event`` up in :data:`TRANSITIONS`, refusing impossible pairs."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise ImpossibleTransition(
            "impossible_transition", f"{event} cannot happen in state {state}"
        ) from None


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One line of the report: a recipient device and what is known of it."""

    user: bytes
    device_id: bytes
    state: DeviceState = DeviceState.QUEUED
    fetched_at: int | None = None
    key_released_at: int | None = None
    recalled_at: int | None = None
    deleted_at: int | None = None
    expired_at: int | None = (
        None  # when the relay destroyed this device's copy (retention or timer)
    )

    @property
    def attested_by(self) -> tuple[Attester, ...]:
        return ATTESTED_BY[self.state]

    @property
    def was_opened(self) -> bool:
        return self.key_released_at is not None


def apply_event(report: DeviceReport, event: Event, at: int) -> DeviceReport:
    """Return the report after ``event`` happened at time ``at`` (ms)."""
    state = next_state(report.state, event)
    changes: dict[str, object] = {"state": state}
    if event is Event.FETCHED and report.fetched_at is None:
        changes["fetched_at"] = at
    elif event is Event.KEY_RELEASED and report.key_released_at is None:
        changes["key_released_at"] = at
    elif event is Event.RECALLED and report.recalled_at is None:
        changes["recalled_at"] = at
    elif (
        event in (Event.EXPIRED, Event.TIMER_EXPIRED)
        and state is DeviceState.EXPIRED
        and report.expired_at is None
    ):
        changes["expired_at"] = at
    elif (
        event is Event.DELETION_RECEIPT
        and state is DeviceState.DELETED
        and report.deleted_at is None
    ):
        changes["deleted_at"] = at
    return replace(report, **changes)  # type: ignore[arg-type]


def format_time(ms: int) -> str:
    """A timestamp as people read it: ISO 8601 in UTC, to the second.

    Total over every time the wire allows: a time past year 9999 (which only
    a broken or hostile peer sends) is shown as a raw count, never raised.
    """
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms after 1970-01-01 UTC"


_EXPOSED = "so it was possibly already read, copied or screenshotted"

SENTENCES: Final[dict[DeviceState, str]] = {
    _S.QUEUED: "Waiting at the relay: this device has not fetched it yet.",
    _S.SEALED: (
        "Delivered, sealed: the device has the ciphertext but not the key, so it cannot read it."
    ),
    _S.OPENED: "Opened at {opened}: the key was released to this device, " + _EXPOSED + ".",
    _S.NEVER_DELIVERED: (
        "Never delivered: recalled before this device fetched anything; no copy ever reached it."
    ),
    _S.DELIVERED_SEALED: (
        "Delivered but sealed: the device had the ciphertext but never the key, "
        "and the key is destroyed, so it can never be read."
    ),
    _S.PENDING: (
        "Pending: opened at {opened}, " + _EXPOSED + "; the device has not confirmed deletion "
        "yet and will delete it when it reconnects, if its software cooperates."
    ),
    _S.DELETED: (
        "Deleted: the device signed a deletion receipt at {deleted}; this is cooperative "
        "deletion and says nothing about copies made before."
    ),
    _S.EXPIRED: "Expired: the relay destroyed it at {expired} and told this device to delete it.",
}
"""The sentence shown for each state; ``{opened}``, ``{deleted}`` and ``{expired}`` are times."""

_DELETED_AFTER_OPENING = " It had been opened at {opened}, " + _EXPOSED + "."
_DELETED_SEALED = " The key was never released to it, so it could not have read it."
_EXPIRED_AFTER_OPENING = (
    " It had been opened at {opened}, so it was possibly already read, copied or "
    "screenshotted before it expired."
)


def _when(ms: int | None, fmt: Callable[[int], str]) -> str:
    return "an unknown time" if ms is None else fmt(ms)


def describe(report: DeviceReport, fmt: Callable[[int], str] = format_time) -> str:
    """The one sentence shown for this device, naming who attests it."""
    text = SENTENCES[report.state]
    if report.state is DeviceState.DELETED:
        text += _DELETED_SEALED if report.key_released_at is None else _DELETED_AFTER_OPENING
    elif report.state is DeviceState.EXPIRED:
        text += _DELETED_SEALED if report.key_released_at is None else _EXPIRED_AFTER_OPENING
    text = text.format(
        opened=_when(report.key_released_at, fmt),
        deleted=_when(report.deleted_at, fmt),
        expired=_when(report.expired_at, fmt),
    )
    return f"{text} (Attested by {_ATTESTERS[report.attested_by]}.)"


_ATTESTERS = {
    _RELAY: "the relay",
    (Attester.DEVICE, Attester.RELAY): "the device's signed receipt, and by the relay for the key",
}


def summarize(reports: Iterable[DeviceReport]) -> dict[DeviceState, int]:
    """Counts per state, in table order, for compact group reports."""
    counts = Counter(report.state for report in reports)
    return {state: counts[state] for state in DeviceState if counts[state]}
