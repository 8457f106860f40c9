"""Ed25519 signing with domain labels, and strict (libsodium) verification."""

from __future__ import annotations

import hashlib
import itertools

import nacl.bindings as sodium
import pytest

from e2e_recall import SeededRandom, SigningKey, VerifyKey
from e2e_recall.domains import (
    ALL_LABELS,
    SIG_DEVICE_CERTIFICATE,
    SIG_ENVELOPE,
    SIG_REVOCATION,
    SIGNATURE_LABELS,
)
from e2e_recall.errors import InvalidKey, SignatureInvalid, UsageError

L = 2**252 + 27742317777372353535851937790883648493
PAYLOAD = b"the payload"

# Encodings of points of small order (and non-canonical encodings of them).
SMALL_ORDER_POINTS = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity (order 1)
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2 (y = -1)
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "0100000000000000000000000000000000000000000000000000000000000080",  # identity, x sign set
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p (non-canonical 0)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p+1 (non-canonical 1)
]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(SeededRandom(b"signing tests"))


def secret_scalar(key: SigningKey) -> int:
    h = bytearray(hashlib.sha512(key.seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def test_sign_and_verify(key: SigningKey) -> None:
    signature = key.sign(SIG_ENVELOPE, PAYLOAD)
    assert len(signature) == 64
    key.public_key.verify(SIG_ENVELOPE, PAYLOAD, signature)


def test_signature_covers_label_then_payload(key: SigningKey) -> None:
    signature = key.sign(SIG_REVOCATION, PAYLOAD)
    # Plain libsodium verification over label || payload agrees.
    assert sodium.crypto_sign_open(signature + SIG_REVOCATION + PAYLOAD, key.public_key.raw)


def test_signatures_are_deterministic(key: SigningKey) -> None:
    assert key.sign(SIG_ENVELOPE, PAYLOAD) == key.sign(SIG_ENVELOPE, PAYLOAD)
    assert key.sign(SIG_ENVELOPE, PAYLOAD) != key.sign(SIG_ENVELOPE, PAYLOAD + b"!")


def test_generate_is_reproducible_from_a_seeded_source() -> None:
    a = SigningKey.generate(SeededRandom(b"x"))
    b = SigningKey.generate(SeededRandom(b"x"))
    c = SigningKey.generate(SeededRandom(b"y"))
    assert a.seed == b.seed
    assert a.public_key == b.public_key
    assert a.public_key != c.public_key
    assert SigningKey(a.seed).public_key == a.public_key


def test_unknown_label_is_a_usage_error(key: SigningKey) -> None:
    with pytest.raises(UsageError):
        key.sign(b"e2e-recall/v1/sig/other\x00", PAYLOAD)
    signature = key.sign(SIG_ENVELOPE, PAYLOAD)
    with pytest.raises(UsageError):
        key.public_key.verify(b"", PAYLOAD, signature)
    with pytest.raises(UsageError):
        key.public_key.verify(SIG_ENVELOPE[:-1], PAYLOAD, signature)


@pytest.mark.parametrize(
    ("made_for", "presented_as"),
    list(itertools.permutations(SIGNATURE_LABELS, 2)),
)
def test_signature_under_one_label_fails_under_another(
    key: SigningKey, made_for: bytes, presented_as: bytes
) -> None:
    signature = key.sign(made_for, PAYLOAD)
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(presented_as, PAYLOAD, signature)


def test_label_boundary_cannot_be_shifted(key: SigningKey) -> None:
    # A label is never a prefix of another, so moving bytes between label and
    # payload cannot turn one statement into another.
    signature = key.sign(SIG_ENVELOPE, PAYLOAD)
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD[1:], signature)


def test_wrong_payload_or_key(key: SigningKey) -> None:
    signature = key.sign(SIG_ENVELOPE, PAYLOAD)
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD + b"\x00", signature)
    other = SigningKey.generate(SeededRandom(b"other"))
    with pytest.raises(SignatureInvalid):
        other.public_key.verify(SIG_ENVELOPE, PAYLOAD, signature)


@pytest.mark.parametrize("bad", [b"", bytes(63), bytes(65), "x" * 64])
def test_signature_length(key: SigningKey, bad: bytes) -> None:
    with pytest.raises(SignatureInvalid) as info:
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD, bad)
    assert info.value.reason == "bad_length"


def test_malleated_s_plus_l_is_rejected(key: SigningKey) -> None:
    signature = key.sign(SIG_ENVELOPE, PAYLOAD)
    s = int.from_bytes(signature[32:], "little")
    assert s < L
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD, malleated)


def test_every_single_bit_flip_of_a_signature_is_rejected(key: SigningKey) -> None:
    signature = key.sign(SIG_DEVICE_CERTIFICATE, PAYLOAD)
    for bit in range(512):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SignatureInvalid):
            key.public_key.verify(SIG_DEVICE_CERTIFICATE, PAYLOAD, bytes(flipped))


def test_small_order_r_is_rejected(key: SigningKey) -> None:
    """R = identity with S = H(R||A||M)*a satisfies [S]B = R + [k]A, yet must fail."""
    r = bytes([1]) + bytes(31)
    a_point = key.public_key.raw
    message = SIG_ENVELOPE + PAYLOAD
    k = int.from_bytes(hashlib.sha512(r + a_point + message).digest(), "little") % L
    s = (k * secret_scalar(key)) % L
    forged = r + s.to_bytes(32, "little")
    # The forgery really satisfies the cofactorless equation...
    sb = sodium.crypto_scalarmult_ed25519_base_noclamp(s.to_bytes(32, "little"))
    ka = sodium.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), a_point)
    assert sb == ka
    # ...and is refused because R has small order.
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD, forged)


@pytest.mark.parametrize("r_hex", SMALL_ORDER_POINTS[:8])
def test_signatures_with_small_order_r_and_zero_s(key: SigningKey, r_hex: str) -> None:
    forged = bytes.fromhex(r_hex) + bytes(32)
    with pytest.raises(SignatureInvalid):
        key.public_key.verify(SIG_ENVELOPE, PAYLOAD, forged)


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_small_order_public_keys_are_refused_at_construction(point: str) -> None:
    with pytest.raises(InvalidKey) as info:
        VerifyKey(bytes.fromhex(point))
    assert info.value.reason == "weak_key"


def test_mixed_order_public_key_is_refused(key: SigningKey) -> None:
    torsion = bytes.fromhex(SMALL_ORDER_POINTS[4])
    mixed = sodium.crypto_core_ed25519_add(key.public_key.raw, torsion)
    with pytest.raises(InvalidKey):
        VerifyKey(mixed)


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), bytearray(32), "a" * 32])
def test_public_key_length_and_type(raw: bytes) -> None:
    with pytest.raises(InvalidKey) as info:
        VerifyKey(raw)
    assert info.value.reason == "bad_length"


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_seed_length(seed: bytes) -> None:
    with pytest.raises(UsageError):
        SigningKey(seed)


def test_verify_key_equality_and_hash(key: SigningKey) -> None:
    again = VerifyKey(key.public_key.raw)
    assert again == key.public_key
    assert hash(again) == hash(key.public_key)
    assert again != SigningKey.generate(SeededRandom(b"z")).public_key
    assert again != key.public_key.raw
    assert key.seed.hex() not in repr(key)


def test_domain_labels_are_distinct_and_prefix_free() -> None:
    assert len(set(ALL_LABELS)) == len(ALL_LABELS)
    for a, b in itertools.permutations(ALL_LABELS, 2):
        assert not b.startswith(a), (a, b)
    for label in ALL_LABELS:
        assert label.startswith(b"e2e-recall/v1/")
        assert label.endswith(b"\x00")
