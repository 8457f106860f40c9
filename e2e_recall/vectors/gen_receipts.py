"""Vectors for deletion receipts (signed by a device) and purge receipts (by the relay)."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..device import DeviceSecrets, issue_device_certificate
from ..domains import (
    SIG_DELETION_RECEIPT,
    SIG_ENVELOPE,
    SIG_PURGE_RECEIPT,
    SIG_REVOCATION,
)
from ..revocation import Revocation, sign_revocation
from ..signing import SigningKey
from .fixtures import (
    MINUTE,
    T0,
    Context,
)
from .format import VectorFile
from .signatures import SignedCase, add_signature_attacks
from .truncation import add_truncations

__all__ = ["deletion_vectors", "purge_vectors"]


def _issue(ctx: Context, owner: SigningKey, device: DeviceSecrets) -> bytes:
    return issue_device_certificate(
        owner,
        device.device_id,
        device.signing_key.public_key,
        device.wrap_key.public_key,
        created_at=T0,
    ).signed


def _revocation(ctx: Context, message_id: bytes) -> Revocation:
    """A real revocation, so the receipts answer its digest (section 8 of the spec)."""
    return sign_revocation(
        ctx.alice,
        message_id=message_id,
        conversation_id=ctx.conversation,
        issued_at=T0 + 4 * MINUTE,
    )


def deletion_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Deletion receipt signed by a recipient device",
        [
            "Verify deviceCertificate with identityPublicKey at now, then the receipt with the",
            "certificate's signing key; the receipt must name that device and the given",
            "messageId, conversationId and (when given) the digest of the group's revocation.",
        ],
    )
    bob, phone = ctx.bob, ctx.bob_device
    cert = _issue(ctx, bob, phone)
    message_id = ctx.new_id()
    signed_revocation = _revocation(ctx, message_id)
    revocation = signed_revocation.digest
    group = vf.group(
        "DeletionReceiptVerify",
        identityPublicKey=bob.public_key.raw.hex(),
        deviceCertificate=cert.hex(),
        now=T0,
        messageId=message_id.hex(),
        conversationId=ctx.conversation.hex(),
        revocation=signed_revocation.signed.hex(),
        revocationDigest=revocation.hex(),
    )

    def body(**over: Any) -> dict[str, Any]:
        values = {
            "version": 1,
            "user": ctx.uid(bob),
            "device_id": phone.device_id,
            "message_id": message_id,
            "conversation_id": ctx.conversation,
            "cause": "recall",
            "revocation": revocation,
            "opened_at": T0 + 2 * MINUTE,
            "deleted_at": T0 + 10 * MINUTE,
        }
        values.update(over)
        return values

    def add(
        comment: str,
        expect: str,
        flags: list[str],
        values: dict[str, Any],
        signer: SigningKey = phone.signing_key,
        label: bytes = SIG_DELETION_RECEIPT,
    ) -> None:
        case = SignedCase(signer, label, wire.encode(values))
        expected = {}
        if expect == "success":
            expected = {
                "expected": {
                    "cause": values["cause"],
                    "openedAt": values["opened_at"],
                    "deletedAt": values["deleted_at"],
                    "revocation": None
                    if values["revocation"] is None
                    else values["revocation"].hex(),
                }
            }
        valid = expect == "success"
        if valid and "Deterministic" not in flags:
            flags = [*flags, "Deterministic"]
        fields = case.fields(phone.signing_key.public_key.raw, seed=valid)
        group.add(comment, expect, flags, **fields, **expected)

    add("deleted after a recall", "success", ["Valid", "Deterministic"], body())
    group_expiry = vf.group(
        "DeletionReceiptVerify",
        identityPublicKey=bob.public_key.raw.hex(),
        deviceCertificate=cert.hex(),
        now=T0,
        messageId=message_id.hex(),
        conversationId=ctx.conversation.hex(),
        revocationDigest=None,
    )
    expiry_body = body(cause="expiry", revocation=None, opened_at=None)
    expiry = SignedCase(phone.signing_key, SIG_DELETION_RECEIPT, wire.encode(expiry_body))
    group_expiry.add(
        "deleted on expiry, never opened",
        "success",
        ["Valid", "Deterministic"],
        **expiry.fields(seed=True),
        expected={
            "cause": "expiry",
            "openedAt": None,
            "deletedAt": T0 + 10 * MINUTE,
            "revocation": None,
        },
    )
    add(
        "signed by Bob's other device",
        "bad_signature",
        ["WrongKey"],
        body(),
        signer=ctx.bob_laptop.signing_key,
    )
    add("signed by Bob's identity key", "bad_signature", ["WrongKey"], body(), signer=bob)
    add("signed by the relay", "bad_signature", ["WrongKey"], body(), signer=ctx.relay)
    add(
        "names another device",
        "wrong_signer",
        ["WrongSigner"],
        body(device_id=ctx.bob_laptop.device_id),
    )
    add("names another user", "wrong_signer", ["WrongSigner"], body(user=ctx.uid(ctx.alice)))
    add("for another message", "wrong_context", ["WrongContext"], body(message_id=ctx.new_id()))
    add(
        "for another conversation",
        "wrong_context",
        ["WrongContext"],
        body(conversation_id=ctx.other_conversation),
    )
    add(
        "answers another revocation",
        "wrong_context",
        ["WrongContext"],
        body(revocation=ctx.rng(32)),
    )
    add(
        "recall cause without a revocation", "decode_failure", ["HeaderRule"], body(revocation=None)
    )
    add("unknown cause", "decode_failure", ["UnknownValue"], body(cause="boredom"))
    add("version 2", "unsupported_version", ["UnknownVersion"], body(version=2))
    add("unknown field", "decode_failure", ["UnknownField"], body(note="done"))
    add(
        "revocation digest of 31 bytes",
        "decode_failure",
        ["BadLength"],
        body(revocation=revocation[:31]),
    )
    base = SignedCase(phone.signing_key, SIG_DELETION_RECEIPT, wire.encode(body()))
    add_signature_attacks(
        ctx, group, base, [SIG_PURGE_RECEIPT, SIG_REVOCATION], dict, key_attacks=False
    )
    cut = vf.group(
        "DeletionReceiptTruncated",
        note="every proper prefix of one receipt",
        **group.fields,
        signerPublicKey=phone.signing_key.public_key.raw.hex(),
    )
    add_truncations(cut, base.wire, "signed", what="receipt")
    return vf


def purge_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Purge receipt signed by the relay",
        [
            "Verify the receipt with the relay's key (signerPublicKey); relay must be that key's",
            "fingerprint; devices sorted by (user, device_id), no repeats; it must answer",
            "the digest of the group's revocation.",
        ],
    )
    message_id = ctx.new_id()
    signed_revocation = _revocation(ctx, message_id)
    revocation = signed_revocation.digest
    group = vf.group(
        "PurgeReceiptVerify",
        messageId=message_id.hex(),
        conversationId=ctx.conversation.hex(),
        revocation=signed_revocation.signed.hex(),
        revocationDigest=revocation.hex(),
    )
    devices: list[dict[str, Any]] = sorted(
        [
            {
                "user": ctx.uid(ctx.bob),
                "device_id": ctx.bob_device.device_id,
                "state": "pending",
                "fetched_at": T0 + MINUTE,
                "key_released_at": T0 + 2 * MINUTE,
            },
            {
                "user": ctx.uid(ctx.bob),
                "device_id": ctx.bob_laptop.device_id,
                "state": "delivered_sealed",
                "fetched_at": T0 + MINUTE,
                "key_released_at": None,
            },
            {
                "user": ctx.uid(ctx.carol),
                "device_id": ctx.new_id(),
                "state": "never_delivered",
                "fetched_at": None,
                "key_released_at": None,
            },
        ],
        key=lambda d: (d["user"], d["device_id"]),
    )

    def body(**over: Any) -> dict[str, Any]:
        values = {
            "version": 1,
            "relay": ctx.uid(ctx.relay),
            "message_id": message_id,
            "conversation_id": ctx.conversation,
            "revocation": revocation,
            "purged_at": T0 + 5 * MINUTE,
            "devices": devices,
        }
        values.update(over)
        return values

    def add(
        comment: str,
        expect: str,
        flags: list[str],
        values: dict[str, Any],
        signer: SigningKey | None = None,
    ) -> None:
        case = SignedCase(signer or ctx.relay, SIG_PURGE_RECEIPT, wire.encode(values))
        expected = {}
        if expect == "success":
            expected = {
                "expected": {
                    "purgedAt": values["purged_at"],
                    "devices": [
                        {
                            "user": d["user"].hex(),
                            "deviceId": d["device_id"].hex(),
                            "state": d["state"],
                            "fetchedAt": d["fetched_at"],
                            "keyReleasedAt": d["key_released_at"],
                        }
                        for d in values["devices"]
                    ],
                }
            }
        valid = expect == "success"
        if valid and "Deterministic" not in flags:
            flags = [*flags, "Deterministic"]
        fields = case.fields(ctx.relay.public_key.raw, seed=valid)
        group.add(comment, expect, flags, **fields, **expected)

    add("three devices in three states", "success", ["Valid", "Deterministic"], body())
    add("no recipient devices", "success", ["Valid"], body(devices=[]))
    add(
        "signed by the sender instead of the relay",
        "bad_signature",
        ["WrongKey"],
        body(),
        signer=ctx.alice,
    )
    add("names another relay", "wrong_signer", ["WrongSigner"], body(relay=ctx.uid(ctx.carol)))
    add("for another message", "wrong_context", ["WrongContext"], body(message_id=ctx.new_id()))
    add(
        "answers another revocation",
        "wrong_context",
        ["WrongContext"],
        body(revocation=ctx.rng(32)),
    )
    add("devices not sorted", "decode_failure", ["Unsorted"], body(devices=list(reversed(devices))))
    add(
        "a device listed twice",
        "decode_failure",
        ["Unsorted"],
        body(devices=[devices[0], devices[0]]),
    )
    add(
        "unknown device state",
        "decode_failure",
        ["UnknownValue"],
        body(devices=[{**devices[0], "state": "read"}]),
    )
    add(
        "device entry with an unknown field",
        "decode_failure",
        ["UnknownField"],
        body(devices=[{**devices[0], "ip": "10.0.0.1"}]),
    )
    add("devices is a map", "decode_failure", ["TypeConfusion"], body(devices={"a": 1}))
    add(
        "relay attests a deletion only a device can",
        "decode_failure",
        ["UnknownValue"],
        body(devices=[{**devices[0], "state": "deleted"}]),
    )
    add(
        "sealed device with a key-release time",
        "decode_failure",
        ["HeaderRule"],
        body(
            devices=[
                {**d, "key_released_at": T0 + MINUTE} if d["state"] == "delivered_sealed" else d
                for d in devices
            ]
        ),
    )
    add(
        "pending device without a key-release time",
        "decode_failure",
        ["HeaderRule"],
        body(
            devices=[
                {**d, "key_released_at": None} if d["state"] == "pending" else d for d in devices
            ]
        ),
    )
    add(
        "never-delivered device with a fetch time",
        "decode_failure",
        ["HeaderRule"],
        body(
            devices=[
                {**d, "fetched_at": T0} if d["state"] == "never_delivered" else d for d in devices
            ]
        ),
    )
    add("version 2", "unsupported_version", ["UnknownVersion"], body(version=2))
    base = SignedCase(ctx.relay, SIG_PURGE_RECEIPT, wire.encode(body()))
    add_signature_attacks(ctx, group, base, [SIG_DELETION_RECEIPT, SIG_ENVELOPE], dict)
    cut = vf.group(
        "PurgeReceiptTruncated",
        note="every proper prefix of one receipt",
        **group.fields,
        signerPublicKey=ctx.relay.public_key.raw.hex(),
    )
    add_truncations(cut, base.wire, "signed", what="receipt")
    return vf
