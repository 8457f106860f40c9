"""User identity: fingerprints (user ids), safety numbers, direct conversation ids.

A user *is* the fingerprint of their Ed25519 identity key: 32 bytes of
domain-separated SHA-256.  Two users compare a **safety number** out of band;
both compute the same 60 digits from the two identity keys, so a relay or
directory that substituted a key is caught when the numbers differ.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from .domains import (
    FINGERPRINT_LEN,
    HASH_DIRECT_CONVERSATION,
    HASH_FINGERPRINT,
    HASH_SAFETY_NUMBER,
    ID_LEN,
)
from .errors import UsageError
from .hashing import digest
from .signing import VerifyKey

__all__ = [
    "SAFETY_NUMBER_ITERATIONS",
    "direct_conversation_id",
    "fingerprint",
    "format_fingerprint",
    "safety_number",
]

SAFETY_NUMBER_ITERATIONS = 5200
_DIGITS_PER_PARTY = 30


def fingerprint(identity: VerifyKey) -> bytes:
    """The user id: SHA-256(HASH_FINGERPRINT || identity public key).

    Computed once per key object (a key is immutable), since every envelope,
    revocation and certificate checks its signer's fingerprint.
    """
    known = identity._fingerprint
    if known is None:
        known = identity._fingerprint = digest(HASH_FINGERPRINT, identity.raw)
    return known


def format_fingerprint(user_id: bytes) -> str:
    """Hex in groups of four, the form shown to people."""
    text = user_id.hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def _party_digits(identity: VerifyKey) -> str:
    """30 digits for one party: iterated SHA-512, then six 5-digit chunks."""
    value = HASH_SAFETY_NUMBER + identity.raw
    for _ in range(SAFETY_NUMBER_ITERATIONS):
        h = hashes.Hash(hashes.SHA512())
        h.update(value)
        h.update(identity.raw)
        value = h.finalize()
    chunks = []
    for i in range(_DIGITS_PER_PARTY // 5):
        chunk = int.from_bytes(value[i * 5 : i * 5 + 5], "big") % 100_000
        chunks.append(f"{chunk:05d}")
    return "".join(chunks)


def safety_number(a: VerifyKey, b: VerifyKey) -> str:
    """60 digits in twelve groups of five; the same whichever side computes it."""
    if a == b:
        raise UsageError("same_key", "a safety number needs two different identities")
    first, second = sorted((_party_digits(a), _party_digits(b)))
    digits = first + second
    return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))


def direct_conversation_id(a: bytes, b: bytes) -> bytes:
    """The conversation id of the one-to-one conversation between two user ids."""
    if len(a) != FINGERPRINT_LEN or len(b) != FINGERPRINT_LEN or a == b:
        raise UsageError("bad_user_ids", "two different 32-byte user ids are needed")
    low, high = sorted((a, b))
    return digest(HASH_DIRECT_CONVERSATION, low + high)[:ID_LEN]
