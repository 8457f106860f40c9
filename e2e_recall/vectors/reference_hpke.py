"""A second, independent HPKE (RFC 9180, base mode) for checking the vectors.

The product wraps keys with ``cryptography``'s HPKE.  This module rebuilds
the same two suites from other parts -- X25519 and ChaCha20-Poly1305 from
libsodium (PyNaCl), HKDF-SHA256 and SHA3-256 from the standard library -- so
the vectors are checked by code that shares nothing with the implementation
but ML-KEM (which only ``cryptography`` offers).  It also accepts a
caller-chosen X25519 ephemeral key, which ``cryptography`` does not, so
X25519 wraps are reproducible in the encryption direction, and X-Wing wraps
are too once the ML-KEM encapsulation is given (see :func:`seal_xwing`).

This is test tooling: the product never calls it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import nacl.bindings as sodium
from cryptography.hazmat.primitives.asymmetric import mlkem
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as SodiumRuntimeError

__all__ = [
    "KEM_X25519",
    "KEM_XWING",
    "ReferenceError",
    "open_base",
    "seal_x25519",
    "seal_xwing",
]

KEM_X25519 = 0x0020
KEM_XWING = 0x647A
_KDF_HKDF_SHA256 = 0x0001
_AEAD_CHACHA20POLY1305 = 0x0003
_XWING_LABEL = b"\\.//^\\"
_MLKEM_CT = 1088
_MLKEM_SEED = 64


class ReferenceError(Exception):
    """The reference implementation refused the input (reason in ``args[0]``)."""


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info, length)


def _x25519(scalar: bytes, point: bytes) -> bytes:
    try:
        return sodium.crypto_scalarmult(scalar, point)
    except (CryptoError, SodiumRuntimeError):
        raise ReferenceError("zero_shared_secret") from None


def _dhkem_shared_secret(dh: bytes, enc: bytes, recipient_public: bytes) -> bytes:
    kem_suite = b"KEM" + struct.pack(">H", KEM_X25519)
    prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    return _labeled_expand(kem_suite, prk, b"shared_secret", enc + recipient_public, 32)


def _key_schedule(kem_id: int, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    suite_id = b"HPKE" + struct.pack(">HHH", kem_id, _KDF_HKDF_SHA256, _AEAD_CHACHA20POLY1305)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return key, nonce


def seal_x25519(
    recipient_public: bytes, ephemeral_private: bytes, info: bytes, plaintext: bytes
) -> bytes:
    """Single-shot base-mode seal with a chosen ephemeral; returns enc || ciphertext."""
    enc = sodium.crypto_scalarmult_base(ephemeral_private)
    dh = _x25519(ephemeral_private, recipient_public)
    key, nonce = _key_schedule(KEM_X25519, _dhkem_shared_secret(dh, enc, recipient_public), info)
    return enc + sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, b"", nonce, key)


def _xwing_combiner(ss_pq: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_pq + ss_x + ct_x + pk_x + _XWING_LABEL).digest()


def seal_xwing(
    recipient_public: bytes,
    mlkem_ciphertext: bytes,
    mlkem_shared_secret: bytes,
    ephemeral_private: bytes,
    info: bytes,
    plaintext: bytes,
) -> bytes:
    """Single-shot base-mode X-Wing seal from a given ML-KEM encapsulation and X25519 ephemeral.

    X-Wing's encapsulation is an ML-KEM-768 encapsulation plus an X25519
    one.  The X25519 half takes its ephemeral here.  The ML-KEM half cannot:
    FIPS 203's derandomised ``Encaps_internal`` is exposed by no library
    this project may use, and writing ML-KEM here would be a new, unvetted
    implementation.  So the caller supplies the ML-KEM ciphertext and its
    shared secret, from ``cryptography``'s encapsulation or from
    decapsulating chosen bytes, and everything after it is reproduced.
    """
    if len(mlkem_ciphertext) != _MLKEM_CT or len(mlkem_shared_secret) != 32:
        raise ReferenceError("bad_length")
    pk_x = recipient_public[-32:]
    ct_x = sodium.crypto_scalarmult_base(ephemeral_private)
    shared = _xwing_combiner(mlkem_shared_secret, _x25519(ephemeral_private, pk_x), ct_x, pk_x)
    key, nonce = _key_schedule(KEM_XWING, shared, info)
    sealed = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, b"", nonce, key)
    return mlkem_ciphertext + ct_x + sealed


def open_base(kem_id: int, private: bytes, info: bytes, wrap: bytes) -> bytes:
    """Open a wrap for either suite; ``private`` is serialised as the product does."""
    if kem_id == KEM_X25519:
        enc, ciphertext = wrap[:32], wrap[32:]
        recipient_public = sodium.crypto_scalarmult_base(private)
        shared = _dhkem_shared_secret(_x25519(private, enc), enc, recipient_public)
    elif kem_id == KEM_XWING:
        enc, ciphertext = wrap[: _MLKEM_CT + 32], wrap[_MLKEM_CT + 32 :]
        ct_pq, ct_x = enc[:_MLKEM_CT], enc[_MLKEM_CT:]
        sk_x = private[_MLKEM_SEED:]
        ss_x = _x25519(sk_x, ct_x)
        ss_pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:_MLKEM_SEED]).decapsulate(ct_pq)
        pk_x = sodium.crypto_scalarmult_base(sk_x)
        shared = _xwing_combiner(ss_pq, ss_x, ct_x, pk_x)
    else:
        raise ReferenceError("unknown_kem")
    key, nonce = _key_schedule(kem_id, shared, info)
    try:
        return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, b"", nonce, key)
    except CryptoError:
        raise ReferenceError("auth_failure") from None
