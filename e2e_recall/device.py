"""Devices: their private keys and the certificate the identity signs for them.

A device has its own Ed25519 signing key (for logging in and for deletion
receipts) and its own HPKE wrapping key.  The user's identity key signs a
certificate binding both to the device id; senders check that certificate
against the identity they pinned before wrapping anything to the device.
Rotating the wrapping key means issuing a new certificate for the same
device id with a later ``created_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .domains import (
    FINGERPRINT_LEN,
    ID_LEN,
    KEY_LEN,
    MAX_CLOCK_SKEW_MS,
    PROTOCOL_VERSION,
    SIG_DEVICE_CERTIFICATE,
)
from .errors import CertificateExpired, DecodeError, UsageError, WrongSigner
from .identity import fingerprint
from .randomness import Rng, system_random
from .schema import Field, check_map, check_version
from .signed import open_signed, seal_signed
from .signing import SigningKey, VerifyKey
from .wrapping import WrapPrivateKey, WrapPublicKey, WrapSuite, suite_from_wire

__all__ = [
    "DeviceCertificate",
    "DeviceSecrets",
    "issue_device_certificate",
    "verify_device_certificate",
]

_MAX_TIME = 2**63 - 1
_FIELDS = (
    Field("version", "uint"),
    Field("user", "bin", size=FINGERPRINT_LEN),
    Field("device_id", "bin", size=ID_LEN),
    Field("signing_key", "bin", size=KEY_LEN),
    Field("wrap_suite", "uint", max_value=0xFFFF),
    Field("wrap_key", "bin", max_len=4096),
    Field("created_at", "uint", max_value=_MAX_TIME),
    Field("expires_at", "uint", max_value=_MAX_TIME, optional=True),
)


@dataclass(frozen=True, slots=True)
class DeviceSecrets:
    """Everything private to one device."""

    device_id: bytes
    signing_key: SigningKey
    wrap_key: WrapPrivateKey

    @classmethod
    def generate(
        cls, suite: WrapSuite = WrapSuite.X25519, rng: Rng = system_random
    ) -> DeviceSecrets:
        return cls(
            device_id=rng(ID_LEN),
            signing_key=SigningKey.generate(rng),
            wrap_key=WrapPrivateKey.generate(suite, rng),
        )


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """A verified device certificate, with the exact signed bytes it came from."""

    user: bytes
    device_id: bytes
    signing_key: VerifyKey
    wrap_key: WrapPublicKey
    created_at: int
    expires_at: int | None
    signed: bytes

    def is_valid_at(self, now: int) -> bool:
        if self.created_at > now + MAX_CLOCK_SKEW_MS:
            return False
        return self.expires_at is None or now < self.expires_at


def _body(
    user: bytes,
    device_id: bytes,
    signing_key: VerifyKey,
    wrap_key: WrapPublicKey,
    created_at: int,
    expires_at: int | None,
) -> dict[str, Any]:
    return {
        "version": PROTOCOL_VERSION,
        "user": user,
        "device_id": device_id,
        "signing_key": signing_key.raw,
        "wrap_suite": int(wrap_key.suite),
        "wrap_key": wrap_key.raw,
        "created_at": created_at,
        "expires_at": expires_at,
    }


def issue_device_certificate(
    identity: SigningKey,
    device_id: bytes,
    signing_key: VerifyKey,
    wrap_key: WrapPublicKey,
    *,
    created_at: int,
    expires_at: int | None = None,
) -> DeviceCertificate:
    """Sign a certificate for one device with the user's identity key."""
    if len(device_id) != ID_LEN:
        raise UsageError("bad_length", "a device id is 16 bytes")
    if expires_at is not None and expires_at <= created_at:
        raise UsageError("bad_expiry", "a certificate must expire after it is created")
    user = fingerprint(identity.public_key)
    body = _body(user, device_id, signing_key, wrap_key, created_at, expires_at)
    try:
        check_map(body, _FIELDS, "device certificate")
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signed = seal_signed(body, SIG_DEVICE_CERTIFICATE, identity)
    return DeviceCertificate(user, device_id, signing_key, wrap_key, created_at, expires_at, signed)


def verify_device_certificate(
    data: bytes, identity: VerifyKey, *, now: int | None
) -> DeviceCertificate:
    """Check a certificate against the pinned identity and the time ``now``.

    ``now=None`` checks everything but the time: for a certificate already
    accepted once (a relay re-reading its own rows, which also keeps
    superseded and expired ones and decides their use by their dates).
    """
    _, obj = open_signed(data, SIG_DEVICE_CERTIFICATE, identity)
    check_version(obj, "device certificate", PROTOCOL_VERSION)
    fields = check_map(obj, _FIELDS, "device certificate")
    if fields["user"] != fingerprint(identity):
        raise WrongSigner("not_owner", "the certificate names another user than its signer")
    suite = suite_from_wire(fields["wrap_suite"])
    expires_at = fields["expires_at"]
    if expires_at is not None and expires_at <= fields["created_at"]:
        raise DecodeError("bad_expiry", "the certificate expires before it is created")
    cert = DeviceCertificate(
        user=fields["user"],
        device_id=fields["device_id"],
        signing_key=VerifyKey(fields["signing_key"]),
        wrap_key=WrapPublicKey(suite, fields["wrap_key"]),
        created_at=fields["created_at"],
        expires_at=expires_at,
        signed=data,
    )
    if now is not None and not cert.is_valid_at(now):
        raise CertificateExpired("outside_validity", "the certificate is not valid now")
    return cert
