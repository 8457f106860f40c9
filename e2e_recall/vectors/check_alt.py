"""Check the vectors with the library the implementation does not use.

Where both PyNaCl and ``cryptography`` implement a primitive, the product
uses one; this checker uses the other, so an agreement between the two is
evidence about the vectors and not an echo of one library:

* Ed25519 -- the product verifies with libsodium; here the equation is
  checked by OpenSSL and the protocol's strictness rules by
  :mod:`.ed25519_alt`.  Every test that states ``signatureValid`` is checked,
  and where a test states its signer's seed, OpenSSL signs again and must
  give the same signature.
* X25519 inside HPKE -- the product uses ``cryptography``'s HPKE; here
  :mod:`.reference_hpke` (libsodium X25519 and ChaCha20-Poly1305, stdlib
  HKDF) opens every wrap, and re-seals valid ones from their stated
  ephemeral (and, for X-Wing, their stated ML-KEM secret, which is first
  checked against the ciphertext by decapsulating it).
* Fingerprints and safety numbers are recomputed with ``hashlib``.

Tests with nothing for this checker (message bodies: only libsodium has
XChaCha20-Poly1305) report ``"n/a"`` and are not counted.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import nacl.bindings as sodium
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import CryptoError

from .check import with_group_inputs
from .ed25519_alt import strict_public_key_ok, strict_verify
from .reference_hpke import (
    KEM_X25519,
    KEM_XWING,
    ReferenceError,
    open_base,
    seal_x25519,
    seal_xwing,
)

__all__ = ["run_alt"]

NOT_APPLICABLE = "n/a"
_FINGERPRINT = b"e2e-recall/v1/hash/fingerprint\x00"
_SAFETY = b"e2e-recall/v1/hash/safety-number\x00"
_DIRECT = b"e2e-recall/v1/hash/direct-conversation\x00"
_WRAP_INFO = b"e2e-recall/v1/hpke/wrap\x00"
_KEY_ID = b"e2e-recall/v1/hash/wrap-key-id\x00"
_GROUP_CHANGE = b"e2e-recall/v1/hash/group-change\x00"
_GROUP_CONVERSATION = b"e2e-recall/v1/hash/group-conversation\x00"
_WRAP_LEN = {1: 32 + 48, 2: 1120 + 48}
_PUBLIC_LEN = {1: 32, 2: 1216}
_PROBE = bytes(range(1, 33))
_MLKEM_CT = 1088


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _verdict(ok: bool, test: dict[str, Any], what: str) -> str | None:
    if ok == (test["expect"] == "success"):
        return None
    verdict = "valid" if ok else "invalid"
    return f"{what}: the other library says {verdict}, the vector says {test['expect']}"


def _signature(test: dict[str, Any]) -> str | None:
    ok = strict_verify(
        _h(test["signerPublicKey"]), _h(test["signedMessage"]), _h(test["signature"])
    )
    if ok != test["signatureValid"]:
        return f"OpenSSL strict verification says {ok}, signatureValid is {test['signatureValid']}"
    if "signerPrivateKey" in test:
        signer = Ed25519PrivateKey.from_private_bytes(_h(test["signerPrivateKey"]))
        if signer.public_key().public_bytes_raw().hex() != test["signerPublicKey"]:
            return "OpenSSL derives another public key from signerPrivateKey"
        if signer.sign(_h(test["signedMessage"])).hex() != test["signature"]:
            return "OpenSSL signing signedMessage with signerPrivateKey gives another signature"
    return None


def _safety_digits(key: bytes) -> str:
    value = _SAFETY + key
    for _ in range(5200):
        value = hashlib.sha512(value + key).digest()
    return "".join(
        f"{int.from_bytes(value[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def _safety(test: dict[str, Any]) -> str | None:
    a, b = _h(test["keyA"]), _h(test["keyB"])
    ok = strict_public_key_ok(a) and strict_public_key_ok(b)
    if not ok or test["expect"] != "success":
        return _verdict(ok, test, "key validation")
    fa, fb = hashlib.sha256(_FINGERPRINT + a).digest(), hashlib.sha256(_FINGERPRINT + b).digest()
    digits = "".join(sorted((_safety_digits(a), _safety_digits(b))))
    number = " ".join(digits[i : i + 5] for i in range(0, 60, 5))
    conversation = hashlib.sha256(_DIRECT + min(fa, fb) + max(fa, fb)).digest()[:16]
    got = (fa.hex(), fb.hex(), number, conversation.hex())
    want = (
        test["fingerprintA"],
        test["fingerprintB"],
        test["safetyNumber"],
        test["directConversationId"],
    )
    return None if got == want else "fingerprint, safety number or conversation id differs"


def _x25519_small_order(point: bytes) -> bool:
    try:
        sodium.crypto_scalarmult(_PROBE, point)
    except CryptoError:
        return True
    return False


def _wrap_open(group: dict[str, Any], test: dict[str, Any]) -> str | None:
    suite = group["suite"]
    kem = KEM_X25519 if suite == 1 else KEM_XWING
    key_id = hashlib.sha256(
        _KEY_ID + struct.pack(">H", suite) + _h(test["recipientPublicKey"])
    ).digest()[:16]
    info = (
        _WRAP_INFO
        + b"\x01"
        + _h(test["messageId"])
        + _h(test["conversationId"])
        + _h(test["deviceId"])
        + key_id
    )
    if info.hex() != test["info"] or key_id.hex() != test["keyId"]:
        return "HPKE info or key id differs from the spec's construction"
    wrap = _h(test["wrap"])
    if len(wrap) != _WRAP_LEN[suite]:
        return None if test["expect"] == "decode_failure" else "wrong length accepted by the vector"
    try:
        key = open_base(kem, _h(test["recipientPrivateKey"]), info, wrap)
    except ReferenceError as exc:
        got = "invalid_key" if exc.args[0] == "zero_shared_secret" else "auth_failure"
        return (
            None
            if got == test["expect"]
            else f"reference HPKE says {got}, the vector says {test['expect']}"
        )
    if test["expect"] != "success" or key.hex() != test["messageKey"]:
        return "reference HPKE opened it to a different result"
    if "ephemeralPrivateKey" in test:
        again = _reseal(suite, test, info, wrap, key)
        if again != wrap:
            return "reference HPKE seal with the stated ephemeral gives other bytes"
    return None


def _reseal(suite: int, test: dict[str, Any], info: bytes, wrap: bytes, key: bytes) -> bytes:
    """Seal again from the vector's stated randomness (and, for X-Wing, its ML-KEM secret)."""
    public, ephemeral = _h(test["recipientPublicKey"]), _h(test["ephemeralPrivateKey"])
    if suite == 1:
        return seal_x25519(public, ephemeral, info, key)
    ciphertext, secret = wrap[:_MLKEM_CT], _h(test["mlkemSharedSecret"])
    private = mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(test["recipientPrivateKey"])[:64])
    if private.decapsulate(ciphertext) != secret:
        return b"mlkemSharedSecret is not what the wrap's ML-KEM ciphertext decapsulates to"
    return seal_xwing(public, ciphertext, secret, ephemeral, info, key)


def _wrap_key(group: dict[str, Any], test: dict[str, Any]) -> str | None:
    suite, raw = group["suite"], _h(test["publicKey"])
    if len(raw) != _PUBLIC_LEN[suite]:
        return None if test["expect"] == "decode_failure" else "wrong length accepted by the vector"
    ok = not _x25519_small_order(raw[-32:])
    if ok and suite == 2:
        try:
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184])
        except ValueError:
            ok = False
    return _verdict(ok, test, "recipient key validation")


def run_alt(group: dict[str, Any], test: dict[str, Any]) -> str | None:
    """Check one test with the other library; ``"n/a"`` when there is nothing to check."""
    test = with_group_inputs(group, test)
    if "signedMessage" in test:
        return _signature(test)
    if "signatureChecks" in test:
        for check in test["signatureChecks"]:
            problem = _signature(check)
            if problem is not None:
                return problem
        return None
    kind = group["type"]
    if kind == "SafetyNumber":
        return _safety(test)
    if kind in ("WrapOpen", "WrapTruncated"):
        return _wrap_open(group, test)
    if kind == "WrapRecipientKey":
        return _wrap_key(group, test)
    if kind == "GroupChain" and test["expect"] == "success":
        return _group_chain(test)
    return NOT_APPLICABLE


def _group_chain(test: dict[str, Any]) -> str | None:
    """A valid chain's links and conversation id, recomputed with hashlib from the spec."""
    expected = test["expected"]
    digests = [hashlib.sha256(_GROUP_CHANGE + _h(c)).hexdigest() for c in test["changes"]]
    if digests != expected["digests"] or digests[-1] != expected["head"]:
        return "group change digests differ from SHA-256(HASH_GROUP_CHANGE || change)"
    conversation = hashlib.sha256(_GROUP_CONVERSATION + _h(expected["groupId"])).digest()[:16]
    if conversation.hex() != expected["conversationId"]:
        return "group conversation id differs from the spec's construction"
    return None
