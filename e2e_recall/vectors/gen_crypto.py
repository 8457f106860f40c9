"""Vectors for the two encryption layers: message bodies and HPKE wraps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
from cryptography.hazmat.primitives.asymmetric import mlkem

from .. import wire
from ..body import Body, encrypt_body, pad
from ..wrapping import (
    WrapPrivateKey,
    WrapSuite,
    unwrap_message_key,
    wrap_info,
    wrap_length,
)
from .fixtures import SMALL_ORDER_X25519, Context, fixed, flip_bit
from .format import VectorFile, hexify
from .reference_hpke import KEM_X25519, KEM_XWING, open_base, seal_x25519, seal_xwing
from .truncation import add_truncations, sparse_lengths

__all__ = ["body_vectors", "wrap_vectors"]

_MLKEM_CT = 1088
_MLKEM_SEED = 64
_MLKEM_PUBLIC = 1184


def body_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "XChaCha20-Poly1305 message body",
        [
            "Decrypt ciphertext with key and nonce, aad = the canonical header bytes,",
            "then strip the ISO/IEC 7816-4 padding and decode the canonical body map.",
            "Valid tests also re-encrypt: the same inputs must give the same ciphertext.",
        ],
    )
    group = vf.group("BodyDecrypt")
    header = wire.encode({"version": 1, "example": "any header bytes are the associated data"})
    texts = [
        ("empty text", ""),
        ("one character", "a"),
        ("short text", "hello, world"),
        ("non-ASCII text", "Gr\u00fc\u00dfe \U0001f44b \u3053\u3093\u306b\u3061\u306f"),
        ("content fills the first bucket exactly", "x" * 248),
        ("content one byte into the second bucket", "x" * 249),
        ("last 256-byte bucket", "y" * 8180),
        ("first Padme size", "z" * 8200),
    ]
    valid: list[tuple[bytes, bytes, bytes, bytes]] = []
    for comment, text in texts:
        key, nonce = ctx.rng(32), ctx.rng(24)
        _, ct = encrypt_body(Body(text), key, header, rng=fixed(nonce))
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            key=key.hex(),
            nonce=nonce.hex(),
            aad=header.hex(),
            text=text,
            plaintext=pad(Body(text).encode()).hex(),
            ciphertext=ct.hex(),
        )
        valid.append((key, nonce, header, ct))
    key, nonce, aad, ct = valid[2]

    def bad(comment: str, expect: str, flags: list[str], **over: bytes) -> None:
        values = {"key": key, "nonce": nonce, "aad": aad, "ciphertext": ct, **over}
        group.add(comment, expect, flags, **{k: v.hex() for k, v in values.items()})

    bad("first ciphertext bit flipped", "auth_failure", ["Tampered"], ciphertext=flip_bit(ct, 0))
    bad(
        "middle ciphertext bit flipped",
        "auth_failure",
        ["Tampered"],
        ciphertext=flip_bit(ct, len(ct) // 2, 3),
    )
    bad("tag bit flipped", "auth_failure", ["Tampered"], ciphertext=flip_bit(ct, len(ct) - 1, 7))
    bad("nonce bit flipped", "auth_failure", ["Tampered"], nonce=flip_bit(nonce, 5))
    bad("associated data bit flipped", "auth_failure", ["Tampered"], aad=flip_bit(aad, 3))
    bad("empty associated data", "auth_failure", ["Tampered"], aad=b"")
    bad("wrong key", "auth_failure", ["WrongKey"], key=ctx.rng(32))
    bad("nonce of 23 bytes", "decode_failure", ["BadLength"], nonce=nonce[:23])
    bad("key of 31 bytes", "decode_failure", ["BadLength"], key=key[:31])

    def sealed(comment: str, plaintext: bytes, flags: list[str]) -> None:
        k, n = ctx.rng(32), ctx.rng(24)
        c = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, header, n, k)
        group.add(
            comment,
            "decode_failure",
            flags,
            key=k.hex(),
            nonce=n.hex(),
            aad=header.hex(),
            ciphertext=c.hex(),
        )

    good = Body("hi").encode()
    sealed("authentic, but no 0x80 padding marker", good + bytes(256 - len(good)), ["Padding"])
    sealed(
        "authentic, padded one bucket too far", good + b"\x80" + bytes(511 - len(good)), ["Padding"]
    )
    sealed(
        "authentic, padding byte not zero", good + b"\x80\x01" + bytes(254 - len(good)), ["Padding"]
    )
    sealed(
        "authentic, body has an unknown field",
        pad(wire.encode({"text": "hi", "files": [], "x": 1})),
        ["UnknownField"],
    )
    sealed(
        "authentic, text is a byte string",
        pad(wire.encode({"text": b"hi", "files": []})),
        ["TypeConfusion"],
    )
    sealed("authentic, body is not a map", pad(wire.encode(["hi"])), ["TypeConfusion"])
    sealed(
        "authentic, text in a str8 header",
        pad(b"\x82\xa5files\x90\xa4text\xd9\x02hi"),
        ["NonCanonical"],
    )
    sealed("authentic, body map is empty", pad(wire.encode({})), ["MissingField"])
    sealed("authentic, body without files", pad(wire.encode({"text": "hi"})), ["MissingField"])

    cut = vf.group(
        "BodyTruncated",
        note="every proper prefix of one valid ciphertext",
        key=key.hex(),
        nonce=nonce.hex(),
        aad=aad.hex(),
    )
    add_truncations(cut, ct, "ciphertext", what="ciphertext")
    inner = vf.group(
        "BodyTruncated",
        note="every proper prefix of one body map, padded and authentically encrypted",
        key=key.hex(),
        aad=aad.hex(),
    )
    content = Body(texts[2][1]).encode()
    for length in range(len(content)):
        fresh = ctx.rng(24)
        sealed_prefix = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            pad(content[:length]), aad, fresh, key
        )
        inner.add(
            f"body map cut to {length} of {len(content)} bytes",
            "decode_failure",
            ["Truncated"],
            nonce=fresh.hex(),
            ciphertext=sealed_prefix.hex(),
        )
    return vf


_SUITE_NAMES = {
    WrapSuite.X25519: "HPKE wrap, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305",
    WrapSuite.XWING: "HPKE wrap, MLKEM768-X25519 (X-Wing, 0x647a), HKDF-SHA256, ChaCha20-Poly1305",
}


def _previous_wraps(previous: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Known-answer X-Wing tests of an earlier run, keyed by comment, for reuse."""
    found: dict[str, dict[str, Any]] = {}
    for group in (previous or {}).get("testGroups", []):
        if group.get("type") != "WrapOpen":
            continue
        for test in group.get("tests", []):
            if "KnownAnswer" in test.get("flags", ()):
                found[test["comment"]] = test
    return found


_HEADER = [
    "Open the wrap with the recipient's private key and the HPKE info",
    "built from messageId, conversationId, deviceId and keyId (docs/protocol.md, Wrapping).",
    "Private keys are serialised as in the product: the X25519 scalar, or for X-Wing",
    "the 64-byte ML-KEM-768 seed (d || z) followed by the X25519 scalar.",
]
_X25519_HEADER = [
    "Valid tests carry the ephemeral scalar: sealing with it must give the same wrap.",
]
_XWING_HEADER = [
    "Valid tests carry the X25519 ephemeral scalar (ephemeralPrivateKey) and the ML-KEM-768",
    "shared secret (mlkemSharedSecret) of the ML-KEM ciphertext in the wrap's first 1088",
    "bytes: sealing with them must give the same wrap. No library this project may use",
    "takes the ML-KEM encapsulation randomness as an input, so tests flagged KnownAnswer",
    "hold encapsulations drawn from the OS and kept from run to run; a generator starting",
    "from nothing draws new ones. Every other test, including the implicit-rejection wrap",
    "that the invalid tests alter, is reproducible from the seed.",
]


def wrap_vectors(ctx: Context, suite: WrapSuite, previous: dict[str, Any] | None) -> VectorFile:
    xwing = suite is WrapSuite.XWING
    vf = VectorFile(_SUITE_NAMES[suite], _HEADER + (_XWING_HEADER if xwing else _X25519_HEADER))
    reused = _previous_wraps(previous)
    kem_id = KEM_XWING if xwing else KEM_X25519
    recipients = [WrapPrivateKey.generate(suite, ctx.rng) for _ in range(3)]
    group = vf.group("WrapOpen", suite=int(suite))
    cases = []

    def valid(comment: str, private: WrapPrivateKey, mlkem: _Encapsulation | None) -> None:
        ids = {
            "message_id": ctx.new_id(),
            "conversation_id": ctx.new_id(),
            "device_id": ctx.new_id(),
        }
        message_key = ctx.rng(32)
        info = wrap_info(
            ids["message_id"], ids["conversation_id"], ids["device_id"], private.public_key.key_id
        )
        ephemeral = ctx.rng(32)
        extra: dict[str, Any] = {"ephemeralPrivateKey": ephemeral.hex()}
        if mlkem is None:
            wrap = seal_x25519(private.public_key.raw, ephemeral, info, message_key)
            flags = ["Valid", "Deterministic"]
        else:
            wrap = seal_xwing(
                private.public_key.raw, mlkem.ciphertext, mlkem.secret, ephemeral, info, message_key
            )
            extra["mlkemSharedSecret"] = mlkem.secret.hex()
            flags = ["Valid", *mlkem.flags]
        group.add(
            comment,
            "success",
            flags,
            **_wrap_fields(private, ids, info),
            wrap=wrap.hex(),
            messageKey=message_key.hex(),
            **extra,
        )
        cases.append((private, ids, wrap))

    for index in range(4):
        private = recipients[index % len(recipients)]
        comment = f"valid wrap {index + 1}"
        valid(comment, private, _honest(reused.get(comment), private) if xwing else None)
    if xwing:
        # The base of every invalid test below, so that all of them are reproducible.
        valid(
            "ML-KEM ciphertext that encapsulates to no key: implicit rejection (FIPS 203)",
            recipients[0],
            _implicit_rejection(ctx, recipients[0]),
        )

    private, ids, wrap = cases[-1] if xwing else cases[0]
    enc_len = wrap_length(suite) - 48

    def bad(
        comment: str,
        expect: str,
        flags: list[str],
        *,
        key: WrapPrivateKey = private,
        wrap_bytes: bytes = wrap,
        **moved: bytes,
    ) -> None:
        use = {**ids, **moved}
        info = wrap_info(
            use["message_id"], use["conversation_id"], use["device_id"], key.public_key.key_id
        )
        group.add(comment, expect, flags, **_wrap_fields(key, use, info), wrap=wrap_bytes.hex())

    bad(
        "moved to another device", "auth_failure", ["MovedWrap"], device_id=cases[1][1]["device_id"]
    )
    bad(
        "moved to another message",
        "auth_failure",
        ["MovedWrap"],
        message_id=cases[1][1]["message_id"],
    )
    bad(
        "moved to another conversation", "auth_failure", ["MovedWrap"], conversation_id=ctx.new_id()
    )
    bad("opened with another device's key", "auth_failure", ["WrongKey"], key=recipients[1])
    bad(
        "first encapsulation bit flipped",
        "auth_failure",
        ["Tampered"],
        wrap_bytes=flip_bit(wrap, 0, 1),
    )
    bad(
        "last encapsulation byte changed",
        "auth_failure",
        ["Tampered"],
        wrap_bytes=flip_bit(wrap, enc_len - 2, 2),
    )
    bad(
        "ciphertext bit flipped",
        "auth_failure",
        ["Tampered"],
        wrap_bytes=flip_bit(wrap, enc_len + 3),
    )
    bad(
        "tag bit flipped", "auth_failure", ["Tampered"], wrap_bytes=flip_bit(wrap, len(wrap) - 1, 6)
    )
    bad("one byte too long", "decode_failure", ["BadLength"], wrap_bytes=wrap + b"\x00")
    for name, point in SMALL_ORDER_X25519.items():
        bad(
            f"X25519 share of small order ({name})",
            "invalid_key",
            ["ZeroSharedSecret"],
            wrap_bytes=wrap[: enc_len - 32] + point + wrap[enc_len:],
        )

    base_info = wrap_info(
        ids["message_id"], ids["conversation_id"], ids["device_id"], private.public_key.key_id
    )
    # The X-Wing wrap is over a kilobyte: keep the lengths around ct_M, enc and the tag.
    lengths = sparse_lengths(len(wrap), [1088, enc_len, enc_len + 32]) if xwing else None
    cut = vf.group(
        "WrapTruncated",
        note="every proper prefix of one valid wrap (for X-Wing, a sparse set of them)",
        suite=int(suite),
        **_wrap_fields(private, ids, base_info),
    )
    add_truncations(cut, wrap, "wrap", lengths=lengths, what="wrap")

    seal_group = vf.group("WrapRecipientKey", suite=int(suite))
    for name, point in SMALL_ORDER_X25519.items():
        raw = recipients[0].public_key.raw[:-32] + point if xwing else point
        seal_group.add(
            f"recipient X25519 key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            publicKey=raw.hex(),
        )
    seal_group.add(
        "recipient key one byte short",
        "decode_failure",
        ["BadLength"],
        publicKey=recipients[0].public_key.raw[:-1].hex(),
    )
    if xwing:
        bad_pq = b"\xff" * 1184 + recipients[0].public_key.raw[-32:]
        seal_group.add(
            "ML-KEM public key with coefficients >= q",
            "invalid_key",
            ["InvalidKey"],
            publicKey=bad_pq.hex(),
        )
    for private in recipients:
        seal_group.add(
            "valid recipient key",
            "success",
            ["Valid"],
            publicKey=private.public_key.raw.hex(),
            keyId=private.public_key.key_id.hex(),
        )
    _check_reference(kem_id, cases)
    return vf


def _wrap_fields(private: WrapPrivateKey, ids: dict[str, bytes], info: bytes) -> dict[str, Any]:
    return {
        "recipientPrivateKey": private.raw.hex(),
        "recipientPublicKey": private.public_key.raw.hex(),
        "keyId": private.public_key.key_id.hex(),
        "messageId": hexify(ids["message_id"]),
        "conversationId": hexify(ids["conversation_id"]),
        "deviceId": hexify(ids["device_id"]),
        "info": info.hex(),
    }


@dataclass(frozen=True)
class _Encapsulation:
    """An ML-KEM-768 ciphertext, its shared secret, and how it was made (as flags)."""

    ciphertext: bytes
    secret: bytes
    flags: tuple[str, ...]


def _decapsulate(private: WrapPrivateKey, ciphertext: bytes) -> bytes:
    return mlkem.MLKEM768PrivateKey.from_seed_bytes(private.raw[:_MLKEM_SEED]).decapsulate(
        ciphertext
    )


def _honest(previous: dict[str, Any] | None, private: WrapPrivateKey) -> _Encapsulation:
    """An honest encapsulation to ``private``: an earlier run's if it was to this key, else new.

    ``cryptography`` draws the encapsulation randomness itself, so a new one
    differs every run; keeping the earlier one keeps the files stable.
    """
    if previous is not None and previous.get("recipientPublicKey") == private.public_key.raw.hex():
        ciphertext = bytes.fromhex(previous["wrap"])[:_MLKEM_CT]
        secret = _decapsulate(private, ciphertext)
        if previous.get("mlkemSharedSecret") in (None, secret.hex()):
            return _Encapsulation(ciphertext, secret, ("KnownAnswer",))
    public = mlkem.MLKEM768PublicKey.from_public_bytes(private.public_key.raw[:_MLKEM_PUBLIC])
    secret, ciphertext = public.encapsulate()
    return _Encapsulation(ciphertext, secret, ("KnownAnswer",))


def _implicit_rejection(ctx: Context, private: WrapPrivateKey) -> _Encapsulation:
    """Seeded bytes as the ML-KEM ciphertext: its secret is the implicit rejection J(z || c).

    Only the holder of the private key can seal to such a secret, so this is
    no attack; it checks that decapsulation follows FIPS 203 (a derived key,
    not an error) and it is the one X-Wing wrap a seed fully determines.
    """
    ciphertext = ctx.rng(_MLKEM_CT)
    return _Encapsulation(
        ciphertext,
        _decapsulate(private, ciphertext),
        ("Deterministic", "ImplicitRejection"),
    )


def _check_reference(
    kem_id: int, cases: list[tuple[WrapPrivateKey, dict[str, bytes], bytes]]
) -> None:
    """Refuse to write vectors the product and the reference disagree on."""
    for private, ids, wrap in cases:
        info = wrap_info(
            ids["message_id"], ids["conversation_id"], ids["device_id"], private.public_key.key_id
        )
        if open_base(kem_id, private.raw, info, wrap) != unwrap_message_key(wrap, private, **ids):
            raise AssertionError("reference HPKE and cryptography disagree")
