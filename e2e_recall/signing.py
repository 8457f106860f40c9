"""Ed25519 signing keys and strict verification, through libsodium.

Identity keys, device signing keys and the relay's receipt key are all
Ed25519.  Verification goes through libsodium (PyNaCl), which rejects a
non-canonical ``S`` (``S >= L``), a small-order ``R`` and a small-order or
non-canonical public key; OpenSSL's verifier accepts some of these.  Public
keys are also checked when they are constructed, so a weak key is refused
before it is pinned or registered, not first noticed when a signature fails.

Every signature is made over ``label || payload`` where ``label`` is one of
the ``SIG_*`` constants of :mod:`e2e_recall.domains`.
"""

from __future__ import annotations

import nacl.bindings as sodium
from nacl.exceptions import BadSignatureError

from .domains import KEY_LEN, SIGNATURE_LABELS, SIGNATURE_LEN
from .errors import InvalidKey, SignatureInvalid, UsageError
from .randomness import Rng, system_random

__all__ = ["SigningKey", "VerifyKey"]


class VerifyKey:
    """A validated Ed25519 public key."""

    __slots__ = ("_fingerprint", "_raw")

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != KEY_LEN:
            raise InvalidKey("bad_length", "an Ed25519 public key is 32 bytes")
        if not sodium.crypto_core_ed25519_is_valid_point(raw):
            raise InvalidKey("weak_key", "not a canonical, prime-order Ed25519 point")
        self._raw = raw
        self._fingerprint: bytes | None = None  # identity.fingerprint() keeps it here

    @property
    def raw(self) -> bytes:
        return self._raw

    def verify(self, label: bytes, payload: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureInvalid` unless ``signature`` covers label||payload."""
        if label not in SIGNATURE_LABELS:
            raise UsageError("unknown_label", "not a protocol signature label")
        if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
            raise SignatureInvalid("bad_length", "an Ed25519 signature is 64 bytes")
        try:
            sodium.crypto_sign_open(signature + label + payload, self._raw)
        except BadSignatureError:
            raise SignatureInvalid("bad_signature", "signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"VerifyKey({self._raw.hex()[:16]}...)"


class SigningKey:
    """An Ed25519 private key, held as its 32-byte seed."""

    __slots__ = ("_public", "_secret", "_seed")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != KEY_LEN:
            raise UsageError("bad_length", "an Ed25519 seed is 32 bytes")
        public, secret = sodium.crypto_sign_seed_keypair(seed)
        self._seed = seed
        self._secret = secret
        self._public = VerifyKey(public)

    @classmethod
    def generate(cls, rng: Rng = system_random) -> SigningKey:
        return cls(rng(KEY_LEN))

    @property
    def seed(self) -> bytes:
        return self._seed

    @property
    def public_key(self) -> VerifyKey:
        return self._public

    def sign(self, label: bytes, payload: bytes) -> bytes:
        if label not in SIGNATURE_LABELS:
            raise UsageError("unknown_label", "not a protocol signature label")
        signed = sodium.crypto_sign(label + payload, self._secret)
        return signed[:SIGNATURE_LEN]

    def __repr__(self) -> str:
        return f"SigningKey(public={self._public!r})"
