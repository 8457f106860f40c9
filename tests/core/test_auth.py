"""Registration (proof of possession) and login signatures."""

from __future__ import annotations

from typing import Any

import pytest

from e2e_recall.auth import (
    CHALLENGE_LEN,
    login_payload,
    registration_payload,
    relay_fingerprint,
    sign_login,
    sign_registration,
    verify_login,
    verify_registration,
)
from e2e_recall.domains import HASH_CERTIFICATE, SIG_LOGIN, SIG_REGISTRATION
from e2e_recall.errors import DecodeError, SignatureInvalid, WrongSigner
from e2e_recall.hashing import digest

CHALLENGE = bytes(range(CHALLENGE_LEN))


def relay_id(world: Any) -> bytes:
    return relay_fingerprint(world.relay.public_key)


def register(world: Any, **changes: Any) -> dict[str, Any]:
    """Keyword arguments of a valid registration of Bob's X25519 device."""
    cert = world.bob_cert.signed
    identity_sig, device_sig = sign_registration(
        world.bob,
        world.bob_device.signing_key,
        relay=relay_id(world),
        challenge=CHALLENGE,
        certificate=cert,
    )
    args = {
        "identity": world.bob.public_key,
        "certificate": cert,
        "relay": relay_id(world),
        "challenge": CHALLENGE,
        "identity_signature": identity_sig,
        "device_signature": device_sig,
        "now": world.now,
    }
    args.update(changes)
    return args


def test_payloads_are_as_specified(world: Any) -> None:
    relay, cert = relay_id(world), world.bob_cert.signed
    assert registration_payload(relay, CHALLENGE, cert) == (
        relay + CHALLENGE + digest(HASH_CERTIFICATE, cert)
    )
    device_id = world.bob_device.device_id
    assert login_payload(relay, device_id, CHALLENGE) == relay + device_id + CHALLENGE


def test_registration_round_trip(world: Any) -> None:
    cert = verify_registration(**register(world))
    assert cert.device_id == world.bob_device.device_id


def test_registration_signatures_are_deterministic(world: Any) -> None:
    """Ed25519 is deterministic, so the vectors can state the signer's seed and the bytes."""
    assert register(world) == register(world)


@pytest.mark.parametrize("which", ["identity_signature", "device_signature"])
def test_registration_needs_both_keys(world: Any, which: str) -> None:
    other = world.mallory.sign(
        SIG_REGISTRATION, registration_payload(relay_id(world), CHALLENGE, world.bob_cert.signed)
    )
    with pytest.raises(SignatureInvalid):
        verify_registration(**register(world, **{which: other}))


def test_registration_for_another_relay_or_challenge(world: Any) -> None:
    with pytest.raises(SignatureInvalid):
        verify_registration(**register(world, relay=bytes(32)))
    with pytest.raises(SignatureInvalid):
        verify_registration(**register(world, challenge=bytes(32)))


@pytest.mark.parametrize("field", ["relay", "challenge"])
@pytest.mark.parametrize("size", [0, 31, 33])
def test_registration_lengths_are_decode_errors(world: Any, field: str, size: int) -> None:
    with pytest.raises(DecodeError) as info:
        verify_registration(**register(world, **{field: bytes(size)}))
    assert info.value.reason == "bad_length"


def login(world: Any, **changes: Any) -> dict[str, Any]:
    args = {
        "relay": relay_id(world),
        "device_id": world.bob_device.device_id,
        "challenge": CHALLENGE,
    }
    signature = sign_login(world.bob_device.signing_key, **args)
    args.update(changes)
    return {"device": world.bob_cert, "signature": signature, **args}


def test_login_round_trip(world: Any) -> None:
    verify_login(**login(world))


def test_login_with_another_key_or_label(world: Any) -> None:
    payload = login_payload(relay_id(world), world.bob_device.device_id, CHALLENGE)
    for signature in (
        world.bob.sign(SIG_LOGIN, payload),
        world.bob_device.signing_key.sign(SIG_REGISTRATION, payload),
    ):
        with pytest.raises(SignatureInvalid):
            verify_login(**login(world, signature=signature))


def test_login_naming_another_device_is_wrong_signer(world: Any) -> None:
    with pytest.raises(WrongSigner) as info:
        verify_login(**login(world, device_id=world.bob_device2.device_id))
    assert info.value.reason == "not_device"


@pytest.mark.parametrize("field", ["relay", "device_id", "challenge"])
@pytest.mark.parametrize("cut", [0, 1])
def test_login_lengths_are_decode_errors_before_anything_else(
    world: Any, field: str, cut: int
) -> None:
    """A truncated device id is malformed (spec section 12), not another device."""
    value = login(world)[field]
    with pytest.raises(DecodeError) as info:
        verify_login(**login(world, **{field: value[: cut * (len(value) - 1)]}))
    assert info.value.reason == "bad_length"
