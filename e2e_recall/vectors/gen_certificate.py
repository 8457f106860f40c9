"""Vectors for device certificates."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..device import DeviceSecrets
from ..domains import (
    SIG_DEVICE_CERTIFICATE,
    SIG_ENVELOPE,
    SIG_REVOCATION,
)
from ..signing import SigningKey
from .fixtures import (
    DAY,
    MINUTE,
    NON_CANONICAL_ED25519,
    SMALL_ORDER_ED25519,
    SMALL_ORDER_X25519,
    T0,
    Context,
)
from .format import VectorFile
from .signatures import SignedCase, add_signature_attacks
from .truncation import add_truncations, sparse_lengths

__all__ = ["certificate_vectors"]


def _cert_body(
    ctx: Context, owner: SigningKey, device: DeviceSecrets, **over: Any
) -> dict[str, Any]:
    body = {
        "version": 1,
        "user": ctx.uid(owner),
        "device_id": device.device_id,
        "signing_key": device.signing_key.public_key.raw,
        "wrap_suite": int(device.wrap_key.suite),
        "wrap_key": device.wrap_key.public_key.raw,
        "created_at": T0,
        "expires_at": None,
    }
    body.update(over)
    return body


def certificate_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Device certificate signed by the identity key",
        [
            "Verify the certificate with signerPublicKey (the pinned identity) at time now:",
            "signature, fields, that user is the identity's fingerprint, the wrapping key",
            "for its suite, and created_at - 5 min <= now < expires_at.",
        ],
    )
    group = vf.group("DeviceCertificateVerify")
    bob = ctx.bob

    def add(
        comment: str,
        expect: str,
        flags: list[str],
        body: dict[str, Any],
        now: int,
        signer: SigningKey = bob,
        verify_with: SigningKey | None = None,
        label: bytes = SIG_DEVICE_CERTIFICATE,
    ) -> None:
        case = SignedCase(signer, label, wire.encode(body))
        key = None if verify_with is None else verify_with.public_key.raw
        expected = {}
        if expect == "success":
            wrap = ctx.bob_laptop if body["wrap_suite"] == 2 else ctx.bob_device
            expected = {
                "expected": {
                    "user": body["user"].hex(),
                    "deviceId": body["device_id"].hex(),
                    "signingKey": body["signing_key"].hex(),
                    "wrapSuite": body["wrap_suite"],
                    "wrapKey": body["wrap_key"].hex(),
                    "keyId": wrap.wrap_key.public_key.key_id.hex(),
                    "createdAt": body["created_at"],
                    "expiresAt": body["expires_at"],
                }
            }
        valid = expect == "success"
        if valid and "Deterministic" not in flags:
            flags = [*flags, "Deterministic"]
        group.add(comment, expect, flags, now=now, **case.fields(key, seed=valid), **expected)

    phone, laptop = ctx.bob_device, ctx.bob_laptop
    add(
        "X25519 device, no expiry",
        "success",
        ["Valid", "Deterministic"],
        _cert_body(ctx, bob, phone),
        T0,
    )
    add(
        "X-Wing device, no expiry",
        "success",
        ["Valid", "Deterministic"],
        _cert_body(ctx, bob, laptop),
        T0 + DAY,
    )
    expiring = _cert_body(ctx, bob, phone, expires_at=T0 + 30 * DAY)
    add("with expiry, one ms before it", "success", ["Valid"], expiring, T0 + 30 * DAY - 1)
    add("with expiry, at it", "expired", ["Expired"], expiring, T0 + 30 * DAY)
    add(
        "created 5 minutes in the future (clock skew allowed)",
        "success",
        ["Valid"],
        _cert_body(ctx, bob, phone),
        T0 - 5 * MINUTE,
    )
    add(
        "created more than 5 minutes in the future",
        "expired",
        ["Expired"],
        _cert_body(ctx, bob, phone),
        T0 - 5 * MINUTE - 1,
    )
    add(
        "signed by Alice, verified with Bob's identity",
        "bad_signature",
        ["WrongKey"],
        _cert_body(ctx, bob, phone),
        T0,
        signer=ctx.alice,
        verify_with=bob,
    )
    add(
        "signed by Alice, naming Bob as owner",
        "wrong_signer",
        ["WrongSigner"],
        _cert_body(ctx, bob, phone),
        T0,
        signer=ctx.alice,
    )
    for name, point in SMALL_ORDER_X25519.items():
        add(
            f"X25519 wrapping key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            _cert_body(ctx, bob, phone, wrap_key=point),
            T0,
        )
    add(
        "X-Wing key whose X25519 part has small order",
        "invalid_key",
        ["SmallOrderKey"],
        _cert_body(ctx, bob, laptop, wrap_key=laptop.wrap_key.public_key.raw[:-32] + bytes(32)),
        T0,
    )
    add(
        "X-Wing key whose ML-KEM part is not reduced",
        "invalid_key",
        ["InvalidKey"],
        _cert_body(
            ctx, bob, laptop, wrap_key=b"\xff" * 1184 + laptop.wrap_key.public_key.raw[-32:]
        ),
        T0,
    )
    for name, point in SMALL_ORDER_ED25519.items():
        add(
            f"device signing key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            _cert_body(ctx, bob, phone, signing_key=point),
            T0,
        )
    add(
        "device signing key not canonical",
        "invalid_key",
        ["NonCanonicalKey"],
        _cert_body(ctx, bob, phone, signing_key=NON_CANONICAL_ED25519),
        T0,
    )
    add(
        "unknown wrap suite 3",
        "decode_failure",
        ["UnknownValue"],
        _cert_body(ctx, bob, phone, wrap_suite=3),
        T0,
    )
    add(
        "X25519 wrapping key of 31 bytes",
        "decode_failure",
        ["BadLength"],
        _cert_body(ctx, bob, phone, wrap_key=phone.wrap_key.public_key.raw[:31]),
        T0,
    )
    add(
        "suite says X-Wing, key is X25519",
        "decode_failure",
        ["BadLength"],
        _cert_body(ctx, bob, phone, wrap_suite=2),
        T0,
    )
    add(
        "expires before it is created",
        "decode_failure",
        ["HeaderRule"],
        _cert_body(ctx, bob, phone, expires_at=T0 - 1),
        T0,
    )
    add(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        _cert_body(ctx, bob, phone, version=2),
        T0,
    )
    add(
        "unknown field",
        "decode_failure",
        ["UnknownField"],
        _cert_body(ctx, bob, phone, name="phone"),
        T0,
    )
    add(
        "device id as a string",
        "decode_failure",
        ["TypeConfusion"],
        _cert_body(ctx, bob, phone, device_id=phone.device_id.hex()),
        T0,
    )
    base = SignedCase(bob, SIG_DEVICE_CERTIFICATE, wire.encode(_cert_body(ctx, bob, phone)))
    add_signature_attacks(ctx, group, base, [SIG_ENVELOPE, SIG_REVOCATION], lambda: {"now": T0})

    cut = vf.group(
        "DeviceCertificateTruncated",
        note="every proper prefix of the X25519 certificate; for X-Wing, a sparse set of them",
        now=T0,
        signerPublicKey=bob.public_key.raw.hex(),
    )
    add_truncations(cut, base.wire, "signed", what="X25519 certificate")
    xwing = SignedCase(bob, SIG_DEVICE_CERTIFICATE, wire.encode(_cert_body(ctx, bob, laptop)))
    key_at = xwing.wire.index(laptop.wrap_key.public_key.raw)
    add_truncations(
        cut,
        xwing.wire,
        "signed",
        lengths=sparse_lengths(len(xwing.wire), [key_at - 3, key_at, key_at + 1216]),
        what="X-Wing certificate",
    )
    return vf
