"""Wrapping per-message keys to devices with HPKE (X25519 and X-Wing)."""

from __future__ import annotations

import hashlib
import struct

import nacl.bindings as sodium
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from e2e_recall import (
    SeededRandom,
    WrapPrivateKey,
    WrapPublicKey,
    WrapSuite,
    unwrap_message_key,
    wrap_message_key,
)
from e2e_recall.domains import HASH_WRAP_KEY_ID, HPKE_WRAP_INFO
from e2e_recall.errors import AuthenticationFailure, DecodeError, InvalidKey, UsageError
from e2e_recall.vectors import reference_hpke
from e2e_recall.wrapping import suite_from_wire, wrap_info, wrap_length

P = 2**255 - 19
# X25519 u-coordinates of small order (and their non-canonical / high-bit forms).
SMALL_ORDER_U = [
    (0).to_bytes(32, "little"),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (P - 1).to_bytes(32, "little"),
    P.to_bytes(32, "little"),
    (P + 1).to_bytes(32, "little"),
    bytes(31) + b"\x80",
    (1).to_bytes(32, "little")[:31] + b"\x80",
]
SUITES = [WrapSuite.X25519, WrapSuite.XWING]
ENC_LEN = {WrapSuite.X25519: 32, WrapSuite.XWING: 1088 + 32}
PUBLIC_LEN = {WrapSuite.X25519: 32, WrapSuite.XWING: 1184 + 32}


class Ids:
    def __init__(self, seed: bytes) -> None:
        rng = SeededRandom(seed)
        self.message_id = rng(16)
        self.conversation_id = rng(16)
        self.device_id = rng(16)
        self.key = rng(32)

    def kwargs(self, **changes: bytes) -> dict[str, bytes]:
        out = {
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "device_id": self.device_id,
        }
        out.update(changes)
        return out


@pytest.fixture(scope="module")
def keys() -> dict[WrapSuite, WrapPrivateKey]:
    rng = SeededRandom(b"wrapping tests")
    return {suite: WrapPrivateKey.generate(suite, rng) for suite in SUITES}


@pytest.fixture(scope="module")
def ids() -> Ids:
    return Ids(b"wrap ids")


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite) -> None:
    private = keys[suite]
    wrap = wrap_message_key(ids.key, private.public_key, **ids.kwargs())
    assert len(wrap) == wrap_length(suite) == ENC_LEN[suite] + 32 + 16
    assert unwrap_message_key(wrap, private, **ids.kwargs()) == ids.key


def test_wrap_lengths() -> None:
    assert wrap_length(WrapSuite.X25519) == 80
    assert wrap_length(WrapSuite.XWING) == 1168


@pytest.mark.parametrize("suite", SUITES)
def test_wraps_are_randomised(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite
) -> None:
    a = wrap_message_key(ids.key, keys[suite].public_key, **ids.kwargs())
    b = wrap_message_key(ids.key, keys[suite].public_key, **ids.kwargs())
    assert a != b
    assert unwrap_message_key(a, keys[suite], **ids.kwargs()) == ids.key
    assert unwrap_message_key(b, keys[suite], **ids.kwargs()) == ids.key


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("field", ["message_id", "conversation_id", "device_id"])
def test_wrap_moved_elsewhere_fails(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite, field: str
) -> None:
    private = keys[suite]
    wrap = wrap_message_key(ids.key, private.public_key, **ids.kwargs())
    other = bytes(16) if getattr(ids, field) != bytes(16) else b"\x01" * 16
    with pytest.raises(AuthenticationFailure):
        unwrap_message_key(wrap, private, **ids.kwargs(**{field: other}))


@pytest.mark.parametrize("suite", SUITES)
def test_wrap_for_another_key_fails(ids: Ids, suite: WrapSuite) -> None:
    rng = SeededRandom(b"two keys " + bytes([suite]))
    mine, theirs = WrapPrivateKey.generate(suite, rng), WrapPrivateKey.generate(suite, rng)
    wrap = wrap_message_key(ids.key, theirs.public_key, **ids.kwargs())
    with pytest.raises(AuthenticationFailure):
        unwrap_message_key(wrap, mine, **ids.kwargs())


def test_wrap_for_the_other_suite_is_a_length_error(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids
) -> None:
    wrap = wrap_message_key(ids.key, keys[WrapSuite.XWING].public_key, **ids.kwargs())
    with pytest.raises(DecodeError):
        unwrap_message_key(wrap, keys[WrapSuite.X25519], **ids.kwargs())
    wrap = wrap_message_key(ids.key, keys[WrapSuite.X25519].public_key, **ids.kwargs())
    with pytest.raises(DecodeError):
        unwrap_message_key(wrap, keys[WrapSuite.XWING], **ids.kwargs())


def test_x25519_wrap_matches_plain_hpke_with_the_documented_info(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids
) -> None:
    """An independent HPKE decryption with the documented info recovers the key."""
    private = keys[WrapSuite.X25519]
    wrap = wrap_message_key(ids.key, private.public_key, **ids.kwargs())
    info = (
        HPKE_WRAP_INFO
        + b"\x01"
        + ids.message_id
        + ids.conversation_id
        + ids.device_id
        + private.public_key.key_id
    )
    assert (
        wrap_info(ids.message_id, ids.conversation_id, ids.device_id, private.public_key.key_id)
        == info
    )
    plain = x25519.X25519PrivateKey.from_private_bytes(private.raw)
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
    assert suite.decrypt(wrap, plain, info=info) == ids.key


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("u", SMALL_ORDER_U, ids=lambda u: u.hex()[:8] + ".." + u.hex()[-4:])
def test_small_order_ephemeral_is_refused(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite, u: bytes
) -> None:
    private = keys[suite]
    wrap = bytearray(wrap_message_key(ids.key, private.public_key, **ids.kwargs()))
    end = ENC_LEN[suite]
    wrap[end - 32 : end] = u
    with pytest.raises(InvalidKey) as info:
        unwrap_message_key(bytes(wrap), private, **ids.kwargs())
    assert info.value.reason == "zero_shared_secret"


def _wrap_from_a_zero_secret(private: WrapPrivateKey, u: bytes, info: bytes, key: bytes) -> bytes:
    """A wrap whose X25519 share ``u`` gives the all-zero secret, otherwise well formed.

    Its AEAD key follows from that zero secret, so it would open if HPKE took
    an all-zero X25519 result as a shared secret.
    """
    zero = bytes(32)
    if private.suite is WrapSuite.X25519:
        shared = reference_hpke._dhkem_shared_secret(zero, u, private.public_key.raw)
        enc = u
    else:
        public = private.public_key.raw
        pq_secret, pq_ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(
            public[:1184]
        ).encapsulate()
        shared = reference_hpke._xwing_combiner(pq_secret, zero, u, public[1184:])
        enc = pq_ciphertext + u
    kem = (
        reference_hpke.KEM_X25519 if private.suite is WrapSuite.X25519 else reference_hpke.KEM_XWING
    )
    aead_key, nonce = reference_hpke._key_schedule(kem, shared, info)
    return enc + sodium.crypto_aead_chacha20poly1305_ietf_encrypt(key, b"", nonce, aead_key)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("u", SMALL_ORDER_U, ids=lambda u: u.hex()[:8] + ".." + u.hex()[-4:])
def test_hpke_itself_refuses_an_all_zero_x25519_secret(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite, u: bytes
) -> None:
    """unwrap_message_key names this case only after the wrap failed to open, so the
    library must refuse it on its own: a wrap sealed under the zero secret never opens."""
    private = keys[suite]
    info = wrap_info(ids.message_id, ids.conversation_id, ids.device_id, private.public_key.key_id)
    wrap = _wrap_from_a_zero_secret(private, u, info, ids.key)
    assert len(wrap) == wrap_length(suite)
    hpke = Suite(
        KEM.X25519 if suite is WrapSuite.X25519 else KEM.MLKEM768_X25519,
        KDF.HKDF_SHA256,
        AEAD.CHACHA20_POLY1305,
    )
    with pytest.raises((InvalidTag, ValueError)):
        hpke.decrypt(wrap, private._hpke_key, info=info)
    with pytest.raises(InvalidKey) as refused:
        unwrap_message_key(wrap, private, **ids.kwargs())
    assert refused.value.reason == "zero_shared_secret"


def test_the_zero_secret_wraps_are_well_formed(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids
) -> None:
    """The construction above, with a real X25519 share, gives a wrap that opens."""
    for suite, private in keys.items():
        scalar = bytes(range(32))
        share = sodium.crypto_scalarmult_base(scalar)
        x_public = private.public_key.raw[-32:]
        secret = sodium.crypto_scalarmult(scalar, x_public)
        info = wrap_info(
            ids.message_id, ids.conversation_id, ids.device_id, private.public_key.key_id
        )
        if suite is WrapSuite.X25519:
            shared = reference_hpke._dhkem_shared_secret(secret, share, x_public)
            enc, kem = share, reference_hpke.KEM_X25519
        else:
            pq_secret, pq_ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(
                private.public_key.raw[:1184]
            ).encapsulate()
            shared = reference_hpke._xwing_combiner(pq_secret, secret, share, x_public)
            enc, kem = pq_ciphertext + share, reference_hpke.KEM_XWING
        aead_key, nonce = reference_hpke._key_schedule(kem, shared, info)
        wrap = enc + sodium.crypto_aead_chacha20poly1305_ietf_encrypt(ids.key, b"", nonce, aead_key)
        assert unwrap_message_key(wrap, private, **ids.kwargs()) == ids.key


def test_all_zero_wrap_is_refused(keys: dict[WrapSuite, WrapPrivateKey], ids: Ids) -> None:
    with pytest.raises(InvalidKey) as info:
        unwrap_message_key(bytes(80), keys[WrapSuite.X25519], **ids.kwargs())
    assert info.value.reason == "zero_shared_secret"


@pytest.mark.parametrize("u", SMALL_ORDER_U, ids=lambda u: u.hex()[:8] + ".." + u.hex()[-4:])
def test_small_order_recipient_key_is_refused(
    keys: dict[WrapSuite, WrapPrivateKey], u: bytes
) -> None:
    with pytest.raises(InvalidKey) as info:
        WrapPublicKey(WrapSuite.X25519, u)
    assert info.value.reason == "small_order_key"
    mlkem_part = keys[WrapSuite.XWING].public_key.raw[:1184]
    with pytest.raises(InvalidKey) as info:
        WrapPublicKey(WrapSuite.XWING, mlkem_part + u)
    assert info.value.reason == "small_order_key"


def test_invalid_mlkem_public_key_is_refused(keys: dict[WrapSuite, WrapPrivateKey]) -> None:
    x_part = keys[WrapSuite.XWING].public_key.raw[1184:]
    with pytest.raises(InvalidKey) as info:
        WrapPublicKey(WrapSuite.XWING, b"\xff" * 1184 + x_part)  # coefficients >= q
    assert info.value.reason == "bad_mlkem_key"


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("delta", [-1, 1])
def test_public_key_wrong_length_is_decode_error(suite: WrapSuite, delta: int) -> None:
    with pytest.raises(DecodeError) as info:
        WrapPublicKey(suite, b"\x09" * (PUBLIC_LEN[suite] + delta))
    assert info.value.reason == "bad_length"


def test_public_key_must_be_bytes(keys: dict[WrapSuite, WrapPrivateKey]) -> None:
    with pytest.raises(DecodeError):
        WrapPublicKey(WrapSuite.X25519, bytearray(keys[WrapSuite.X25519].public_key.raw))  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("delta", [-1, 1, -100])
def test_wrap_wrong_length_is_decode_error(
    keys: dict[WrapSuite, WrapPrivateKey], ids: Ids, suite: WrapSuite, delta: int
) -> None:
    wrap = wrap_message_key(ids.key, keys[suite].public_key, **ids.kwargs())
    bad = wrap[:delta] if delta < 0 else wrap + b"\x00"
    with pytest.raises(DecodeError) as info:
        unwrap_message_key(bad, keys[suite], **ids.kwargs())
    assert info.value.reason == "bad_length"


@pytest.mark.parametrize("suite", [0, 3, 0xFFFF, -1, True, "1", None, 1.0])
def test_unknown_suite_of_a_public_key_is_a_decode_error(suite: object) -> None:
    """Not a KeyError from the length table: the suite number comes from the wire."""
    with pytest.raises(DecodeError) as info:
        WrapPublicKey(suite, bytes(32))  # type: ignore[arg-type]
    assert info.value.reason == "unknown_suite"
    with pytest.raises(DecodeError):
        suite_from_wire(suite)  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", [0, 3, True, None])
def test_unknown_suite_of_a_private_key_is_a_usage_error(suite: object) -> None:
    with pytest.raises(UsageError) as info:
        WrapPrivateKey(suite, bytes(32))  # type: ignore[arg-type]
    assert info.value.reason == "unknown_suite"


def test_local_misuse_is_usage_error(keys: dict[WrapSuite, WrapPrivateKey], ids: Ids) -> None:
    public = keys[WrapSuite.X25519].public_key
    with pytest.raises(UsageError):
        wrap_message_key(bytes(31), public, **ids.kwargs())
    with pytest.raises(UsageError):
        wrap_message_key(ids.key, public, **ids.kwargs(device_id=bytes(15)))
    with pytest.raises(UsageError):
        wrap_info(bytes(16), bytes(16), bytes(16), bytes(17))
    with pytest.raises(UsageError):
        WrapPrivateKey(WrapSuite.X25519, bytes(31))
    with pytest.raises(UsageError):
        WrapPrivateKey(WrapSuite.XWING, bytes(32))


@pytest.mark.parametrize("suite", SUITES)
def test_key_id_is_stable(keys: dict[WrapSuite, WrapPrivateKey], suite: WrapSuite) -> None:
    public = keys[suite].public_key
    expected = hashlib.sha256(HASH_WRAP_KEY_ID + struct.pack(">H", suite) + public.raw).digest()[
        :16
    ]
    assert public.key_id == expected
    assert WrapPublicKey(suite, public.raw).key_id == expected
    assert WrapPrivateKey(suite, keys[suite].raw).public_key.key_id == expected
    assert len(public.key_id) == 16


def test_key_ids_differ_between_keys() -> None:
    rng = SeededRandom(b"key ids")
    ids = {WrapPrivateKey.generate(WrapSuite.X25519, rng).public_key.key_id for _ in range(5)}
    assert len(ids) == 5


def test_rotated_key_cannot_open_old_wraps(ids: Ids) -> None:
    rng = SeededRandom(b"rotation")
    old, new = WrapPrivateKey.generate(rng=rng), WrapPrivateKey.generate(rng=rng)
    wrap = wrap_message_key(ids.key, old.public_key, **ids.kwargs())
    with pytest.raises(AuthenticationFailure):
        unwrap_message_key(wrap, new, **ids.kwargs())
    assert unwrap_message_key(wrap, old, **ids.kwargs()) == ids.key


@pytest.mark.parametrize("suite", SUITES)
def test_private_key_generation_is_reproducible(suite: WrapSuite) -> None:
    a = WrapPrivateKey.generate(suite, SeededRandom(b"k"))
    b = WrapPrivateKey.generate(suite, SeededRandom(b"k"))
    assert a.raw == b.raw
    assert a.public_key == b.public_key
    assert hash(a.public_key) == hash(b.public_key)
    assert a.suite is suite
    assert a.raw.hex() not in repr(a)


def test_default_suite_is_x25519() -> None:
    assert WrapPrivateKey.generate(rng=SeededRandom(b"d")).suite is WrapSuite.X25519


def test_suite_numbers() -> None:
    assert suite_from_wire(1) is WrapSuite.X25519
    assert suite_from_wire(2) is WrapSuite.XWING
    for value in (0, 3, 0xFFFF):
        with pytest.raises(DecodeError) as info:
            suite_from_wire(value)
        assert info.value.reason == "unknown_suite"
