"""Rotating a device's wrapping key: the rules every party applies (protocol section 5.1).

A device rotates by having its identity sign a new certificate for the same
device id, the same device signing key and a new wrapping key, with a later
``created_at`` and an expiry.  Senders wrap to the newest certificate they
have verified; the relay keeps the superseded one usable until it expires,
so a sender with a directory a few days old still reaches the device, and
refuses wraps to any key past that point.  Once no wrap made to an old key
is pending, the device deletes that private key, and wraps recorded earlier
(a copy of the relay's database, a capture) can no longer be opened with
anything the device holds.

Nothing here reads a clock: ``now`` is always passed in.
"""

from __future__ import annotations

from .device import DeviceCertificate, issue_device_certificate, verify_device_certificate
from .errors import RotationRefused, UsageError
from .signing import SigningKey, VerifyKey
from .wrapping import WrapPublicKey

__all__ = [
    "DEFAULT_LIFETIME_MS",
    "DEFAULT_MAX_LIFETIME_MS",
    "DEFAULT_ROTATE_EVERY_MS",
    "check_rotation",
    "issue_expiring_certificate",
    "rotation_due",
    "usable_until",
]

DAY_MS = 24 * 60 * 60 * 1000
# A device rotates weekly and each certificate lives two weeks, so a sender whose
# directory is up to a week old still wraps to a key the relay accepts.
DEFAULT_ROTATE_EVERY_MS = 7 * DAY_MS
DEFAULT_LIFETIME_MS = 14 * DAY_MS
# The longest lifetime a relay accepts by default for a rotated certificate.
DEFAULT_MAX_LIFETIME_MS = 90 * DAY_MS


def issue_expiring_certificate(
    identity: SigningKey,
    device_id: bytes,
    signing_key: VerifyKey,
    wrap_key: WrapPublicKey,
    *,
    created_at: int,
    lifetime: int,
) -> DeviceCertificate:
    """The way clients make certificates: each expires ``lifetime`` ms after it is made.

    A new device, a rotation and a linked device all go through here, so no
    certificate without an expiry is issued any more.
    """
    if lifetime <= 0:
        raise UsageError("bad_lifetime", "a certificate lifetime must be positive")
    return issue_device_certificate(
        identity,
        device_id,
        signing_key,
        wrap_key,
        created_at=created_at,
        expires_at=created_at + lifetime,
    )


def rotation_due(current: DeviceCertificate, *, now: int, rotate_every: int) -> bool:
    """Whether the device should rotate before doing anything else (a cheap comparison).

    Due when the certificate has no expiry (a profile made before rotation
    existed), when it is ``rotate_every`` old, or when it has expired.
    """
    if current.expires_at is None:
        return True
    return now >= current.created_at + rotate_every or now >= current.expires_at


def check_rotation(
    current: DeviceCertificate,
    rotated: bytes,
    identity: VerifyKey,
    *,
    now: int,
    max_lifetime: int,
) -> DeviceCertificate:
    """Verify ``rotated`` as the certificate that replaces ``current``, in the order of section 5.1.

    The checks of section 5 come first (signature, owner, fields, valid at
    ``now``); then the same device id, the same device signing key, another
    wrapping key, a later ``created_at``, and an expiry at most
    ``max_lifetime`` after it.  ``current`` was verified when it was
    accepted; it may have expired since, which does not stop a rotation (a
    device that was off for a month must still be able to come back).
    """
    new = verify_device_certificate(rotated, identity, now=now)
    if new.user != current.user:
        raise RotationRefused("other_user", "the certificate is for another user")
    if new.device_id != current.device_id:
        raise RotationRefused("other_device", "the certificate is for another device")
    if new.signing_key != current.signing_key:
        raise RotationRefused("signing_key_changed", "a rotation keeps the device's signing key")
    if new.wrap_key.key_id == current.wrap_key.key_id:
        raise RotationRefused("same_wrap_key", "a rotation brings a new wrapping key")
    if new.created_at <= current.created_at:
        raise RotationRefused("not_later", "the certificate is not newer than the current one")
    if new.expires_at is None:
        raise RotationRefused("no_expiry", "a rotated certificate must expire")
    if new.expires_at - new.created_at > max_lifetime:
        raise RotationRefused(
            "lifetime_too_long", "the certificate lives longer than this relay allows"
        )
    return new


def usable_until(previous: DeviceCertificate, new: DeviceCertificate) -> int:
    """Until when wraps to a superseded certificate's key are still accepted (exclusive).

    Its own expiry; a certificate made before rotation existed has none, and
    then stays usable as long as the certificate that replaced it.
    """
    if previous.expires_at is not None:
        return previous.expires_at
    assert new.expires_at is not None  # check_rotation refuses a rotated one without
    return new.expires_at
