"""Wrapping a per-message key to one device with HPKE (RFC 9180, base mode).

Two suites, chosen per device in its certificate:

* ``X25519``: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (the default);
* ``XWING``: the ML-KEM-768 + X25519 hybrid KEM (X-Wing, KEM id 0x647a),
  HKDF-SHA256, ChaCha20-Poly1305, for devices that want post-quantum wrapping.

The HPKE ``info`` binds the protocol version, message id, conversation id,
recipient device id and the id of the key wrapped to, so a relay that moves a
wrap to another device or message gets an authentication failure, not a key.

The one randomness this module cannot take as an argument is the HPKE
encapsulation's: ``cryptography`` draws it from the OS inside
``Suite.encrypt`` (see :func:`wrap_message_key`).  The test vectors
therefore open wraps with this module and seal them with a test-only
reference that takes the X25519 ephemeral, and for X-Wing also the ML-KEM
shared secret, as inputs (docs/protocol.md, section 15).
"""

from __future__ import annotations

import struct
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)

from .domains import HASH_WRAP_KEY_ID, HPKE_WRAP_INFO, ID_LEN, KEY_LEN, PROTOCOL_VERSION
from .errors import AuthenticationFailure, DecodeError, InvalidKey, UsageError
from .hashing import digest
from .randomness import Rng, system_random

__all__ = [
    "WrapPrivateKey",
    "WrapPublicKey",
    "WrapSuite",
    "unwrap_message_key",
    "wrap_info",
    "wrap_length",
    "wrap_message_key",
]

_MLKEM_PUBLIC_LEN = 1184
_MLKEM_SEED_LEN = 64
_MLKEM_CIPHERTEXT_LEN = 1088
_X25519_LEN = 32
_TAG_LEN = 16


class WrapSuite(IntEnum):
    """The HPKE suite a device's wrapping key belongs to (its wire number)."""

    X25519 = 1
    XWING = 2


_PUBLIC_LEN = {WrapSuite.X25519: _X25519_LEN, WrapSuite.XWING: _MLKEM_PUBLIC_LEN + _X25519_LEN}
_PRIVATE_LEN = {WrapSuite.X25519: _X25519_LEN, WrapSuite.XWING: _MLKEM_SEED_LEN + _X25519_LEN}
_ENC_LEN = {WrapSuite.X25519: _X25519_LEN, WrapSuite.XWING: _MLKEM_CIPHERTEXT_LEN + _X25519_LEN}
_HPKE = {
    WrapSuite.X25519: Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305),
    WrapSuite.XWING: Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305),
}
# Any fixed scalar works: X25519 clamps it to a multiple of the cofactor, so a
# small-order point gives the all-zero result, which cryptography refuses.
_PROBE = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def suite_from_wire(value: int) -> WrapSuite:
    """The suite numbered ``value``, or :class:`DecodeError` for any other number."""
    return _suite(value, DecodeError)


def _suite(value: object, error: type[DecodeError] | type[UsageError]) -> WrapSuite:
    """Check a suite argument before it indexes a table, so it cannot become a KeyError."""
    if isinstance(value, WrapSuite):
        return value
    if type(value) is int:
        try:
            return WrapSuite(value)
        except ValueError:
            pass
    raise error("unknown_suite", f"wrap suite {value!r} is not supported")


def wrap_length(suite: WrapSuite) -> int:
    """Exact length of a wrap: the KEM encapsulation, the 32-byte key, the tag."""
    return _ENC_LEN[suite] + KEY_LEN + _TAG_LEN


def _x25519_public(raw: bytes) -> x25519.X25519PublicKey:
    """Parse an X25519 public key, refusing points of small order."""
    key = x25519.X25519PublicKey.from_public_bytes(raw)
    try:
        _PROBE.exchange(key)
    except ValueError:
        raise InvalidKey("small_order_key", "X25519 key of small order") from None
    return key


class WrapPublicKey:
    """A device's public wrapping key, validated for its suite."""

    __slots__ = ("_hpke_key", "key_id", "raw", "suite")

    def __init__(self, suite: WrapSuite, raw: bytes) -> None:
        # A public key arrives from outside (a certificate, a key file): refuse
        # an unknown suite as a decode failure, like any other bad field.
        suite = _suite(suite, DecodeError)
        if type(raw) is not bytes or len(raw) != _PUBLIC_LEN[suite]:
            raise DecodeError(
                "bad_length", f"a {suite.name} public key is {_PUBLIC_LEN[suite]} bytes"
            )
        self.suite = suite
        self.raw = raw
        self.key_id = digest(HASH_WRAP_KEY_ID, struct.pack(">H", suite) + raw)[:ID_LEN]
        if suite is WrapSuite.X25519:
            self._hpke_key: x25519.X25519PublicKey | MLKEM768X25519PublicKey = _x25519_public(raw)
        else:
            try:
                pq = mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC_LEN])
            except ValueError:
                raise InvalidKey("bad_mlkem_key", "not a valid ML-KEM-768 public key") from None
            self._hpke_key = MLKEM768X25519PublicKey(pq, _x25519_public(raw[_MLKEM_PUBLIC_LEN:]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WrapPublicKey) and (other.suite, other.raw) == (
            self.suite,
            self.raw,
        )

    def __hash__(self) -> int:
        return hash((self.suite, self.raw))


class WrapPrivateKey:
    """A device's private wrapping key.

    Serialised as the X25519 scalar (``X25519``) or as the 64-byte ML-KEM
    seed followed by the X25519 scalar (``XWING``).
    """

    __slots__ = ("_hpke_key", "_public", "_x25519", "raw", "suite")

    def __init__(self, suite: WrapSuite, raw: bytes) -> None:
        # A private key is the program's own (load_device_secrets turns this
        # UsageError into a DecodeError for a key file).
        suite = _suite(suite, UsageError)
        if type(raw) is not bytes or len(raw) != _PRIVATE_LEN[suite]:
            raise UsageError(
                "bad_length", f"a {suite.name} private key is {_PRIVATE_LEN[suite]} bytes"
            )
        self.suite = suite
        self.raw = raw
        if suite is WrapSuite.X25519:
            self._x25519 = x25519.X25519PrivateKey.from_private_bytes(raw)
            self._hpke_key: x25519.X25519PrivateKey | MLKEM768X25519PrivateKey = self._x25519
            public = self._x25519.public_key().public_bytes_raw()
        else:
            pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM_SEED_LEN])
            self._x25519 = x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM_SEED_LEN:])
            self._hpke_key = MLKEM768X25519PrivateKey(pq, self._x25519)
            public = (
                pq.public_key().public_bytes_raw() + self._x25519.public_key().public_bytes_raw()
            )
        self._public = WrapPublicKey(suite, public)

    @classmethod
    def generate(
        cls, suite: WrapSuite = WrapSuite.X25519, rng: Rng = system_random
    ) -> WrapPrivateKey:
        return cls(suite, rng(_PRIVATE_LEN[suite]))

    @property
    def public_key(self) -> WrapPublicKey:
        return self._public

    def _check_ephemeral(self, enc: bytes) -> None:
        """Refuse an encapsulation whose X25519 share yields the all-zero secret."""
        share = x25519.X25519PublicKey.from_public_bytes(enc[-_X25519_LEN:])
        try:
            self._x25519.exchange(share)
        except ValueError:
            raise InvalidKey("zero_shared_secret", "the X25519 shared secret is all zero") from None

    def __repr__(self) -> str:
        return f"WrapPrivateKey({self.suite.name}, key_id={self._public.key_id.hex()})"


def wrap_info(message_id: bytes, conversation_id: bytes, device_id: bytes, key_id: bytes) -> bytes:
    """The HPKE ``info`` for one wrap (see docs/protocol.md, "Wrapping")."""
    for name, value in (
        ("message_id", message_id),
        ("conversation_id", conversation_id),
        ("device_id", device_id),
        ("key_id", key_id),
    ):
        if type(value) is not bytes or len(value) != ID_LEN:
            raise UsageError("bad_length", f"{name} must be {ID_LEN} bytes")
    return (
        HPKE_WRAP_INFO
        + bytes([PROTOCOL_VERSION])
        + message_id
        + conversation_id
        + device_id
        + key_id
    )


def wrap_message_key(
    message_key: bytes,
    recipient: WrapPublicKey,
    *,
    message_id: bytes,
    conversation_id: bytes,
    device_id: bytes,
) -> bytes:
    """Encrypt the per-message key to one device; returns ``enc || ciphertext``.

    Unlike every other function here that needs randomness, this one takes
    no ``rng=``: ``cryptography``'s HPKE draws the ephemeral key (and, for
    X-Wing, the ML-KEM encapsulation randomness) from the OS inside
    ``Suite.encrypt`` and offers no way to pass it in.  Accepting an ``rng``
    that is then ignored would be worse than not accepting one, and
    rebuilding HPKE here to take an ephemeral would put a second,
    unvetted HPKE in the product.  So wraps are the one output that cannot
    be reproduced from a seed; the vectors check them in the decryption
    direction, and reproduce the sealing side with a test-only reference
    (``e2e_recall.vectors.reference_hpke``) where the primitives allow.
    """
    if type(message_key) is not bytes or len(message_key) != KEY_LEN:
        raise UsageError("bad_length", "a per-message key is 32 bytes")
    info = wrap_info(message_id, conversation_id, device_id, recipient.key_id)
    return _HPKE[recipient.suite].encrypt(message_key, recipient._hpke_key, info=info)


def unwrap_message_key(
    wrap: bytes,
    private: WrapPrivateKey,
    *,
    message_id: bytes,
    conversation_id: bytes,
    device_id: bytes,
) -> bytes:
    """Recover the per-message key, or raise a :class:`ProtocolError`."""
    suite = private.suite
    if type(wrap) is not bytes or len(wrap) != wrap_length(suite):
        raise DecodeError("bad_length", f"a {suite.name} wrap is {wrap_length(suite)} bytes")
    try:
        info = wrap_info(message_id, conversation_id, device_id, private.public_key.key_id)
    except UsageError:
        private._check_ephemeral(wrap[: _ENC_LEN[suite]])  # reported first, as it always was
        raise
    try:
        return _HPKE[suite].decrypt(wrap, private._hpke_key, info=info)
    except (InvalidTag, ValueError):
        pass
    # cryptography's HPKE refuses an all-zero X25519 result itself, in both suites
    # (OpenSSL's X25519 does; tests/core/test_wrapping.py holds it to that), so a
    # wrap that opened had none, and the X25519 exchange that names the case is
    # only needed, and only paid for, when the wrap did not open.
    private._check_ephemeral(wrap[: _ENC_LEN[suite]])
    raise AuthenticationFailure("wrap_failed", "the wrap does not open with this key")
