"""Vectors for wrapping-key rotation (``device_rotation.json``, protocol section 5.1).

Each test gives the device's ``current`` certificate, the ``rotated`` one
offered to replace it, the identity that signs both, ``now`` and the
relay's ``maxLifetime``; a valid rotation gives the new certificate's key
id and dates, an invalid one the class and reason of the single rule it
breaks.  Every certificate is signed honestly by its stated signer, so the
only thing wrong with an invalid test is the rotation rule.
"""

from __future__ import annotations

from typing import Any

from ..device import DeviceSecrets, issue_device_certificate
from ..signing import SigningKey
from ..wrapping import WrapPrivateKey, WrapSuite
from .fixtures import DAY, MINUTE, T0, Context
from .format import VectorFile

__all__ = ["rotation_vectors"]

_LIFETIME = 14 * DAY
_MAX_LIFETIME = 90 * DAY


def _cert(
    identity: SigningKey,
    device: DeviceSecrets,
    wrap: WrapPrivateKey,
    created_at: int,
    expires_at: int | None,
    device_id: bytes | None = None,
    signing: SigningKey | None = None,
) -> bytes:
    return issue_device_certificate(
        identity,
        device.device_id if device_id is None else device_id,
        (signing or device.signing_key).public_key,
        wrap.public_key,
        created_at=created_at,
        expires_at=expires_at,
    ).signed


def rotation_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Rotating a device's wrapping key",
        [
            "Verify rotated as the certificate replacing current (both signed by the identity",
            "signerPublicKey) at now, under the relay's maxLifetime: section 5 first, then the",
            "same user, device id and signing key, a new wrapping key, a later created_at, and",
            "an expiry at most maxLifetime after it.",
        ],
    )
    bob, phone = ctx.bob, ctx.bob_device
    fresh = [WrapPrivateKey.generate(WrapSuite.X25519, ctx.rng) for _ in range(2)]
    pq = WrapPrivateKey.generate(WrapSuite.XWING, ctx.rng)
    other_signing = SigningKey.generate(ctx.rng)
    current = _cert(bob, phone, phone.wrap_key, T0, T0 + _LIFETIME)
    legacy = _cert(bob, phone, phone.wrap_key, T0, None)
    group = vf.group(
        "DeviceRotation",
        signerPublicKey=bob.public_key.raw.hex(),
        current=current.hex(),
        maxLifetime=_MAX_LIFETIME,
    )
    week = T0 + 7 * DAY

    def add(comment: str, expect: str, flags: list[str], rotated: bytes, **over: Any) -> None:
        fields: dict[str, Any] = {"rotated": rotated.hex(), "now": week, **over}
        if expect == "success":
            wrap = next(k for k in (*fresh, pq) if k.public_key.raw.hex() in rotated.hex())
            created = fields.pop("_created")
            fields["expected"] = {
                "keyId": wrap.public_key.key_id.hex(),
                "createdAt": created,
                "expiresAt": created + fields.pop("_lifetime", _LIFETIME),
            }
        group.add(comment, expect, flags, **fields)

    add(
        "a week later, a new X25519 key, two weeks' life",
        "success",
        ["Valid"],
        _cert(bob, phone, fresh[0], week, week + _LIFETIME),
        _created=week,
    )
    add(
        "to an X-Wing key",
        "success",
        ["Valid"],
        _cert(bob, phone, pq, week, week + _LIFETIME),
        _created=week,
    )
    add(
        "replacing a certificate without expiry (a profile from before rotation)",
        "success",
        ["Valid"],
        _cert(bob, phone, fresh[0], week, week + _LIFETIME),
        current=legacy.hex(),
        _created=week,
    )
    late = T0 + 40 * DAY
    add(
        "after the current certificate expired (a device back from a month offline)",
        "success",
        ["Valid"],
        _cert(bob, phone, fresh[1], late, late + _LIFETIME),
        now=late,
        _created=late,
    )
    add(
        "exactly the relay's longest lifetime",
        "success",
        ["Valid"],
        _cert(bob, phone, fresh[0], week, week + _MAX_LIFETIME),
        _created=week,
        _lifetime=_MAX_LIFETIME,
    )
    add(
        "the same wrapping key again",
        "rotation_refused",
        ["SameWrapKey"],
        _cert(bob, phone, phone.wrap_key, week, week + _LIFETIME),
        reason="same_wrap_key",
    )
    add(
        "created before the current certificate",
        "rotation_refused",
        ["NotLater"],
        _cert(bob, phone, fresh[0], T0 - MINUTE, T0 + _LIFETIME),
        reason="not_later",
    )
    add(
        "created at the same time as the current certificate",
        "rotation_refused",
        ["NotLater"],
        _cert(bob, phone, fresh[0], T0, T0 + _LIFETIME),
        reason="not_later",
    )
    add(
        "for another device id",
        "rotation_refused",
        ["OtherDevice"],
        _cert(bob, phone, fresh[0], week, week + _LIFETIME, device_id=ctx.bob_laptop.device_id),
        reason="other_device",
    )
    add(
        "with another device signing key",
        "rotation_refused",
        ["SigningKeyChanged"],
        _cert(bob, phone, fresh[0], week, week + _LIFETIME, signing=other_signing),
        reason="signing_key_changed",
    )
    add(
        "without an expiry",
        "rotation_refused",
        ["NoExpiry"],
        _cert(bob, phone, fresh[0], week, None),
        reason="no_expiry",
    )
    add(
        "living one millisecond longer than the relay allows",
        "rotation_refused",
        ["LifetimeTooLong"],
        _cert(bob, phone, fresh[0], week, week + _MAX_LIFETIME + 1),
        reason="lifetime_too_long",
    )
    add(
        "already expired when offered",
        "expired",
        ["Expired"],
        _cert(bob, phone, fresh[0], T0 + DAY, T0 + 2 * DAY),
        reason="outside_validity",
    )
    add(
        "created more than five minutes in the future",
        "expired",
        ["Expired"],
        _cert(bob, phone, fresh[0], week + 5 * MINUTE + 1, week + _LIFETIME),
        reason="outside_validity",
    )
    add(
        "signed by Alice's identity, naming Bob",
        "bad_signature",
        ["WrongKey"],
        _cert(ctx.alice, phone, fresh[0], week, week + _LIFETIME),
    )
    add(
        "Alice's certificate (checked against Alice) offered to replace Bob's",
        "rotation_refused",
        ["WrongSigner"],
        _cert(ctx.alice, phone, fresh[0], week, week + _LIFETIME),
        signerPublicKey=ctx.alice.public_key.raw.hex(),
        currentSignerPublicKey=bob.public_key.raw.hex(),
        reason="other_user",
    )
    return vf
