"""Whether a recall is accepted: one pure function and its policy.

The relay calls :func:`decide_recall` with what it knows about a message and
the time; the function either returns a :class:`RecallDecision` or raises a
typed refusal whose ``reason`` is one of :data:`REFUSAL_SENTENCES`.  Because
it is pure, the test vectors exercise exactly the rules the relay runs.

The window depends on state, not only on the clock: while no recipient
device has opened the message, it can be recalled until the sealed deadline;
once one has, only until the (shorter) opened deadline, or not at all under
``only_while_unread``.  Each deadline is the sender's own choice from the
signed header, capped by the relay's policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from .domains import MAX_CLOCK_SKEW_MS
from .envelope import Header
from .errors import RecallRateLimited, RecallRefused, RecallWindowClosed
from .report import format_time
from .revocation import Revocation, check_revocation_belongs, check_sender_deadline

__all__ = [
    "REFUSAL_SENTENCES",
    "MessageFacts",
    "RecallDecision",
    "RecallPolicy",
    "decide_recall",
    "recall_deadline",
    "refusal_sentence",
]

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class RecallPolicy:
    """The relay operator's limits on recall (``None`` means no cap)."""

    max_sealed_window_ms: int | None = 30 * DAY_MS
    max_opened_window_ms: int | None = 60 * 60 * 1000
    only_while_unread: bool = False
    max_recalls_per_conversation_per_day: int | None = 50
    max_clock_skew_ms: int = MAX_CLOCK_SKEW_MS


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the relay knows about a message when a revocation arrives."""

    header: Header
    first_opened_at: int | None = None  # earliest key release to any recipient device
    already_revoked: bool = False
    recalls_today: int = 0  # accepted recalls in this conversation in the last day
    expired_at: int | None = None  # when the relay destroyed it for the sender's timer


@dataclass(frozen=True, slots=True)
class RecallDecision:
    """An accepted recall: ``already_recalled`` marks an idempotent repeat.

    ``expired`` marks a message whose timer already destroyed it: the recall
    is accepted and changes nothing, since what it asks for is already done.
    """

    already_recalled: bool
    deadline: int | None
    expired: bool = False


def recall_deadline(header: Header, opened: bool, policy: RecallPolicy) -> int:
    """The last instant (ms) at which a recall is accepted in the given state."""
    if opened:
        own, cap = header.recall_opened_until, policy.max_opened_window_ms
    else:
        own, cap = header.recall_sealed_until, policy.max_sealed_window_ms
    return own if cap is None else min(own, header.sent_at + cap)


def decide_recall(
    revocation: Revocation, facts: MessageFacts, *, now: int, policy: RecallPolicy
) -> RecallDecision:
    """Accept ``revocation`` for the message of ``facts`` at ``now``, or raise.

    Order matters and is part of the spec: identity and context first (a
    stranger learns nothing about windows), then idempotency (recalling twice
    succeeds even after the window closed), then expiry (a message its timer
    destroyed is accepted as a no-op, whenever), then time, state and rate.
    """
    header = facts.header
    check_revocation_belongs(revocation, header)
    if facts.already_revoked:
        return RecallDecision(already_recalled=True, deadline=None)
    if facts.expired_at is not None:
        return RecallDecision(already_recalled=False, deadline=None, expired=True)
    check_sender_deadline(revocation, header)
    if revocation.issued_at > now + policy.max_clock_skew_ms:
        raise RecallRefused("from_future", "the revocation is dated in the future")
    opened = facts.first_opened_at is not None
    if opened and policy.only_while_unread:
        raise RecallRefused(
            "opened",
            "this relay only recalls unread messages",
            {"opened_at": facts.first_opened_at or 0},
        )
    deadline = recall_deadline(header, opened, policy)
    if now > deadline:
        raise RecallWindowClosed(
            "window_closed", f"the window closed at {deadline}", {"closed_at": deadline}
        )
    limit = policy.max_recalls_per_conversation_per_day
    if limit is not None and facts.recalls_today >= limit:
        raise RecallRateLimited("rate_limited", f"limit of {limit} per day", {"limit": limit})
    return RecallDecision(already_recalled=False, deadline=deadline)


REFUSAL_SENTENCES = {
    "not_sender": "Only the person who sent a message can recall it.",
    "other_message": "This recall does not belong to that message.",
    "other_conversation": "This recall belongs to another conversation.",
    "predates_message": "This recall is older than the message, so it cannot be meant for it.",
    "from_future": "This recall is dated in the future; check your device's clock.",
    "opened": "This relay only recalls unread messages, and it was opened at {opened_at}.",
    "window_closed": "The recall window closed at {closed_at}.",
    "issued_after_window": (
        "This recall was made after the sender's own deadline of {closed_at}, "
        "so no relay could accept it."
    ),
    "rate_limited": "The limit of {limit} recalls per conversation per day has been reached.",
}


def refusal_sentence(reason: str, data: dict[str, int] | None = None) -> str:
    """The sentence a user sees for a refused recall, with its facts filled in."""
    template = REFUSAL_SENTENCES.get(reason, "The recall was refused.")
    values = _Facts(
        (key, format_time(value) if key.endswith("_at") else str(value))
        for key, value in (data or {}).items()
    )
    return template.format_map(values)


class _Facts(dict[str, str]):
    """Facts for a sentence; one the relay did not send reads as "an unknown time"."""

    def __missing__(self, key: str) -> str:
        return "an unknown time" if key.endswith("_at") else "an unknown number of"
