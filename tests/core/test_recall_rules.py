"""Whether the relay accepts a recall: decide_recall, deadlines, refusal sentences."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from e2e_recall import (
    MessageFacts,
    RecallDecision,
    RecallPolicy,
    RecallRateLimited,
    RecallRefused,
    RecallWindowClosed,
    ReplayedRevocation,
    WrongContext,
    WrongSigner,
    decide_recall,
    recall_deadline,
    refusal_sentence,
    sign_revocation,
)
from e2e_recall.domains import MAX_CLOCK_SKEW_MS
from e2e_recall.errors import E2ERecallError, ProtocolError
from e2e_recall.recall_rules import DAY_MS, REFUSAL_SENTENCES
from e2e_recall.report import format_time

POLICY = RecallPolicy()
HOUR = 60 * 60 * 1000


def facts(world: Any, **changes: Any) -> MessageFacts:
    return MessageFacts(header=world.header(), **changes)


def refuse(
    world: Any, revocation: Any, message: MessageFacts, now: int, policy: RecallPolicy = POLICY
) -> E2ERecallError:
    with pytest.raises(ProtocolError) as info:
        decide_recall(revocation, message, now=now, policy=policy)
    return info.value


def test_default_policy() -> None:
    assert POLICY.max_sealed_window_ms == 30 * DAY_MS
    assert POLICY.max_opened_window_ms == HOUR
    assert POLICY.only_while_unread is False
    assert POLICY.max_recalls_per_conversation_per_day == 50
    assert POLICY.max_clock_skew_ms == MAX_CLOCK_SKEW_MS


def test_accepted_while_sealed(world: Any) -> None:
    decision = decide_recall(
        world.revocation(), facts(world), now=world.now + world.minute, policy=POLICY
    )
    assert decision == RecallDecision(already_recalled=False, deadline=world.now + world.day)


def test_accepted_after_opening_within_the_opened_window(world: Any) -> None:
    message = facts(world, first_opened_at=world.now + 30_000)
    decision = decide_recall(
        world.revocation(), message, now=world.now + world.minute, policy=POLICY
    )
    assert decision.deadline == world.now + 10 * world.minute
    assert not decision.already_recalled


# -- every refusal -----------------------------------------------------------------


def test_not_sender(world: Any) -> None:
    revocation = sign_revocation(
        world.mallory,
        message_id=world.message_id,
        conversation_id=world.conversation,
        issued_at=world.now + 1,
    )
    error = refuse(world, revocation, facts(world), world.now + 1)
    assert isinstance(error, WrongSigner)
    assert error.reason == "not_sender"


def test_other_message(world: Any) -> None:
    error = refuse(
        world, world.revocation(message_id=world.other_message_id), facts(world), world.now
    )
    assert isinstance(error, WrongContext)
    assert error.reason == "other_message"


def test_other_conversation(world: Any) -> None:
    revocation = world.revocation(conversation_id=world.other_conversation)
    error = refuse(world, revocation, facts(world), world.now)
    assert isinstance(error, WrongContext)
    assert error.reason == "other_conversation"


def test_predates_message(world: Any) -> None:
    error = refuse(world, world.revocation(issued_at=world.now - 1), facts(world), world.now)
    assert isinstance(error, ReplayedRevocation)
    assert error.reason == "predates_message"


def test_from_future(world: Any) -> None:
    now = world.now + world.minute
    revocation = world.revocation(issued_at=now + MAX_CLOCK_SKEW_MS + 1)
    error = refuse(world, revocation, facts(world), now)
    assert type(error) is RecallRefused
    assert error.reason == "from_future"
    # Exactly at the skew limit it is still accepted.
    ok = world.revocation(issued_at=now + MAX_CLOCK_SKEW_MS)
    assert decide_recall(ok, facts(world), now=now, policy=POLICY)


def test_clock_skew_comes_from_the_policy(world: Any) -> None:
    now = world.now + world.minute
    revocation = world.revocation(issued_at=now + 10)
    strict = replace(POLICY, max_clock_skew_ms=0)
    assert refuse(world, revocation, facts(world), now, strict).reason == "from_future"
    assert decide_recall(revocation, facts(world), now=now + 10, policy=strict)


def test_opened_under_only_while_unread(world: Any) -> None:
    policy = replace(POLICY, only_while_unread=True)
    opened_at = world.now + 30_000
    error = refuse(
        world,
        world.revocation(),
        facts(world, first_opened_at=opened_at),
        world.now + world.minute,
        policy,
    )
    assert type(error) is RecallRefused
    assert error.reason == "opened"
    assert error.data == {"opened_at": opened_at}
    # Still sealed: accepted under the same policy.
    assert decide_recall(
        world.revocation(), facts(world), now=world.now + world.minute, policy=policy
    )


def test_window_closed_while_sealed(world: Any) -> None:
    header = world.header()
    revocation = world.revocation(issued_at=header.recall_sealed_until)
    deadline = header.recall_sealed_until
    assert decide_recall(revocation, facts(world), now=deadline, policy=POLICY).deadline == deadline
    error = refuse(world, revocation, facts(world), deadline + 1)
    assert isinstance(error, RecallWindowClosed)
    assert error.reason == "window_closed"
    assert error.data == {"closed_at": deadline}


def test_window_closed_once_opened(world: Any) -> None:
    header = world.header()
    deadline = header.recall_opened_until
    message = facts(world, first_opened_at=world.now + 1)
    revocation = world.revocation(issued_at=deadline)
    assert decide_recall(revocation, message, now=deadline, policy=POLICY).deadline == deadline
    error = refuse(world, revocation, message, deadline + 1)
    assert isinstance(error, RecallWindowClosed)
    assert error.reason == "window_closed"
    assert error.data == {"closed_at": deadline}
    # The same moment is fine while no device has opened it.
    assert decide_recall(revocation, facts(world), now=deadline + 1, policy=POLICY)


def test_rate_limited(world: Any) -> None:
    now = world.now + world.minute
    assert decide_recall(world.revocation(), facts(world, recalls_today=49), now=now, policy=POLICY)
    error = refuse(world, world.revocation(), facts(world, recalls_today=50), now)
    assert isinstance(error, RecallRateLimited)
    assert error.reason == "rate_limited"
    assert error.data == {"limit": 50}
    unlimited = replace(POLICY, max_recalls_per_conversation_per_day=None)
    assert decide_recall(
        world.revocation(), facts(world, recalls_today=10**6), now=now, policy=unlimited
    )


def test_refusal_classes_are_recall_refusals(world: Any) -> None:
    assert issubclass(RecallWindowClosed, RecallRefused)
    assert issubclass(RecallRateLimited, RecallRefused)
    assert RecallWindowClosed("window_closed").expect == "window_closed"
    assert RecallRateLimited("rate_limited").expect == "rate_limited"


# -- order and idempotency --------------------------------------------------------------


def test_repeat_after_the_window_closed_is_idempotent(world: Any) -> None:
    message = facts(world, already_revoked=True, first_opened_at=world.now + 1, recalls_today=10**6)
    late = world.now + 365 * world.day
    decision = decide_recall(world.revocation(), message, now=late, policy=POLICY)
    assert decision == RecallDecision(already_recalled=True, deadline=None)


def test_repeat_ignores_only_while_unread_and_future_dates(world: Any) -> None:
    policy = replace(POLICY, only_while_unread=True)
    message = facts(world, already_revoked=True, first_opened_at=world.now + 1)
    revocation = world.revocation(issued_at=world.now + HOUR)  # beyond the clock skew
    assert decide_recall(revocation, message, now=world.now, policy=policy).already_recalled


def test_a_stranger_learns_nothing_about_the_window(world: Any) -> None:
    revocation = sign_revocation(
        world.mallory,
        message_id=world.message_id,
        conversation_id=world.conversation,
        issued_at=world.now + 1,
    )
    for message in (facts(world), facts(world, already_revoked=True)):
        error = refuse(world, revocation, message, world.now + 365 * world.day)
        assert error.reason == "not_sender"


def test_identity_is_checked_before_idempotency(world: Any) -> None:
    revocation = world.revocation(message_id=world.other_message_id)
    error = refuse(world, revocation, facts(world, already_revoked=True), world.now)
    assert error.reason == "other_message"


# -- deadlines ----------------------------------------------------------------------------


def test_deadlines_capped_by_policy(world: Any) -> None:
    header = world.header(
        recall_opened_until=world.now + 2 * HOUR, recall_sealed_until=world.now + 60 * DAY_MS
    )
    assert recall_deadline(header, False, POLICY) == world.now + 30 * DAY_MS
    assert recall_deadline(header, True, POLICY) == world.now + HOUR
    uncapped = RecallPolicy(max_sealed_window_ms=None, max_opened_window_ms=None)
    assert recall_deadline(header, False, uncapped) == world.now + 60 * DAY_MS
    assert recall_deadline(header, True, uncapped) == world.now + 2 * HOUR


def test_senders_own_deadline_wins_when_stricter(world: Any) -> None:
    header = world.header()
    assert recall_deadline(header, False, POLICY) == header.recall_sealed_until
    assert recall_deadline(header, True, POLICY) == header.recall_opened_until


def test_capped_window_refuses_with_the_capped_deadline(world: Any) -> None:
    header = world.header(recall_sealed_until=world.now + 60 * DAY_MS)
    message = MessageFacts(header=header)
    revocation = world.revocation(issued_at=world.now + 30 * DAY_MS)
    assert decide_recall(revocation, message, now=world.now + 30 * DAY_MS, policy=POLICY)
    error = refuse(world, revocation, message, world.now + 30 * DAY_MS + 1)
    assert error.reason == "window_closed"
    assert error.data == {"closed_at": world.now + 30 * DAY_MS}


def test_zero_opened_window(world: Any) -> None:
    policy = replace(POLICY, max_opened_window_ms=0)
    message = facts(world, first_opened_at=world.now)
    assert decide_recall(
        world.revocation(issued_at=world.now), message, now=world.now, policy=policy
    )
    assert (
        refuse(world, world.revocation(issued_at=world.now), message, world.now + 1, policy).reason
        == "window_closed"
    )


# -- sentences ----------------------------------------------------------------------------


def test_every_refusal_has_a_sentence(world: Any) -> None:
    """Each reason decide_recall can refuse with has its own sentence (module contract)."""
    header = world.header()
    stranger = sign_revocation(
        world.mallory,
        message_id=world.message_id,
        conversation_id=world.conversation,
        issued_at=world.now + 1,
    )
    cases = [
        (stranger, facts(world), world.now, POLICY),
        (world.revocation(message_id=world.other_message_id), facts(world), world.now, POLICY),
        (
            world.revocation(conversation_id=world.other_conversation),
            facts(world),
            world.now,
            POLICY,
        ),
        (world.revocation(issued_at=world.now - 1), facts(world), world.now, POLICY),
        (world.revocation(issued_at=world.now + HOUR), facts(world), world.now, POLICY),
        (
            world.revocation(),
            facts(world, first_opened_at=world.now),
            world.now + world.minute,
            replace(POLICY, only_while_unread=True),
        ),
        (
            world.revocation(issued_at=header.recall_sealed_until),
            facts(world),
            header.recall_sealed_until + 1,
            POLICY,
        ),
        (world.revocation(), facts(world, recalls_today=50), world.now + world.minute, POLICY),
        (
            world.revocation(issued_at=header.recall_sealed_until + MAX_CLOCK_SKEW_MS + 1),
            facts(world),
            header.recall_sealed_until + MAX_CLOCK_SKEW_MS + 1,
            POLICY,
        ),
    ]
    reasons = set()
    for revocation, message, now, policy in cases:
        error = refuse(world, revocation, message, now, policy)
        reasons.add(error.reason)
        assert error.reason in REFUSAL_SENTENCES, f"no sentence for {error.reason!r}"
        assert refusal_sentence(error.reason, error.data) != "The recall was refused."
    assert len(reasons) == len(cases)


@pytest.mark.parametrize("reason", sorted(REFUSAL_SENTENCES))
def test_sentence_without_facts_never_raises(reason: str) -> None:
    text = refusal_sentence(reason)
    assert text
    assert "{" not in text
    assert refusal_sentence(reason, {}) == text
    assert refusal_sentence(reason, None) == text


def test_sentences_fill_in_facts(world: Any) -> None:
    closed = world.now + world.day
    assert refusal_sentence("window_closed", {"closed_at": closed}) == (
        f"The recall window closed at {format_time(closed)}."
    )
    assert format_time(closed) in refusal_sentence("window_closed", {"closed_at": closed})
    assert "1970-01-01 00:00:00 UTC" in refusal_sentence("opened", {"opened_at": 0})
    assert "limit of 50 recalls" in refusal_sentence("rate_limited", {"limit": 50})


def test_sentences_for_missing_facts() -> None:
    assert refusal_sentence("window_closed") == "The recall window closed at an unknown time."
    assert "opened at an unknown time" in refusal_sentence("opened", {"limit": 3})
    assert "an unknown number of recalls" in refusal_sentence("rate_limited", {"closed_at": 0})


def test_unknown_reason_gets_the_generic_sentence() -> None:
    assert refusal_sentence("martian") == "The recall was refused."
    assert refusal_sentence("", {"x_at": 1}) == "The recall was refused."


def test_sentence_from_a_real_refusal(world: Any) -> None:
    header = world.header()
    revocation = world.revocation(issued_at=header.recall_sealed_until)
    error = refuse(world, revocation, facts(world), header.recall_sealed_until + 1)
    assert refusal_sentence(error.reason, error.data) == (
        f"The recall window closed at {format_time(header.recall_sealed_until)}."
    )


@pytest.mark.parametrize("value", [253_402_300_800_000, 2**63 - 1])
def test_sentence_never_raises_for_any_wire_time(value: int) -> None:
    """Facts come from the relay; any time the protocol can carry must not crash the client."""
    for reason, key in (("window_closed", "closed_at"), ("opened", "opened_at")):
        text = refusal_sentence(reason, {key: value})
        assert text.startswith(REFUSAL_SENTENCES[reason].split("{")[0])


# -- a message its timer already destroyed ------------------------------------------------


def test_recalling_an_expired_message_is_an_accepted_no_op(world: Any) -> None:
    message = facts(world, expired_at=world.now + world.minute, recalls_today=10**6)
    late = world.now + 365 * world.day  # every window closed, the limit passed
    decision = decide_recall(world.revocation(), message, now=late, policy=POLICY)
    assert decision == RecallDecision(already_recalled=False, deadline=None, expired=True)


def test_an_earlier_recall_of_an_expired_message_stands(world: Any) -> None:
    message = facts(world, expired_at=world.now + 1, already_revoked=True)
    decision = decide_recall(world.revocation(), message, now=world.now + 2, policy=POLICY)
    assert decision.already_recalled
    assert not decision.expired


def test_a_stranger_cannot_recall_an_expired_message(world: Any) -> None:
    revocation = sign_revocation(
        world.mallory,
        message_id=world.message_id,
        conversation_id=world.conversation,
        issued_at=world.now + 1,
    )
    error = refuse(world, revocation, facts(world, expired_at=world.now + 1), world.now + 2)
    assert error.reason == "not_sender"
