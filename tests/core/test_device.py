"""Device certificates: issued by the identity, checked against it and the time."""

from __future__ import annotations

from typing import Any

import pytest

from e2e_recall import (
    DeviceSecrets,
    SeededRandom,
    WrapSuite,
    fingerprint,
    issue_device_certificate,
    verify_device_certificate,
    wire,
)
from e2e_recall.domains import MAX_CLOCK_SKEW_MS, SIG_DEVICE_CERTIFICATE, SIG_REVOCATION
from e2e_recall.errors import (
    CertificateExpired,
    DecodeError,
    InvalidKey,
    SignatureInvalid,
    UnsupportedVersion,
    UsageError,
    WrongSigner,
)
from e2e_recall.signed import seal_signed


def cert_body(world: Any, **changes: Any) -> dict[str, Any]:
    device = world.bob_device
    body = {
        "version": 1,
        "user": world.bob_id,
        "device_id": device.device_id,
        "signing_key": device.signing_key.public_key.raw,
        "wrap_suite": 1,
        "wrap_key": device.wrap_key.public_key.raw,
        "created_at": world.now - world.day,
        "expires_at": world.now + world.day,
    }
    body.update(changes)
    return body


def verify_crafted(
    world: Any, body: dict[str, Any], signer: Any = None, label: bytes = SIG_DEVICE_CERTIFICATE
) -> Any:
    signer = signer or world.bob
    data = seal_signed(body, label, signer)
    return verify_device_certificate(data, signer.public_key, now=world.now)


@pytest.mark.parametrize("which", ["bob_cert", "bob_cert_xwing"])
def test_round_trip(world: Any, which: str) -> None:
    cert = getattr(world, which)
    device = world.bob_device if which == "bob_cert" else world.bob_device_xwing
    checked = verify_device_certificate(cert.signed, world.bob.public_key, now=world.now)
    assert checked == cert
    assert checked.user == world.bob_id == fingerprint(world.bob.public_key)
    assert checked.device_id == device.device_id
    assert checked.signing_key == device.signing_key.public_key
    assert checked.wrap_key == device.wrap_key.public_key
    assert checked.wrap_key.suite is device.wrap_key.suite


def test_crafted_body_matches_issued_bytes(world: Any) -> None:
    """The documented body layout is exactly what issue_device_certificate signs."""
    cert = world.bob_cert
    body = cert_body(world, expires_at=cert.expires_at, created_at=cert.created_at)
    assert seal_signed(body, SIG_DEVICE_CERTIFICATE, world.bob) == cert.signed


def test_wrong_identity_is_a_bad_signature(world: Any) -> None:
    for key in (world.alice.public_key, world.mallory.public_key):
        with pytest.raises(SignatureInvalid):
            verify_device_certificate(world.bob_cert.signed, key, now=world.now)


def test_certificate_for_another_user_is_wrong_signer(world: Any) -> None:
    # Mallory signs a certificate claiming to be one of Bob's devices.
    with pytest.raises(WrongSigner) as info:
        verify_crafted(world, cert_body(world), signer=world.mallory)
    assert info.value.reason == "not_owner"


def test_signature_made_for_another_purpose_is_refused(world: Any) -> None:
    with pytest.raises(SignatureInvalid):
        verify_crafted(world, cert_body(world), label=SIG_REVOCATION)


def test_validity_window(world: Any) -> None:
    created, expires = world.now, world.now + world.day
    cert = issue_device_certificate(
        world.bob,
        world.bob_device.device_id,
        world.bob_device.signing_key.public_key,
        world.bob_device.wrap_key.public_key,
        created_at=created,
        expires_at=expires,
    )
    key = world.bob.public_key
    for now in (created, expires - 1, created - MAX_CLOCK_SKEW_MS):
        assert verify_device_certificate(cert.signed, key, now=now) == cert
        assert cert.is_valid_at(now)
    for now in (expires, expires + 1, created - MAX_CLOCK_SKEW_MS - 1, 0):
        with pytest.raises(CertificateExpired):
            verify_device_certificate(cert.signed, key, now=now)
        assert not cert.is_valid_at(now)


def test_certificate_without_expiry(world: Any) -> None:
    cert = issue_device_certificate(
        world.bob,
        world.bob_device.device_id,
        world.bob_device.signing_key.public_key,
        world.bob_device.wrap_key.public_key,
        created_at=world.now,
    )
    assert cert.expires_at is None
    far = 2**62
    assert verify_device_certificate(cert.signed, world.bob.public_key, now=far).expires_at is None
    with pytest.raises(CertificateExpired):
        verify_device_certificate(
            cert.signed, world.bob.public_key, now=world.now - MAX_CLOCK_SKEW_MS - 1
        )


def test_issue_refuses_bad_arguments(world: Any) -> None:
    device = world.bob_device
    args = (world.bob, device.device_id, device.signing_key.public_key, device.wrap_key.public_key)
    with pytest.raises(UsageError):
        issue_device_certificate(*args, created_at=10, expires_at=10)
    with pytest.raises(UsageError):
        issue_device_certificate(*args, created_at=10, expires_at=9)
    with pytest.raises(UsageError):
        issue_device_certificate(world.bob, bytes(15), *args[2:], created_at=10)


@pytest.mark.parametrize(
    ("created_at", "expires_at"),
    [(-1, None), (0, 2**63)],
)
def test_issue_refuses_times_verify_would_refuse(
    world: Any, created_at: int, expires_at: int | None
) -> None:
    """issue_device_certificate must not sign a certificate that no one can verify."""
    device = world.bob_device
    try:
        cert = issue_device_certificate(
            world.bob,
            device.device_id,
            device.signing_key.public_key,
            device.wrap_key.public_key,
            created_at=created_at,
            expires_at=expires_at,
        )
    except UsageError:
        return  # refusing to sign is the consistent answer
    now = max(created_at, 0)
    try:
        verify_device_certificate(cert.signed, world.bob.public_key, now=now)
    except DecodeError as exc:
        pytest.fail(f"issued a certificate that verify refuses: {exc}")


def test_crafted_expiry_before_creation(world: Any) -> None:
    with pytest.raises(DecodeError) as info:
        verify_crafted(world, cert_body(world, expires_at=world.now - world.day))
    assert info.value.reason == "bad_expiry"


def test_unknown_suite(world: Any) -> None:
    with pytest.raises(DecodeError) as info:
        verify_crafted(world, cert_body(world, wrap_suite=3))
    assert info.value.reason == "unknown_suite"


def test_wrap_key_of_the_wrong_length_for_its_suite(world: Any) -> None:
    with pytest.raises(DecodeError):
        verify_crafted(world, cert_body(world, wrap_suite=2))  # an X25519 key labelled X-Wing


def test_small_order_wrap_key(world: Any) -> None:
    with pytest.raises(InvalidKey):
        verify_crafted(world, cert_body(world, wrap_key=bytes(32)))


def test_weak_signing_key(world: Any) -> None:
    with pytest.raises(InvalidKey):
        verify_crafted(world, cert_body(world, signing_key=b"\x01" + bytes(31)))


def test_version(world: Any) -> None:
    with pytest.raises(UnsupportedVersion):
        verify_crafted(world, cert_body(world, version=2))


@pytest.mark.parametrize(
    "changes",
    [
        {"device_id": bytes(15)},
        {"user": bytes(16)},
        {"signing_key": bytes(31)},
        {"created_at": -1},
        {"created_at": 2**63},
        {"expires_at": "never"},
        {"wrap_suite": 0x10000},
        {"extra": 1},
    ],
)
def test_malformed_fields(world: Any, changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        verify_crafted(world, cert_body(world, **changes))


def test_missing_field(world: Any) -> None:
    body = cert_body(world)
    del body["expires_at"]
    with pytest.raises(DecodeError) as info:
        verify_crafted(world, body)
    assert info.value.reason == "missing_field"


def test_container_must_be_exact(world: Any) -> None:
    outer = wire.decode(world.bob_cert.signed, limits=wire.Limits(max_map=2))
    with pytest.raises(DecodeError):
        verify_device_certificate(
            wire.encode({"body": outer["body"], "sig": outer["signature"]}),
            world.bob.public_key,
            now=world.now,
        )


@pytest.mark.parametrize("suite", [WrapSuite.X25519, WrapSuite.XWING])
def test_device_secrets_generation(suite: WrapSuite) -> None:
    a = DeviceSecrets.generate(suite, SeededRandom(b"device"))
    b = DeviceSecrets.generate(suite, SeededRandom(b"device"))
    assert len(a.device_id) == 16
    assert a.device_id == b.device_id
    assert a.signing_key.seed == b.signing_key.seed
    assert a.wrap_key.raw == b.wrap_key.raw
    assert a.wrap_key.suite is suite
