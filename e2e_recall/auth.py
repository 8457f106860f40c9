"""Proving possession of keys to a relay: registration and login.

Both answer a fresh challenge from the relay, and both name the relay (by
its key's fingerprint), so a signature made for one relay, or one login, is
worth nothing at another or later:

* **registration** -- the identity key *and* the new device's signing key
  sign ``relay || challenge || SHA-256(certificate)``, so nobody can register
  a certificate (or claim an identity) whose private keys they do not hold;
* **login** -- the device's signing key signs ``relay || device_id ||
  challenge``, and the relay answers with a session token.
"""

from __future__ import annotations

from .device import DeviceCertificate, verify_device_certificate
from .domains import FINGERPRINT_LEN, HASH_CERTIFICATE, ID_LEN, SIG_LOGIN, SIG_REGISTRATION
from .errors import DecodeError, WrongSigner
from .hashing import digest
from .identity import fingerprint
from .signing import SigningKey, VerifyKey

__all__ = [
    "CHALLENGE_LEN",
    "login_payload",
    "registration_payload",
    "relay_fingerprint",
    "sign_login",
    "sign_registration",
    "verify_login",
    "verify_registration",
]

CHALLENGE_LEN = 32


def _check(name: str, value: bytes, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError("bad_length", f"{name} must be {size} bytes")


def registration_payload(relay: bytes, challenge: bytes, certificate: bytes) -> bytes:
    """What both registration signatures cover (after the label)."""
    _check("relay", relay, FINGERPRINT_LEN)
    _check("challenge", challenge, CHALLENGE_LEN)
    return relay + challenge + digest(HASH_CERTIFICATE, certificate)


def sign_registration(
    identity: SigningKey,
    device_key: SigningKey,
    *,
    relay: bytes,
    challenge: bytes,
    certificate: bytes,
) -> tuple[bytes, bytes]:
    """(identity signature, device signature) for registering one device."""
    payload = registration_payload(relay, challenge, certificate)
    return identity.sign(SIG_REGISTRATION, payload), device_key.sign(SIG_REGISTRATION, payload)


def verify_registration(
    identity: VerifyKey,
    certificate: bytes,
    *,
    relay: bytes,
    challenge: bytes,
    identity_signature: bytes,
    device_signature: bytes,
    now: int,
) -> DeviceCertificate:
    """Check a registration: the certificate, then possession of both private keys."""
    cert = verify_device_certificate(certificate, identity, now=now)
    payload = registration_payload(relay, challenge, certificate)
    identity.verify(SIG_REGISTRATION, payload, identity_signature)
    cert.signing_key.verify(SIG_REGISTRATION, payload, device_signature)
    return cert


def login_payload(relay: bytes, device_id: bytes, challenge: bytes) -> bytes:
    _check("relay", relay, FINGERPRINT_LEN)
    _check("device_id", device_id, ID_LEN)
    _check("challenge", challenge, CHALLENGE_LEN)
    return relay + device_id + challenge


def sign_login(
    device_key: SigningKey, *, relay: bytes, device_id: bytes, challenge: bytes
) -> bytes:
    return device_key.sign(SIG_LOGIN, login_payload(relay, device_id, challenge))


def verify_login(
    device: DeviceCertificate, signature: bytes, *, relay: bytes, device_id: bytes, challenge: bytes
) -> None:
    """Check a login answer against the device's certificate.

    Lengths first (``login_payload`` checks them), so a device id of the
    wrong length is a decode failure, as section 12 of the spec says, and
    not mistaken for another device.
    """
    payload = login_payload(relay, device_id, challenge)
    if device_id != device.device_id:
        raise WrongSigner("not_device", "the login names another device than the certificate")
    device.signing_key.verify(SIG_LOGIN, payload, signature)


def relay_fingerprint(relay_key: VerifyKey) -> bytes:
    """How a relay is named in what is signed for it."""
    return fingerprint(relay_key)
