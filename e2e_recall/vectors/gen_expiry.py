"""Vectors for disappearing messages (``expiry.json``).

Three groups: envelopes whose signed header carries a timer (valid and every
malformed timer), the moment a copy expires from the header and a device's
facts (``CopyExpiry``), and a recall of a message its timer already destroyed
(``RecallAcceptance``, the same runner as ``recall_acceptance.json``).
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..domains import SIG_REVOCATION
from ..envelope import Header
from ..expiry import MAX_EXPIRE_MS, MIN_EXPIRE_MS, ExpireFrom, copy_expires_at, is_expired
from ..recall_rules import RecallPolicy
from .fixtures import DAY, HOUR, MINUTE, T0, Context
from .format import VectorFile
from .gen_acceptance import _policy_json
from .gen_messages import Envelope, expected_fields, header_dict
from .gen_revocation import revocation_body
from .signatures import SignedCase

__all__ = ["expiry_vectors"]

_SENT = str(ExpireFrom.SENT)
_OPENED = str(ExpireFrom.OPENED)


def expiry_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Disappearing messages: the header's timer and when a copy expires",
        [
            "EnvelopeOpen: as in envelope.json; the header carries expire_after (ms) and",
            "expire_from ('sent' or 'opened'), both nil or both set, 1000 <= expire_after <=",
            "31536000000. CopyExpiry: decode header, then the moment this copy expires",
            "(expiresAt, null when unknown) and whether it has at now. RecallAcceptance: as",
            "in recall_acceptance.json, with facts.expiredAt set: accepted, expired, a no-op.",
        ],
    )
    _envelopes(ctx, vf)
    _copies(ctx, vf)
    _recalls(ctx, vf)
    return vf


def _envelopes(ctx: Context, vf: VectorFile) -> None:
    group = vf.group("EnvelopeOpen")
    alice = ctx.alice
    valid = [
        ("timer of 30 s from sending", {"expire_after": 30_000, "expire_from": _SENT}),
        ("timer of a week from opening", {"expire_after": 7 * DAY, "expire_from": _OPENED}),
        ("shortest timer, 1000 ms", {"expire_after": MIN_EXPIRE_MS, "expire_from": _SENT}),
        ("longest timer, one year", {"expire_after": MAX_EXPIRE_MS, "expire_from": _OPENED}),
        (
            "replacement carrying the original's timer",
            {
                "kind": "replacement",
                "replaces": ctx.new_id(),
                "expire_after": HOUR,
                "expire_from": _SENT,
            },
        ),
    ]
    for comment, over in valid:
        header = header_dict(ctx, alice, **over)
        env = Envelope(ctx, alice, wire.encode(header), "gone soon")
        flags = ["Valid", "Deterministic", "Timer"]
        group.add(
            comment,
            "success",
            flags,
            **env.fields(seed=True),
            **expected_fields(header, "gone soon"),
        )
    invalid: list[tuple[str, list[str], dict[str, Any], str]] = [
        ("expire_after without expire_from", ["Timer"], {"expire_after": 30_000}, "bad_expiry"),
        ("expire_from without expire_after", ["Timer"], {"expire_from": _SENT}, "bad_expiry"),
        (
            "timer of 999 ms",
            ["TimerEdge"],
            {"expire_after": MIN_EXPIRE_MS - 1, "expire_from": _SENT},
            "bad_expiry",
        ),
        ("timer of 0 ms", ["TimerEdge"], {"expire_after": 0, "expire_from": _SENT}, "bad_expiry"),
        (
            "timer of one year and 1 ms",
            ["TimerEdge"],
            {"expire_after": MAX_EXPIRE_MS + 1, "expire_from": _OPENED},
            "bad_expiry",
        ),
        (
            "timer counted from 'read'",
            ["Timer", "UnknownValue"],
            {"expire_after": 30_000, "expire_from": "read"},
            "bad_expiry",
        ),
        (
            "expire_after as a string",
            ["Timer", "TypeConfusion"],
            {"expire_after": "30000", "expire_from": _SENT},
            "wrong_type",
        ),
        (
            "expire_from as bytes",
            ["Timer", "TypeConfusion"],
            {"expire_after": 30_000, "expire_from": b"sent"},
            "wrong_type",
        ),
    ]
    for comment, flags, over, reason in invalid:
        signed = wire.encode(header_dict(ctx, alice, **over))
        env = Envelope(ctx, alice, signed)
        group.add(comment, "decode_failure", flags, reason=reason, **env.fields())
    without = header_dict(ctx, alice, expire_after=30_000, expire_from=_SENT)
    del without["expire_from"]
    env = Envelope(ctx, alice, wire.encode(without))
    group.add(
        "header without the expire_from key", "decode_failure", ["MissingField"], **env.fields()
    )
    legacy = header_dict(ctx, alice)
    del legacy["expire_after"], legacy["expire_from"]
    env = Envelope(ctx, alice, wire.encode(legacy), "signed before timers")
    group.add(
        "a header from before timers: neither key, read as no timer",
        "success",
        ["Valid", "Legacy"],
        **env.fields(),  # no seed: a sender today would write both keys, so not these bytes
        **expected_fields(
            {**legacy, "expire_after": None, "expire_from": None}, "signed before timers"
        ),
    )


def _copies(ctx: Context, vf: VectorFile) -> None:
    group = vf.group("CopyExpiry", note="the moment one copy expires; the core reads no clock")

    def header(after: int | None, start: str | None) -> Header:
        return Header.decode(
            wire.encode(header_dict(ctx, ctx.alice, expire_after=after, expire_from=start))
        )

    def case(
        comment: str, h: Header, opened: int | None, now: int, sender_copy: bool = False
    ) -> None:
        group.add(
            comment,
            "success",
            ["Valid", "Timer"],
            header=h.encode().hex(),
            openedAt=opened,
            senderCopy=sender_copy,
            now=now,
            expiresAt=copy_expires_at(h, opened, sender_copy=sender_copy),
            expired=is_expired(h, opened, now, sender_copy=sender_copy),
        )

    none = header(None, None)
    sent = header(MINUTE, _SENT)
    opened = header(MINUTE, _OPENED)
    case("no timer: never expires", none, T0 + 1, T0 + 400 * DAY)
    case("from sent, 1 ms before its instant", sent, None, T0 + MINUTE - 1)
    case("from sent, at its instant (expired)", sent, None, T0 + MINUTE)
    case("from sent, opened late: still counts from sending", sent, T0 + HOUR, T0 + HOUR)
    case("from opened, never opened: no expiry yet", opened, None, T0 + 400 * DAY)
    case("from opened, 1 ms before its instant", opened, T0 + HOUR, T0 + HOUR + MINUTE - 1)
    case("from opened, at its instant (expired)", opened, T0 + HOUR, T0 + HOUR + MINUTE)
    case("from opened, the sender's own copy counts from sending", opened, None, T0 + MINUTE, True)
    bad = header_dict(ctx, ctx.alice, expire_after=MINUTE, expire_from="never")
    group.add(
        "header with a malformed timer",
        "decode_failure",
        ["Timer", "UnknownValue"],
        reason="bad_expiry",
        header=wire.encode(bad).hex(),
        openedAt=None,
        senderCopy=False,
        now=T0,
    )


def _recalls(ctx: Context, vf: VectorFile) -> None:
    group = vf.group("RecallAcceptance", note="a recall of a message its timer destroyed")
    alice, bob = ctx.alice, ctx.bob
    header = Header(
        message_id=ctx.new_id(),
        conversation_id=ctx.conversation,
        sender=ctx.uid(alice),
        sender_device=ctx.alice_device.device_id,
        sent_at=T0,
        recall_sealed_until=T0 + 2 * DAY,
        recall_opened_until=T0 + 30 * MINUTE,
        expire_after=MINUTE,
        expire_from=ExpireFrom.SENT,
    )
    policy = RecallPolicy(max_sealed_window_ms=DAY, max_opened_window_ms=HOUR)

    def revocation(signer: Any = alice, **over: Any) -> bytes:
        body = revocation_body(ctx, signer, message_id=header.message_id, **over)
        return SignedCase(signer, SIG_REVOCATION, wire.encode(body)).wire

    def case(
        comment: str,
        expect: str,
        flags: list[str],
        now: int,
        *,
        rev: bytes | None = None,
        signer: Any = alice,
        revoked: bool = False,
        reason: str | None = None,
        decision: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "header": header.encode().hex(),
            "revocation": (rev or revocation()).hex(),
            "signerPublicKey": signer.public_key.raw.hex(),
            "facts": {
                "firstOpenedAt": T0 + 1,
                "alreadyRevoked": revoked,
                "recallsToday": 0,
                "expiredAt": T0 + MINUTE,
            },
            "policy": _policy_json(policy),
            "now": now,
        }
        if decision is not None:
            values["decision"] = decision
        else:
            values["reason"] = reason
        group.add(comment, expect, flags, **values)

    no_op = {"alreadyRecalled": False, "deadline": None, "expired": True}
    case(
        "expired, recalled minutes later",
        "success",
        ["TimerExpired"],
        T0 + 6 * MINUTE,
        decision=no_op,
    )
    case(
        "expired, recalled after every window closed",
        "success",
        ["TimerExpired", "WindowClosed"],
        T0 + 3 * DAY,
        rev=revocation(issued_at=T0 + 3 * DAY),
        decision=no_op,
    )
    case(
        "expired after a recall: the recall stands",
        "success",
        ["TimerExpired", "Idempotent"],
        T0 + 2 * MINUTE,
        revoked=True,
        decision={"alreadyRecalled": True, "deadline": None, "expired": False},
    )
    case(
        "expired, a revocation by someone else",
        "wrong_signer",
        ["TimerExpired", "WrongSigner"],
        T0 + 2 * MINUTE,
        rev=revocation(signer=bob),
        signer=bob,
        reason="not_sender",
    )
