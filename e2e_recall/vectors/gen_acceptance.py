"""Vectors for the rules that accept or refuse a recall, at the relay and at a recipient."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..domains import SIG_REVOCATION
from ..envelope import Header
from ..recall_rules import RecallPolicy
from ..signing import SigningKey
from .fixtures import DAY, HOUR, MINUTE, T0, Context
from .format import VectorFile
from .gen_revocation import revocation_body
from .signatures import SignedCase

__all__ = ["acceptance_vectors"]


def acceptance_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Recall acceptance rules",
        [
            "Decode header (the message's signed header bytes) and verify revocation with",
            "signerPublicKey, then apply the acceptance rules of docs/protocol.md with the",
            "given facts, policy (null = no cap) and now (ms). reason names the refusal.",
        ],
    )
    group = vf.group("RecallAcceptance")
    alice, bob = ctx.alice, ctx.bob
    header = Header(
        message_id=ctx.new_id(),
        conversation_id=ctx.conversation,
        sender=ctx.uid(alice),
        sender_device=ctx.alice_device.device_id,
        sent_at=T0,
        recall_sealed_until=T0 + 2 * DAY,
        recall_opened_until=T0 + 30 * MINUTE,
    )
    header_bytes = header.encode()
    # A later message of the same sender in the same conversation: what a
    # replayed revocation is presented for.
    later = Header(
        message_id=ctx.new_id(),
        conversation_id=ctx.conversation,
        sender=ctx.uid(alice),
        sender_device=ctx.alice_device.device_id,
        sent_at=T0 + 10 * MINUTE,
        recall_sealed_until=T0 + 2 * DAY,
        recall_opened_until=T0 + 40 * MINUTE,
    ).encode()
    default = RecallPolicy(
        max_sealed_window_ms=DAY, max_opened_window_ms=HOUR, max_recalls_per_conversation_per_day=10
    )

    def revocation(signer: SigningKey = alice, **over: Any) -> bytes:
        body = revocation_body(ctx, signer, message_id=header.message_id, **over)
        return SignedCase(signer, SIG_REVOCATION, wire.encode(body)).wire

    def case(
        comment: str,
        expect: str,
        flags: list[str],
        *,
        now: int,
        rev: bytes | None = None,
        signer: SigningKey = alice,
        opened: int | None = None,
        revoked: bool = False,
        today: int = 0,
        policy: RecallPolicy = default,
        reason: str | None = None,
        deadline: int | None = None,
        already: bool = False,
        message: bytes = header_bytes,
        expired_at: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "header": message.hex(),
            "revocation": (rev or revocation()).hex(),
            "signerPublicKey": signer.public_key.raw.hex(),
            "facts": {
                "firstOpenedAt": opened,
                "alreadyRevoked": revoked,
                "recallsToday": today,
                "expiredAt": expired_at,
            },
            "policy": _policy_json(policy),
            "now": now,
        }
        if expect == "success":
            values["decision"] = {
                "alreadyRecalled": already,
                "deadline": deadline,
                "expired": expired_at is not None and not revoked,
            }
        else:
            values["reason"] = reason
        group.add(comment, expect, flags, **values)

    sealed_deadline = T0 + DAY  # policy cap below the sender's two days
    opened_deadline = T0 + 30 * MINUTE  # sender's own choice below the policy's hour
    case(
        "sealed, an hour after sending",
        "success",
        ["Valid"],
        now=T0 + HOUR,
        deadline=sealed_deadline,
    )
    case(
        "sealed, at the deadline",
        "success",
        ["WindowEdge", "PolicyCap"],
        now=sealed_deadline,
        deadline=sealed_deadline,
    )
    case(
        "sealed, 1 ms after the deadline",
        "window_closed",
        ["WindowEdge", "PolicyCap"],
        now=sealed_deadline + 1,
        reason="window_closed",
    )
    case(
        "opened, inside the sender's window",
        "success",
        ["Valid"],
        now=T0 + 20 * MINUTE,
        opened=T0 + 10 * MINUTE,
        deadline=opened_deadline,
    )
    case(
        "opened, at the sender's deadline",
        "success",
        ["WindowEdge"],
        now=opened_deadline,
        opened=T0 + MINUTE,
        deadline=opened_deadline,
    )
    case(
        "opened, after the sender's window but inside the policy's",
        "window_closed",
        ["WindowEdge", "WindowClosed"],
        now=opened_deadline + 1,
        opened=T0 + MINUTE,
        reason="window_closed",
    )
    case(
        "opened, a day later",
        "window_closed",
        ["WindowClosed"],
        now=T0 + DAY - 1,
        opened=T0 + MINUTE,
        reason="window_closed",
    )
    short = RecallPolicy(
        max_sealed_window_ms=10 * MINUTE,
        max_opened_window_ms=MINUTE,
        max_recalls_per_conversation_per_day=None,
    )
    case(
        "opened, policy cap shorter than the sender's",
        "window_closed",
        ["PolicyCap"],
        now=T0 + 2 * MINUTE,
        opened=T0 + 30_000,
        policy=short,
        reason="window_closed",
    )
    case(
        "opened, inside the shorter policy cap",
        "success",
        ["PolicyCap"],
        now=T0 + MINUTE,
        opened=T0 + 30_000,
        policy=short,
        deadline=T0 + MINUTE,
    )
    uncapped = RecallPolicy(
        max_sealed_window_ms=None,
        max_opened_window_ms=None,
        max_recalls_per_conversation_per_day=None,
    )
    case(
        "no policy caps, sealed, just before the sender's deadline",
        "success",
        ["Valid"],
        now=T0 + 2 * DAY,
        policy=uncapped,
        deadline=T0 + 2 * DAY,
    )
    case(
        "no policy caps, sealed, after the sender's deadline",
        "window_closed",
        ["WindowClosed"],
        now=T0 + 2 * DAY + 1,
        policy=uncapped,
        reason="window_closed",
    )
    unread = RecallPolicy(
        max_sealed_window_ms=DAY, max_opened_window_ms=HOUR, only_while_unread=True
    )
    case(
        "only-while-unread relay, opened",
        "refused",
        ["OnlyWhileUnread"],
        now=T0 + MINUTE,
        opened=T0 + 30_000,
        policy=unread,
        reason="opened",
    )
    case(
        "only-while-unread relay, sealed",
        "success",
        ["OnlyWhileUnread"],
        now=T0 + MINUTE,
        policy=unread,
        deadline=sealed_deadline,
    )
    case(
        "rate limit reached",
        "rate_limited",
        ["RateLimited"],
        now=T0 + MINUTE,
        today=10,
        reason="rate_limited",
    )
    case(
        "one recall below the rate limit",
        "success",
        ["RateLimited"],
        now=T0 + MINUTE,
        today=9,
        deadline=sealed_deadline,
    )
    case(
        "no rate limit, many recalls today",
        "success",
        ["Valid"],
        now=T0 + MINUTE,
        today=1000,
        policy=uncapped,
        deadline=T0 + 2 * DAY,
    )
    accepted = revocation()  # the bytes accepted by the first test above
    case(
        "byte-identical replay of an accepted revocation, for its own message: a repeat",
        "success",
        ["Idempotent", "Replay"],
        now=T0 + 2 * HOUR,
        rev=accepted,
        revoked=True,
        already=True,
    )
    case(
        "byte-identical replay of an accepted revocation, for a later message",
        "wrong_context",
        ["Replay", "WrongContext"],
        now=T0 + 2 * HOUR,
        rev=accepted,
        message=later,
        reason="other_message",
    )
    case(
        "already recalled, window long closed",
        "success",
        ["Idempotent"],
        now=T0 + 30 * DAY,
        opened=T0 + MINUTE,
        revoked=True,
        already=True,
    )
    case(
        "already recalled, recalled again after the sender's own deadline",
        "success",
        ["Idempotent"],
        now=T0 + 30 * DAY,
        rev=revocation(issued_at=T0 + 30 * DAY),
        revoked=True,
        already=True,
    )
    case(
        "already recalled, rate limit reached",
        "success",
        ["Idempotent"],
        now=T0 + MINUTE,
        today=10,
        revoked=True,
        already=True,
    )
    case(
        "signed by the recipient",
        "wrong_signer",
        ["WrongSigner"],
        now=T0 + MINUTE,
        rev=revocation(bob),
        signer=bob,
        reason="not_sender",
    )
    case(
        "signed by the recipient, already recalled",
        "wrong_signer",
        ["WrongSigner", "Idempotent"],
        now=T0 + MINUTE,
        rev=revocation(bob),
        signer=bob,
        revoked=True,
        reason="not_sender",
    )
    case(
        "signed by another sender",
        "wrong_signer",
        ["WrongSigner"],
        now=T0 + MINUTE,
        rev=revocation(ctx.carol),
        signer=ctx.carol,
        reason="not_sender",
    )
    other = revocation_body(ctx, alice)
    case(
        "revocation for another message",
        "wrong_context",
        ["WrongContext"],
        now=T0 + MINUTE,
        rev=SignedCase(alice, SIG_REVOCATION, wire.encode(other)).wire,
        reason="other_message",
    )
    case(
        "revocation for another conversation",
        "wrong_context",
        ["WrongContext"],
        now=T0 + MINUTE,
        rev=revocation(conversation_id=ctx.other_conversation),
        reason="other_conversation",
    )
    case(
        "revocation issued before the message was sent",
        "replay",
        ["Replay"],
        now=T0 + MINUTE,
        rev=revocation(issued_at=T0 - 1),
        reason="predates_message",
    )
    case(
        "revocation issued at sent_at",
        "success",
        ["Replay", "WindowEdge"],
        now=T0 + MINUTE,
        rev=revocation(issued_at=T0),
        deadline=sealed_deadline,
    )
    skew = default.max_clock_skew_ms
    case(
        "revocation dated beyond the clock skew",
        "refused",
        ["FromFuture"],
        now=T0 + MINUTE,
        rev=revocation(issued_at=T0 + MINUTE + skew + 1),
        reason="from_future",
    )
    case(
        "revocation dated at the clock skew",
        "success",
        ["FromFuture"],
        now=T0 + MINUTE,
        rev=revocation(issued_at=T0 + MINUTE + skew),
        deadline=sealed_deadline,
    )
    case(
        "recall-and-replace, sealed",
        "success",
        ["Valid"],
        now=T0 + MINUTE,
        rev=revocation(replacement_id=ctx.new_id()),
        deadline=sealed_deadline,
    )

    match = vf.group("RevocationMatch", note="the recipient's check, without relay policy or state")

    def recipient(
        comment: str,
        expect: str,
        flags: list[str],
        rev: bytes,
        signer: SigningKey = alice,
        reason: str | None = None,
        message: bytes = header_bytes,
    ) -> None:
        values: dict[str, Any] = {
            "header": message.hex(),
            "revocation": rev.hex(),
            "signerPublicKey": signer.public_key.raw.hex(),
        }
        if reason is not None:
            values["reason"] = reason
        match.add(comment, expect, flags, **values)

    outer = header.recall_sealed_until + default.max_clock_skew_ms
    recipient("matches the message", "success", ["Valid"], revocation())
    recipient(
        "issued at the sender's deadline plus clock skew",
        "success",
        ["WindowEdge"],
        revocation(issued_at=outer),
    )
    recipient(
        "issued after the sender's own deadline",
        "window_closed",
        ["WindowClosed"],
        revocation(issued_at=outer + 1),
        reason="issued_after_window",
    )
    recipient(
        "for another message",
        "wrong_context",
        ["WrongContext"],
        SignedCase(alice, SIG_REVOCATION, wire.encode(other)).wire,
        reason="other_message",
    )
    recipient(
        "for another conversation",
        "wrong_context",
        ["WrongContext"],
        revocation(conversation_id=ctx.other_conversation),
        reason="other_conversation",
    )
    recipient(
        "signed by the recipient",
        "wrong_signer",
        ["WrongSigner"],
        revocation(bob),
        signer=bob,
        reason="not_sender",
    )
    recipient(
        "byte-identical replay of the revocation that matched, for a later message",
        "wrong_context",
        ["Replay", "WrongContext"],
        revocation(),
        message=later,
        reason="other_message",
    )
    recipient(
        "older than the message",
        "replay",
        ["Replay"],
        revocation(issued_at=T0 - 1),
        reason="predates_message",
    )
    return vf


def _policy_json(policy: RecallPolicy) -> dict[str, Any]:
    return {
        "maxSealedWindowMs": policy.max_sealed_window_ms,
        "maxOpenedWindowMs": policy.max_opened_window_ms,
        "onlyWhileUnread": policy.only_while_unread,
        "maxRecallsPerConversationPerDay": policy.max_recalls_per_conversation_per_day,
        "maxClockSkewMs": policy.max_clock_skew_ms,
    }
