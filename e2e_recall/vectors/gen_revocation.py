"""Vectors for revocations: signatures, fields and every truncation."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..domains import SIG_DELETION_RECEIPT, SIG_DEVICE_CERTIFICATE, SIG_ENVELOPE, SIG_REVOCATION
from ..signing import SigningKey
from .fixtures import MINUTE, T0, Context
from .format import VectorFile
from .signatures import SignedCase, add_signature_attacks
from .truncation import add_truncations

__all__ = ["revocation_body", "revocation_vectors"]


def revocation_body(ctx: Context, sender: SigningKey, **over: Any) -> dict[str, Any]:
    body = {
        "version": 1,
        "message_id": over.pop("message_id", None) or ctx.new_id(),
        "conversation_id": ctx.conversation,
        "sender": ctx.uid(sender),
        "issued_at": T0 + 5 * MINUTE,
        "replacement_id": None,
    }
    body.update(over)
    return body


def _expected(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "expected": {
            "messageId": body["message_id"].hex(),
            "conversationId": body["conversation_id"].hex(),
            "sender": body["sender"].hex(),
            "issuedAt": body["issued_at"],
            "replacementId": None
            if body["replacement_id"] is None
            else body["replacement_id"].hex(),
        }
    }


def revocation_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Revocation: Ed25519 over the revocation label",
        [
            "Verify the signed container with signerPublicKey under the revocation label,",
            "decode the body, and check that its sender is the signer's fingerprint.",
        ],
    )
    group = vf.group("RevocationVerify")
    alice = ctx.alice
    plain = revocation_body(ctx, alice)
    with_replacement = revocation_body(ctx, alice, replacement_id=ctx.new_id())
    for comment, body in (("recall", plain), ("recall and replace", with_replacement)):
        case = SignedCase(alice, SIG_REVOCATION, wire.encode(body))
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            **case.fields(seed=True),
            **_expected(body),
        )

    base = SignedCase(alice, SIG_REVOCATION, wire.encode(plain))
    add_signature_attacks(
        ctx, group, base, [SIG_ENVELOPE, SIG_DELETION_RECEIPT, SIG_DEVICE_CERTIFICATE], dict
    )

    def signed(
        comment: str,
        expect: str,
        flags: list[str],
        signer: SigningKey,
        body: bytes,
        verify_with: SigningKey | None = None,
    ) -> None:
        case = SignedCase(signer, SIG_REVOCATION, body)
        key = None if verify_with is None else verify_with.public_key.raw
        group.add(comment, expect, flags, **case.fields(key))

    signed(
        "signed by the recipient, naming the sender",
        "bad_signature",
        ["WrongSigner"],
        ctx.bob,
        wire.encode(plain),
        verify_with=alice,
    )
    signed(
        "signed by the relay key, naming the sender",
        "bad_signature",
        ["WrongSigner"],
        ctx.relay,
        wire.encode(plain),
        verify_with=alice,
    )
    signed(
        "signed by the recipient, verified with the recipient's key",
        "wrong_signer",
        ["WrongSigner"],
        ctx.bob,
        wire.encode(plain),
        verify_with=ctx.bob,
    )
    same = ctx.new_id()
    signed(
        "replacement id equals message id",
        "decode_failure",
        ["HeaderRule"],
        alice,
        wire.encode(revocation_body(ctx, alice, message_id=same, replacement_id=same)),
    )
    signed(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        alice,
        wire.encode(revocation_body(ctx, alice, version=2)),
    )
    no_version = revocation_body(ctx, alice)
    del no_version["version"]
    signed("no version", "decode_failure", ["MissingField"], alice, wire.encode(no_version))
    signed(
        "unknown field",
        "decode_failure",
        ["UnknownField"],
        alice,
        wire.encode(revocation_body(ctx, alice, reason="oops")),
    )
    no_issued = revocation_body(ctx, alice)
    del no_issued["issued_at"]
    signed("no issued_at", "decode_failure", ["MissingField"], alice, wire.encode(no_issued))
    signed(
        "message id as a string",
        "decode_failure",
        ["TypeConfusion"],
        alice,
        wire.encode(revocation_body(ctx, alice, message_id="0123456789abcdef")),
    )
    signed(
        "issued_at as a string",
        "decode_failure",
        ["TypeConfusion"],
        alice,
        wire.encode(revocation_body(ctx, alice, issued_at="yesterday")),
    )
    signed(
        "issued_at negative",
        "decode_failure",
        ["TypeConfusion"],
        alice,
        wire.encode(revocation_body(ctx, alice, issued_at=-1)),
    )
    signed(
        "conversation id of 17 bytes",
        "decode_failure",
        ["BadLength"],
        alice,
        wire.encode(revocation_body(ctx, alice, conversation_id=bytes(17))),
    )
    body_bytes = wire.encode(plain)
    signed(
        "body with a trailing byte",
        "decode_failure",
        ["TrailingBytes"],
        alice,
        body_bytes + b"\xc0",
    )
    signed(
        "body with a duplicated key",
        "decode_failure",
        ["DuplicateKey"],
        alice,
        _duplicate_first_key(body_bytes),
    )
    signed("body is an array", "decode_failure", ["TypeConfusion"], alice, wire.encode([1, 2]))
    signed(
        "version as uint8 although it fits a fixint",
        "decode_failure",
        ["NonCanonical"],
        alice,
        body_bytes.replace(b"\xa7version\x01", b"\xa7version\xcc\x01"),
    )

    truncation = vf.group(
        "RevocationTruncated",
        note="every proper prefix of one valid revocation",
        signerPublicKey=alice.public_key.raw.hex(),
    )
    whole = base.wire
    add_truncations(truncation, whole, "signed", what="revocation")
    truncation.add(
        "one trailing byte", "decode_failure", ["TrailingBytes"], signed=(whole + b"\x00").hex()
    )
    return vf


def _duplicate_first_key(body: bytes) -> bytes:
    """Repeat the map's first entry (``conversation_id``, a 16-byte bin) once more."""
    count = body[0] & 0x0F
    key = b"\xafconversation_id"
    start = body.index(key)
    entry = body[start : start + len(key) + 2 + 16]
    return bytes([0x80 | (count + 1)]) + entry + body[1:]
