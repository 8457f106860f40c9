"""Vectors for registration (proof of possession) and challenge-response login."""

from __future__ import annotations

from typing import Any

from ..device import DeviceSecrets, issue_device_certificate
from ..domains import HASH_CERTIFICATE, SIG_LOGIN, SIG_REGISTRATION
from ..hashing import digest
from ..identity import fingerprint
from ..signing import SigningKey
from .fixtures import DAY, T0, Context, forge_small_order_r, malleate
from .format import VectorFile
from .signatures import signature_fields
from .truncation import add_truncations

__all__ = ["auth_vectors"]


def _cert(owner: SigningKey, device: DeviceSecrets, **over: Any) -> bytes:
    return issue_device_certificate(
        owner,
        device.device_id,
        device.signing_key.public_key,
        device.wrap_key.public_key,
        created_at=over.get("created_at", T0),
        expires_at=over.get("expires_at"),
    ).signed


def registration_payload(relay: bytes, challenge: bytes, certificate: bytes) -> bytes:
    """As :func:`e2e_recall.auth.registration_payload`, without its length checks."""
    return relay + challenge + digest(HASH_CERTIFICATE, certificate)


def login_payload(relay: bytes, device_id: bytes, challenge: bytes) -> bytes:
    """As :func:`e2e_recall.auth.login_payload`, without its length checks."""
    return relay + device_id + challenge


def auth_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Registration and login signatures",
        [
            "Registration: verify the certificate with identityPublicKey at now, then both",
            "signatures over label || relay || challenge || SHA-256(cert label || certificate).",
            "Login: verify the certificate, then the device's signature over",
            "label || relay || deviceId || challenge. signatureChecks lists each signature step.",
        ],
    )
    relay = fingerprint(ctx.relay.public_key)
    other_relay = fingerprint(ctx.carol.public_key)
    bob, phone, laptop = ctx.bob, ctx.bob_device, ctx.bob_laptop
    reg = vf.group("RegistrationVerify", relay=relay.hex(), now=T0)

    def registration(
        comment: str,
        expect: str,
        flags: list[str],
        *,
        identity: SigningKey = bob,
        device: DeviceSecrets = phone,
        cert: bytes | None = None,
        challenge: bytes | None = None,
        identity_signer: SigningKey | None = None,
        device_signer: SigningKey | None = None,
        signed_relay: bytes = relay,
        signed_challenge: bytes | None = None,
        label: bytes = SIG_REGISTRATION,
        tweak: Any = None,
    ) -> dict[str, Any]:
        cert = cert if cert is not None else _cert(identity, device)
        challenge = challenge if challenge is not None else ctx.rng(32)
        signed_challenge = challenge if signed_challenge is None else signed_challenge
        message = label + registration_payload(signed_relay, signed_challenge, cert)
        id_key = identity_signer or identity
        dev_key = device_signer or device.signing_key
        id_sig = id_key.sign(label, message[len(label) :])
        dev_sig = dev_key.sign(label, message[len(label) :])
        if tweak is not None:
            id_sig = tweak(id_sig, identity, message)
        checked = SIG_REGISTRATION + registration_payload(relay, challenge, cert)
        valid = expect == "success"
        inputs = {
            "identityPublicKey": identity.public_key.raw.hex(),
            "certificate": cert.hex(),
            "challenge": challenge.hex(),
            "identitySignature": id_sig.hex(),
            "deviceSignature": dev_sig.hex(),
        }
        reg.add(
            comment,
            expect,
            [*flags, "Deterministic"] if valid and "Deterministic" not in flags else flags,
            **inputs,
            signatureChecks=[
                signature_fields(
                    identity.public_key.raw, checked, id_sig, identity if valid else None
                ),
                signature_fields(
                    device.signing_key.public_key.raw,
                    checked,
                    dev_sig,
                    device.signing_key if valid else None,
                ),
            ],
        )
        return inputs

    registered = registration("X25519 device", "success", ["Valid", "Deterministic"])
    registration("X-Wing device", "success", ["Valid"], device=laptop)
    registration(
        "identity signature by another key",
        "bad_signature",
        ["WrongKey"],
        identity_signer=ctx.carol,
    )
    registration(
        "device signature by another device",
        "bad_signature",
        ["WrongKey"],
        device_signer=laptop.signing_key,
    )
    registration(
        "signed for another relay", "bad_signature", ["WrongContext"], signed_relay=other_relay
    )
    registration(
        "signed for another challenge",
        "bad_signature",
        ["WrongContext"],
        signed_challenge=ctx.rng(32),
    )
    registration(
        "claims Bob's identity and certificate without his keys",
        "bad_signature",
        ["WrongSigner"],
        identity_signer=ctx.carol,
        device_signer=ctx.carol,
    )
    registration(
        "signed under the login label", "bad_signature", ["PrefixConfusion"], label=SIG_LOGIN
    )
    registration(
        "identity signature S + L",
        "bad_signature",
        ["Malleable"],
        tweak=lambda sig, key, message: malleate(sig),
    )
    registration(
        "identity signature with small-order R",
        "bad_signature",
        ["SmallOrderR"],
        tweak=lambda sig, key, message: forge_small_order_r(key, message),
    )
    registration(
        "Carol's certificate presented with Bob's identity",
        "bad_signature",
        ["WrongKey"],
        cert=_cert(ctx.carol, phone),
    )
    registration(
        "expired certificate",
        "expired",
        ["Expired"],
        cert=_cert(bob, phone, created_at=T0 - 2 * DAY, expires_at=T0 - DAY),
    )
    registration("challenge of 31 bytes", "decode_failure", ["BadLength"], challenge=bytes(31))
    _truncated_registration(vf, registered, relay)

    login = vf.group(
        "LoginVerify",
        relay=relay.hex(),
        now=T0,
        identityPublicKey=bob.public_key.raw.hex(),
        deviceCertificate=_cert(bob, phone).hex(),
    )

    def attempt(
        comment: str,
        expect: str,
        flags: list[str],
        *,
        signer: SigningKey = phone.signing_key,
        device_id: bytes = phone.device_id,
        signed_device: bytes | None = None,
        signed_relay: bytes = relay,
        challenge: bytes | None = None,
        signed_challenge: bytes | None = None,
        label: bytes = SIG_LOGIN,
        tweak: Any = None,
    ) -> dict[str, Any]:
        challenge = challenge if challenge is not None else ctx.rng(32)
        payload = login_payload(
            signed_relay,
            signed_device or device_id,
            challenge if signed_challenge is None else signed_challenge,
        )
        signature = signer.sign(label, payload)
        if tweak is not None:
            signature = tweak(signature, signer, label + payload)
        checked = SIG_LOGIN + login_payload(relay, device_id, challenge)
        valid = expect == "success"
        inputs = {
            "deviceId": device_id.hex(),
            "challenge": challenge.hex(),
            "signature": signature.hex(),
        }
        login.add(
            comment,
            expect,
            flags,
            **inputs,
            signatureChecks=[
                signature_fields(
                    phone.signing_key.public_key.raw, checked, signature, signer if valid else None
                )
            ],
        )
        return inputs

    answered = attempt("device answers its challenge", "success", ["Valid", "Deterministic"])
    attempt(
        "signed by Bob's other device", "bad_signature", ["WrongKey"], signer=laptop.signing_key
    )
    attempt("signed by Bob's identity key", "bad_signature", ["WrongKey"], signer=bob)
    attempt("signed for another relay", "bad_signature", ["WrongContext"], signed_relay=other_relay)
    attempt(
        "signed for another challenge",
        "bad_signature",
        ["WrongContext"],
        signed_challenge=ctx.rng(32),
    )
    attempt(
        "signed for another device id",
        "bad_signature",
        ["WrongContext"],
        signed_device=laptop.device_id,
    )
    attempt(
        "names another device than the certificate",
        "wrong_signer",
        ["WrongSigner"],
        device_id=laptop.device_id,
    )
    attempt(
        "signed under the registration label",
        "bad_signature",
        ["PrefixConfusion"],
        label=SIG_REGISTRATION,
    )
    attempt(
        "signature S + L",
        "bad_signature",
        ["Malleable"],
        tweak=lambda sig, key, message: malleate(sig),
    )
    attempt(
        "small-order R",
        "bad_signature",
        ["SmallOrderR"],
        tweak=lambda sig, key, message: forge_small_order_r(key, message),
    )
    attempt("challenge of 33 bytes", "decode_failure", ["BadLength"], challenge=bytes(33))
    _truncated_login(vf, login.fields, answered)
    return vf


_SIGNATURE_CUT = "bad_signature"  # a short signature fails the signature check (section 2.1)


def _truncated_registration(vf: VectorFile, valid: dict[str, Any], relay: bytes) -> None:
    """Every proper prefix of each byte string of one valid registration, one at a time."""
    cut = vf.group(
        "RegistrationTruncated",
        note="one field of the group's valid registration cut short, in place of the whole",
        relay=relay.hex(),
        now=T0,
        **valid,
    )
    for field, expect in (
        ("certificate", "decode_failure"),
        ("challenge", "decode_failure"),
        ("identitySignature", _SIGNATURE_CUT),
        ("deviceSignature", _SIGNATURE_CUT),
        ("relay", "decode_failure"),
    ):
        add_truncations(cut, bytes.fromhex(cut.fields[field]), field, expect=expect, what=field)


def _truncated_login(vf: VectorFile, shared: dict[str, Any], valid: dict[str, Any]) -> None:
    """Every proper prefix of each byte string of one valid login, one at a time."""
    cut = vf.group(
        "LoginTruncated",
        note="one field of the group's valid login cut short, in place of the whole",
        **shared,
        **valid,
    )
    for field, expect in (
        ("signature", _SIGNATURE_CUT),
        ("challenge", "decode_failure"),
        ("deviceId", "decode_failure"),
        ("relay", "decode_failure"),
    ):
        add_truncations(cut, bytes.fromhex(cut.fields[field]), field, expect=expect, what=field)
