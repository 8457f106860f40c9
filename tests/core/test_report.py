"""The honest report: the transition table, the sentences, who attests what."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_recall import (
    Attester,
    DeviceReport,
    DeviceState,
    Event,
    ImpossibleTransition,
    apply_event,
    describe,
    next_state,
    summarize,
)
from e2e_recall.report import ATTESTED_BY, GUARANTEES, TRANSITIONS, format_time

S, E = DeviceState, Event
EXPOSED = "possibly already read, copied or screenshotted"

# The table as the design describes it, written out independently of report.py.
EXPECTED = {
    S.QUEUED: {
        E.FETCHED: S.SEALED,
        E.KEY_RELEASED: S.OPENED,
        E.RECALLED: S.NEVER_DELIVERED,
        E.EXPIRED: S.EXPIRED,
        E.TIMER_EXPIRED: S.EXPIRED,
    },
    S.SEALED: {
        E.FETCHED: S.SEALED,
        E.KEY_RELEASED: S.OPENED,
        E.RECALLED: S.DELIVERED_SEALED,
        E.EXPIRED: S.EXPIRED,
        E.TIMER_EXPIRED: S.EXPIRED,
    },
    S.OPENED: {
        E.FETCHED: S.OPENED,
        E.KEY_RELEASED: S.OPENED,
        E.RECALLED: S.PENDING,
        E.EXPIRED: S.OPENED,
        E.TIMER_EXPIRED: S.EXPIRED,
    },
    S.NEVER_DELIVERED: {
        E.RECALLED: S.NEVER_DELIVERED,
        E.DELETION_RECEIPT: S.NEVER_DELIVERED,
        E.EXPIRED: S.NEVER_DELIVERED,
        E.TIMER_EXPIRED: S.NEVER_DELIVERED,
    },
    S.DELIVERED_SEALED: {
        E.FETCHED: S.DELIVERED_SEALED,
        E.RECALLED: S.DELIVERED_SEALED,
        E.DELETION_RECEIPT: S.DELETED,
        E.EXPIRED: S.DELIVERED_SEALED,
        E.TIMER_EXPIRED: S.DELIVERED_SEALED,
    },
    S.PENDING: {
        E.FETCHED: S.PENDING,
        E.RECALLED: S.PENDING,
        E.DELETION_RECEIPT: S.DELETED,
        E.EXPIRED: S.PENDING,
        E.TIMER_EXPIRED: S.PENDING,
    },
    S.DELETED: {
        E.FETCHED: S.DELETED,
        E.RECALLED: S.DELETED,
        E.DELETION_RECEIPT: S.DELETED,
        E.EXPIRED: S.DELETED,
        E.TIMER_EXPIRED: S.DELETED,
    },
    S.EXPIRED: {
        E.RECALLED: S.EXPIRED,
        E.DELETION_RECEIPT: S.DELETED,
        E.EXPIRED: S.EXPIRED,
        E.TIMER_EXPIRED: S.EXPIRED,
    },
}
POSSIBLE = [(s, e, t) for s, row in EXPECTED.items() for e, t in row.items()]
IMPOSSIBLE = [(s, e) for s, e in itertools.product(S, E) if e not in EXPECTED[s]]

USER, DEVICE = b"u" * 32, b"d" * 16
T0 = 1_790_000_000_000


def report(state: DeviceState = S.QUEUED, **times: int | None) -> DeviceReport:
    return DeviceReport(user=USER, device_id=DEVICE, state=state, **times)


def test_table_is_exactly_the_designed_one() -> None:
    assert TRANSITIONS == EXPECTED
    assert set(TRANSITIONS) == set(DeviceState)


@pytest.mark.parametrize(("state", "event", "target"), POSSIBLE)
def test_every_transition(state: DeviceState, event: Event, target: DeviceState) -> None:
    assert next_state(state, event) is target
    assert apply_event(report(state), event, T0).state is target


@pytest.mark.parametrize(("state", "event"), IMPOSSIBLE)
def test_impossible_pairs_are_refused(state: DeviceState, event: Event) -> None:
    with pytest.raises(ImpossibleTransition) as info:
        next_state(state, event)
    assert info.value.reason == "impossible_transition"
    with pytest.raises(ImpossibleTransition):
        apply_event(report(state), event, T0)


def test_some_pairs_are_impossible() -> None:
    # Spot checks of the design: nothing is fetched or opened after a purge.
    assert (S.NEVER_DELIVERED, E.FETCHED) in IMPOSSIBLE
    assert (S.NEVER_DELIVERED, E.KEY_RELEASED) in IMPOSSIBLE
    assert (S.DELIVERED_SEALED, E.KEY_RELEASED) in IMPOSSIBLE
    assert (S.EXPIRED, E.KEY_RELEASED) in IMPOSSIBLE
    assert (S.QUEUED, E.DELETION_RECEIPT) in IMPOSSIBLE
    assert len(POSSIBLE) + len(IMPOSSIBLE) == len(S) * len(E)


def test_opened_never_goes_back_to_unread() -> None:
    for state in (S.OPENED, S.PENDING, S.DELETED):
        for target in EXPECTED[state].values():
            assert target not in {S.QUEUED, S.SEALED, S.NEVER_DELIVERED, S.DELIVERED_SEALED}


def test_only_the_timer_expires_an_opened_copy() -> None:
    # Retention destroys only what nobody opened; the sender's timer ends opened copies too.
    assert next_state(S.OPENED, E.EXPIRED) is S.OPENED
    assert next_state(S.OPENED, E.TIMER_EXPIRED) is S.EXPIRED


def test_expired_after_opening_says_it_was_possibly_read() -> None:
    line = apply_event(report(S.OPENED, key_released_at=T0), E.TIMER_EXPIRED, T0 + 5)
    assert line.expired_at == T0 + 5
    text = describe(line, fmt)
    assert EXPOSED in text
    assert f"destroyed it at <{T0 + 5}>" in text
    assert "told this device to delete it" in text


def test_expired_sealed_says_it_could_not_be_read() -> None:
    line = apply_event(report(S.SEALED, fetched_at=T0), E.TIMER_EXPIRED, T0 + 7)
    text = describe(line, fmt)
    assert EXPOSED not in text
    assert "could not have read it" in text
    assert f"<{T0 + 7}>" in text


def test_a_receipt_after_expiry_is_deleted() -> None:
    line = apply_event(report(S.OPENED, key_released_at=T0), E.TIMER_EXPIRED, T0 + 5)
    line = apply_event(line, E.DELETION_RECEIPT, T0 + 9)
    assert line.state is S.DELETED
    assert line.deleted_at == T0 + 9
    assert EXPOSED in describe(line, fmt)


# -- timestamps -----------------------------------------------------------------


def test_apply_event_records_first_times() -> None:
    r = report()
    r = apply_event(r, E.FETCHED, T0 + 1)
    r = apply_event(r, E.FETCHED, T0 + 2)
    assert (r.state, r.fetched_at) == (S.SEALED, T0 + 1)
    r = apply_event(r, E.KEY_RELEASED, T0 + 3)
    r = apply_event(r, E.KEY_RELEASED, T0 + 4)
    assert (r.state, r.key_released_at) == (S.OPENED, T0 + 3)
    assert r.was_opened
    r = apply_event(r, E.RECALLED, T0 + 5)
    r = apply_event(r, E.RECALLED, T0 + 6)
    assert (r.state, r.recalled_at) == (S.PENDING, T0 + 5)
    r = apply_event(r, E.DELETION_RECEIPT, T0 + 7)
    r = apply_event(r, E.DELETION_RECEIPT, T0 + 8)
    assert (r.state, r.deleted_at) == (S.DELETED, T0 + 7)
    assert (r.fetched_at, r.key_released_at, r.recalled_at) == (T0 + 1, T0 + 3, T0 + 5)


def test_receipt_for_a_never_delivered_device_records_no_deletion() -> None:
    r = apply_event(report(), E.RECALLED, T0)
    r = apply_event(r, E.DELETION_RECEIPT, T0 + 1)
    assert r.state is S.NEVER_DELIVERED
    assert r.deleted_at is None
    assert not r.was_opened


def test_apply_event_does_not_mutate() -> None:
    r = report()
    apply_event(r, E.FETCHED, T0)
    assert r.state is S.QUEUED
    assert r.fetched_at is None


# -- sentences and attestation ------------------------------------------------------


def fmt(ms: int) -> str:
    return f"<{ms}>"


def test_opened_sentence() -> None:
    text = describe(report(S.OPENED, key_released_at=T0), fmt)
    assert EXPOSED in text
    assert f"<{T0}>" in text
    assert text.endswith("(Attested by the relay.)")


def test_pending_sentence() -> None:
    text = describe(report(S.PENDING, key_released_at=T0, recalled_at=T0 + 1), fmt)
    assert EXPOSED in text
    assert f"<{T0}>" in text
    assert "reconnects" in text
    assert text.endswith("(Attested by the relay.)")


def test_deleted_after_opening_sentence() -> None:
    r = report(S.DELETED, key_released_at=T0, deleted_at=T0 + 9)
    text = describe(r, fmt)
    assert EXPOSED in text
    assert f"<{T0}>" in text
    assert f"<{T0 + 9}>" in text
    assert "cooperative" in text
    assert "device's signed receipt" in text


def test_deleted_without_opening_makes_no_exposure_claim() -> None:
    text = describe(report(S.DELETED, deleted_at=T0 + 9), fmt)
    assert EXPOSED not in text
    assert "device's signed receipt" in text


@pytest.mark.parametrize(
    "state", [S.QUEUED, S.SEALED, S.NEVER_DELIVERED, S.DELIVERED_SEALED, S.EXPIRED]
)
def test_unopened_states_make_no_exposure_claim(state: DeviceState) -> None:
    text = describe(report(state, fetched_at=T0), fmt)
    assert EXPOSED not in text
    assert text.endswith("(Attested by the relay.)")


def test_every_state_has_its_own_sentence() -> None:
    sentences = {describe(report(state, key_released_at=T0, deleted_at=T0), fmt) for state in S}
    assert len(sentences) == len(S)
    assert all("{" not in s for s in sentences)


def test_missing_times_read_as_unknown() -> None:
    assert "an unknown time" in describe(report(S.OPENED), fmt)
    assert "an unknown time" in describe(report(S.DELETED), fmt)


def test_default_time_format() -> None:
    assert format_time(0) == "1970-01-01 00:00:00 UTC"
    assert format_time(1_790_000_000_999) == "2026-09-21 14:13:20 UTC"
    assert format_time(1_790_000_000_999) in describe(
        report(S.OPENED, key_released_at=1_790_000_000_999)
    )


def test_deleted_is_attested_by_the_device_others_by_the_relay() -> None:
    for state in S:
        attesters = report(state).attested_by
        assert attesters == ATTESTED_BY[state]
        if state is S.DELETED:
            assert attesters[0] is Attester.DEVICE
        else:
            assert Attester.DEVICE not in attesters
            assert attesters[0] is Attester.RELAY


def test_guarantees_never_overclaim() -> None:
    assert EXPOSED in GUARANTEES[S.OPENED]
    assert EXPOSED in GUARANTEES[S.PENDING]
    assert "cryptographically unreadable" in GUARANTEES[S.DELIVERED_SEALED]
    assert "says nothing about copies" in GUARANTEES[S.DELETED]
    assert set(GUARANTEES) == set(S)


def test_describe_never_raises_for_any_wire_time() -> None:
    """Times come from receipts (any uint up to 2**63-1); describing one must not crash."""
    for ms in (253_402_300_800_000, 2**63 - 1):
        text = describe(report(S.OPENED, key_released_at=ms))
        assert EXPOSED in text


# -- summaries ----------------------------------------------------------------


def test_summarize_counts_in_table_order() -> None:
    reports = [
        report(S.DELETED),
        report(S.OPENED),
        report(S.DELETED),
        report(S.QUEUED),
        report(S.PENDING),
    ]
    summary = summarize(reports)
    assert summary == {S.QUEUED: 1, S.OPENED: 1, S.PENDING: 1, S.DELETED: 2}
    assert list(summary) == [S.QUEUED, S.OPENED, S.PENDING, S.DELETED]
    assert summarize([]) == {}
    assert summarize(iter(reports)) == summary


# -- walks --------------------------------------------------------------------


@st.composite
def walks(draw: st.DrawFn) -> list[Event]:
    state, events = S.QUEUED, []
    for _ in range(draw(st.integers(0, 12))):
        event = draw(st.sampled_from(sorted(EXPECTED[state])))
        events.append(event)
        state = EXPECTED[state][event]
    return events


@settings(max_examples=200, deadline=None, database=None)
@given(walks())
def test_once_opened_every_later_sentence_says_so(events: list[Event]) -> None:
    r, opened = report(), False
    for i, event in enumerate(events):
        r = apply_event(r, event, T0 + i)
        opened = opened or event is E.KEY_RELEASED
        text = describe(r, fmt)
        assert (EXPOSED in text) == opened, (events[: i + 1], text)
        assert r.was_opened == opened
