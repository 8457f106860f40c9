"""The header's timer and the moment each copy expires (e2e_recall.expiry)."""

from __future__ import annotations

import pytest

from e2e_recall import wire
from e2e_recall.envelope import Header, MessageKind
from e2e_recall.errors import DecodeError, UsageError
from e2e_recall.expiry import (
    MAX_EXPIRE_MS,
    MIN_EXPIRE_MS,
    ExpireFrom,
    copy_expires_at,
    is_expired,
    message_expires_at,
)

T0 = 1_800_000_000_000


def header(after: int | None = 60_000, start: ExpireFrom | None = ExpireFrom.SENT) -> Header:
    return Header(
        message_id=b"m" * 16,
        conversation_id=b"c" * 16,
        sender=b"s" * 32,
        sender_device=b"d" * 16,
        sent_at=T0,
        recall_sealed_until=T0 + 10,
        recall_opened_until=T0 + 5,
        expire_after=after,
        expire_from=start,
    )


@pytest.mark.parametrize("start", list(ExpireFrom))
@pytest.mark.parametrize("after", [MIN_EXPIRE_MS, 30_000, MAX_EXPIRE_MS])
def test_a_timer_round_trips(after: int, start: ExpireFrom) -> None:
    h = header(after, start)
    assert Header.decode(h.encode()) == h


def test_no_timer_encodes_both_keys_as_nil() -> None:
    obj = wire.decode(header(None, None).encode())
    assert obj["expire_after"] is None
    assert obj["expire_from"] is None


@pytest.mark.parametrize(
    ("after", "start"),
    [
        (30_000, None),
        (None, "sent"),
        (MIN_EXPIRE_MS - 1, "sent"),
        (0, "opened"),
        (MAX_EXPIRE_MS + 1, "sent"),
        (30_000, "read"),
        (30_000, "SENT"),
    ],
)
def test_bad_timers_are_refused_as_bad_expiry(after: int | None, start: str | None) -> None:
    obj = wire.decode(header(None, None).encode())
    obj.update(expire_after=after, expire_from=start)
    with pytest.raises(DecodeError) as info:
        Header.decode(wire.encode(obj))
    assert info.value.reason == "bad_expiry"


def test_a_sender_cannot_encode_a_bad_timer() -> None:
    with pytest.raises(UsageError):
        header(500, ExpireFrom.SENT).encode()
    with pytest.raises(UsageError):
        header(5_000, None).encode()


def test_a_replacement_may_carry_a_timer() -> None:
    h = header()
    replacement = Header(
        message_id=h.message_id,
        conversation_id=h.conversation_id,
        sender=h.sender,
        sender_device=h.sender_device,
        sent_at=T0,
        recall_sealed_until=T0,
        recall_opened_until=T0,
        kind=MessageKind.REPLACEMENT,
        replaces=b"r" * 16,
        expire_after=1_000,
        expire_from=ExpireFrom.OPENED,
    )
    assert Header.decode(replacement.encode()).expire_after == 1_000


def test_from_sent_is_one_moment_for_every_copy() -> None:
    h = header(60_000, ExpireFrom.SENT)
    assert message_expires_at(h) == T0 + 60_000
    assert copy_expires_at(h, None) == T0 + 60_000
    assert copy_expires_at(h, T0 + 50_000) == T0 + 60_000
    assert not is_expired(h, None, T0 + 59_999)
    assert is_expired(h, None, T0 + 60_000)


def test_from_opened_counts_per_device_and_waits_while_sealed() -> None:
    h = header(60_000, ExpireFrom.OPENED)
    assert message_expires_at(h) is None
    assert copy_expires_at(h, None) is None
    assert not is_expired(h, None, T0 + 10 * MAX_EXPIRE_MS)
    assert copy_expires_at(h, T0 + 5_000) == T0 + 65_000
    assert is_expired(h, T0 + 5_000, T0 + 65_000)
    assert not is_expired(h, T0 + 5_000, T0 + 64_999)


def test_the_senders_own_copy_counts_from_sending() -> None:
    h = header(60_000, ExpireFrom.OPENED)
    assert copy_expires_at(h, None, sender_copy=True) == T0 + 60_000


def test_no_timer_never_expires() -> None:
    h = header(None, None)
    assert copy_expires_at(h, T0) is None
    assert not is_expired(h, T0, T0 + 10 * MAX_EXPIRE_MS, sender_copy=True)
