"""Adding and withdrawing devices at a relay: approvals and device revocations.

Every device of a user holds a copy of the identity key, so a signature by
the identity cannot tell the owner from a thief with a revoked device.  Two
structures close that gap at the relay (spec section 17):

* a **device approval** -- a current device's own *device* signing key signs
  ``SIG_DEVICE_APPROVAL || relay || approver device id || SHA-256(
  HASH_CERTIFICATE || new certificate)``.  The relay requires one to register
  any device after a user's first, so a revoked device (whose key the relay
  no longer accepts) cannot add devices;
* a **device revocation** -- the identity signs ``{version, user, device_id,
  revoked_at, relay}`` under ``SIG_DEVICE_REVOCATION``, checked before the
  body is parsed.  The relay also requires it to come from a session of
  another current device of the same user.

The approval travels as the canonical map ``{device_id, signature}``; its
only unverified field is the approver's id, which picks the key to verify
with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import wire
from .domains import (
    FINGERPRINT_LEN,
    HASH_CERTIFICATE,
    ID_LEN,
    PROTOCOL_VERSION,
    SIG_DEVICE_APPROVAL,
    SIG_DEVICE_REVOCATION,
    SIGNATURE_LEN,
)
from .errors import DecodeError, UsageError, WrongContext, WrongSigner
from .hashing import digest
from .identity import fingerprint
from .schema import Field, check_map, check_version
from .signed import open_signed, seal_signed
from .signing import SigningKey, VerifyKey

__all__ = [
    "DeviceRevocation",
    "approval_payload",
    "peek_approver",
    "sign_device_approval",
    "sign_device_revocation",
    "verify_device_approval",
    "verify_device_revocation",
]

_MAX_TIME = 2**63 - 1
_APPROVAL_FIELDS = (
    Field("device_id", "bin", size=ID_LEN),
    Field("signature", "bin", size=SIGNATURE_LEN),
)
_APPROVAL_LIMITS = wire.Limits(max_size=256, max_bin=64, max_map=2)
_REVOCATION_FIELDS = (
    Field("version", "uint"),
    Field("user", "bin", size=FINGERPRINT_LEN),
    Field("device_id", "bin", size=ID_LEN),
    Field("revoked_at", "uint", max_value=_MAX_TIME),
    Field("relay", "bin", size=FINGERPRINT_LEN),
)


def _check(name: str, value: bytes, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError("bad_length", f"{name} must be {size} bytes")


def approval_payload(relay: bytes, approver: bytes, certificate: bytes) -> bytes:
    """What an approval signs (after its label)."""
    _check("relay", relay, FINGERPRINT_LEN)
    _check("approver", approver, ID_LEN)
    return relay + approver + digest(HASH_CERTIFICATE, certificate)


def sign_device_approval(
    device_key: SigningKey, *, relay: bytes, approver: bytes, certificate: bytes
) -> bytes:
    """An approval, by the device ``approver`` (whose key this is), of ``certificate``."""
    try:
        payload = approval_payload(relay, approver, certificate)
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signature = device_key.sign(SIG_DEVICE_APPROVAL, payload)
    return wire.encode({"device_id": approver, "signature": signature})


def peek_approver(approval: bytes) -> bytes:
    """The approving device's id (unverified: only to look its key up)."""
    obj = wire.decode(approval, limits=_APPROVAL_LIMITS)
    return bytes(check_map(obj, _APPROVAL_FIELDS, "device approval")["device_id"])


def verify_device_approval(
    approval: bytes, approver_key: VerifyKey, *, relay: bytes, certificate: bytes
) -> bytes:
    """Check an approval under the approver's device key; return the approver's id."""
    obj = wire.decode(approval, limits=_APPROVAL_LIMITS)
    fields = check_map(obj, _APPROVAL_FIELDS, "device approval")
    payload = approval_payload(relay, fields["device_id"], certificate)
    approver_key.verify(SIG_DEVICE_APPROVAL, payload, fields["signature"])
    return bytes(fields["device_id"])


@dataclass(frozen=True, slots=True)
class DeviceRevocation:
    """A verified (or freshly signed) device revocation and its wire bytes."""

    user: bytes
    device_id: bytes
    revoked_at: int
    relay: bytes
    signed: bytes


def _revocation_body(
    user: bytes, device_id: bytes, revoked_at: int, relay: bytes
) -> dict[str, Any]:
    return {
        "version": PROTOCOL_VERSION,
        "user": user,
        "device_id": device_id,
        "revoked_at": revoked_at,
        "relay": relay,
    }


def sign_device_revocation(
    identity: SigningKey, *, device_id: bytes, revoked_at: int, relay: bytes
) -> DeviceRevocation:
    """The identity's order to withdraw one of its devices at the relay ``relay``."""
    user = fingerprint(identity.public_key)
    body = _revocation_body(user, device_id, revoked_at, relay)
    try:
        check_map(body, _REVOCATION_FIELDS, "device revocation")
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signed = seal_signed(body, SIG_DEVICE_REVOCATION, identity)
    return DeviceRevocation(user, device_id, revoked_at, relay, signed)


def verify_device_revocation(
    data: bytes, identity: VerifyKey, *, relay: bytes | None = None
) -> DeviceRevocation:
    """Verify a revocation as signed by ``identity`` (and, if given, made for ``relay``)."""
    _, obj = open_signed(data, SIG_DEVICE_REVOCATION, identity)
    check_version(obj, "device revocation", PROTOCOL_VERSION)
    fields = check_map(obj, _REVOCATION_FIELDS, "device revocation")
    if fields["user"] != fingerprint(identity):
        raise WrongSigner("not_owner", "the revocation names another user than its signer")
    if relay is not None and fields["relay"] != relay:
        raise WrongContext("other_relay", "the revocation was made for another relay")
    return DeviceRevocation(
        fields["user"], fields["device_id"], fields["revoked_at"], fields["relay"], data
    )
