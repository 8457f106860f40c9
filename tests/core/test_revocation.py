"""Revocations: signed by the sender, checked by every recipient against the message."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from e2e_recall import check_revocation_matches, sign_revocation, verify_revocation, wire
from e2e_recall.domains import HASH_REVOCATION, MAX_CLOCK_SKEW_MS, SIG_ENVELOPE, SIG_REVOCATION
from e2e_recall.errors import (
    DecodeError,
    RecallWindowClosed,
    ReplayedRevocation,
    SignatureInvalid,
    UnsupportedVersion,
    UsageError,
    WrongContext,
    WrongSigner,
)
from e2e_recall.signed import seal_signed


def revocation_body(world: Any, **changes: Any) -> dict[str, Any]:
    body = {
        "version": 1,
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "sender": world.alice_id,
        "issued_at": world.now + world.minute,
        "replacement_id": None,
    }
    body.update(changes)
    return body


def test_round_trip(world: Any) -> None:
    revocation = world.revocation()
    checked = verify_revocation(revocation.signed, world.alice.public_key)
    assert checked == revocation
    assert checked.message_id == world.message_id
    assert checked.conversation_id == world.conversation
    assert checked.sender == world.alice_id
    assert checked.issued_at == world.now + world.minute
    assert checked.replacement_id is None


def test_round_trip_with_replacement(world: Any) -> None:
    revocation = world.revocation(replacement_id=world.other_message_id)
    checked = verify_revocation(revocation.signed, world.alice.public_key)
    assert checked.replacement_id == world.other_message_id
    assert checked == revocation


def test_documented_body_layout(world: Any) -> None:
    assert (
        seal_signed(revocation_body(world), SIG_REVOCATION, world.alice)
        == world.revocation().signed
    )


def test_digest(world: Any) -> None:
    revocation = world.revocation()
    expected = hashlib.sha256(HASH_REVOCATION + revocation.signed).digest()
    assert revocation.digest == expected
    assert world.revocation(issued_at=world.now + 2).digest != expected


def test_signing_is_deterministic(world: Any) -> None:
    assert world.revocation().signed == world.revocation().signed


def test_wrong_key_is_a_bad_signature(world: Any) -> None:
    for key in (world.bob.public_key, world.mallory.public_key):
        with pytest.raises(SignatureInvalid):
            verify_revocation(world.revocation().signed, key)


def test_revocation_naming_another_sender(world: Any) -> None:
    data = seal_signed(revocation_body(world), SIG_REVOCATION, world.mallory)  # names Alice
    with pytest.raises(WrongSigner) as info:
        verify_revocation(data, world.mallory.public_key)
    assert info.value.reason == "not_sender"


def test_other_purposes_cannot_pass_as_a_revocation(world: Any) -> None:
    data = seal_signed(revocation_body(world), SIG_ENVELOPE, world.alice)
    with pytest.raises(SignatureInvalid):
        verify_revocation(data, world.alice.public_key)
    # Bob's device certificate, signed by Bob, is not a revocation by Bob either.
    with pytest.raises(SignatureInvalid):
        verify_revocation(world.bob_cert.signed, world.bob.public_key)


def test_replacement_cannot_be_the_message_itself(world: Any) -> None:
    with pytest.raises(UsageError) as info:
        world.revocation(replacement_id=world.message_id)
    assert info.value.reason == "bad_replacement"
    data = seal_signed(
        revocation_body(world, replacement_id=world.message_id), SIG_REVOCATION, world.alice
    )
    with pytest.raises(DecodeError) as decode_info:
        verify_revocation(data, world.alice.public_key)
    assert decode_info.value.reason == "bad_replacement"


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": bytes(15)},
        {"conversation_id": bytes(17)},
        {"issued_at": -1},
        {"issued_at": 2**63},
        {"replacement_id": bytes(3)},
    ],
)
def test_sign_refuses_malformed_arguments(world: Any, changes: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        world.revocation(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": bytes(15)},
        {"sender": bytes(16)},
        {"issued_at": "soon"},
        {"replacement_id": "x" * 16},
        {"extra": None},
    ],
)
def test_verify_refuses_malformed_bodies(world: Any, changes: dict[str, Any]) -> None:
    data = seal_signed(revocation_body(world, **changes), SIG_REVOCATION, world.alice)
    with pytest.raises(DecodeError):
        verify_revocation(data, world.alice.public_key)


def test_version(world: Any) -> None:
    data = seal_signed(revocation_body(world, version=2), SIG_REVOCATION, world.alice)
    with pytest.raises(UnsupportedVersion):
        verify_revocation(data, world.alice.public_key)


def test_body_is_not_trusted_before_the_signature(world: Any) -> None:
    outer = wire.decode(world.revocation().signed)
    body = wire.decode(outer["body"])
    body["issued_at"] += 1
    forged = wire.encode({"body": wire.encode(body), "signature": outer["signature"]})
    with pytest.raises(SignatureInvalid):
        verify_revocation(forged, world.alice.public_key)


# -- matching a revocation to its message ----------------------------------------


def test_matching_revocation(world: Any) -> None:
    check_revocation_matches(world.revocation(), world.header())
    check_revocation_matches(world.revocation(issued_at=world.now), world.header())


def test_not_the_sender(world: Any) -> None:
    revocation = sign_revocation(
        world.mallory,
        message_id=world.message_id,
        conversation_id=world.conversation,
        issued_at=world.now + 1,
    )
    with pytest.raises(WrongSigner) as info:
        check_revocation_matches(revocation, world.header())
    assert info.value.reason == "not_sender"


def test_other_message(world: Any) -> None:
    with pytest.raises(WrongContext) as info:
        check_revocation_matches(
            world.revocation(message_id=world.other_message_id), world.header()
        )
    assert info.value.reason == "other_message"


def test_other_conversation(world: Any) -> None:
    revocation = world.revocation(conversation_id=world.other_conversation)
    with pytest.raises(WrongContext) as info:
        check_revocation_matches(revocation, world.header())
    assert info.value.reason == "other_conversation"


def test_revocation_predating_the_message_is_replayed(world: Any) -> None:
    revocation = world.revocation(issued_at=world.now - 1)
    with pytest.raises(ReplayedRevocation) as info:
        check_revocation_matches(revocation, world.header())
    assert info.value.reason == "predates_message"


def test_revocation_of_an_old_message_id_reused_later(world: Any) -> None:
    """A revocation captured for one message cannot recall a later message with the same id."""
    old = world.revocation(issued_at=world.now + 5)
    later = world.header(
        sent_at=world.now + 10,
        recall_opened_until=world.now + 20,
        recall_sealed_until=world.now + 30,
    )
    with pytest.raises(ReplayedRevocation):
        check_revocation_matches(old, later)


def test_revocation_issued_after_the_senders_own_deadline(world: Any) -> None:
    """A recipient holds the sender to the signed outer deadline (plus clock skew)."""
    header = world.header()
    last = header.recall_sealed_until + MAX_CLOCK_SKEW_MS
    check_revocation_matches(world.revocation(issued_at=last), header)
    with pytest.raises(RecallWindowClosed) as info:
        check_revocation_matches(world.revocation(issued_at=last + 1), header)
    assert info.value.reason == "issued_after_window"
    assert info.value.data == {"closed_at": header.recall_sealed_until}
