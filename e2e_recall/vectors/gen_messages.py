"""Vectors for envelopes (signed header + encrypted body)."""

from __future__ import annotations

from typing import Any

import msgpack

from .. import wire
from ..body import Body, encrypt_body
from ..domains import SIG_DELETION_RECEIPT, SIG_ENVELOPE, SIG_REVOCATION
from ..envelope import Header, signed_envelope_bytes
from ..signing import SigningKey
from .fixtures import (
    DAY,
    HOUR,
    NON_CANONICAL_ED25519,
    SMALL_ORDER_ED25519,
    T0,
    Context,
    flip_bit,
    forge_mixed_order_key,
    forge_small_order_r,
    forge_torsion_r,
    malleate,
)
from .format import VectorFile
from .signatures import signature_fields
from .truncation import add_truncations

__all__ = ["Envelope", "envelope_vectors", "expected_fields", "header_dict"]


def header_dict(ctx: Context, author: SigningKey, **over: Any) -> dict[str, Any]:
    base = Header(
        message_id=ctx.new_id(),
        conversation_id=ctx.conversation,
        sender=ctx.uid(author),
        sender_device=ctx.alice_device.device_id,
        sent_at=T0,
        recall_sealed_until=T0 + 7 * DAY,
        recall_opened_until=T0 + HOUR,
    ).to_wire()
    base.update(over)
    return base


class Envelope:
    """An envelope built from raw header bytes, so broken headers can be signed."""

    def __init__(
        self,
        ctx: Context,
        signer: SigningKey,
        header: bytes,
        text: str = "see you at noon",
        key_and_nonce: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.key, self.nonce = key_and_nonce or (ctx.rng(32), ctx.rng(24))
        self.header = header
        self.text = text
        _, self.ciphertext = encrypt_body(Body(text), self.key, header, rng=lambda n: self.nonce)
        self.message = signed_envelope_bytes(header, self.nonce, self.ciphertext)
        self.signer = signer
        self.signature = signer.sign(SIG_ENVELOPE, self.message[len(SIG_ENVELOPE) :])

    def wire(self, **over: bytes) -> bytes:
        fields = {
            "header": self.header,
            "nonce": self.nonce,
            "ciphertext": self.ciphertext,
            "signature": self.signature,
            **over,
        }
        return wire.encode(fields)

    def fields(
        self,
        signature: bytes | None = None,
        key: bytes | None = None,
        *,
        seed: bool = False,
        **over: bytes,
    ) -> dict[str, Any]:
        """Test fields; ``seed`` (valid tests) states the signer's seed to re-seal with."""
        signature = self.signature if signature is None else signature
        key = self.signer.public_key.raw if key is None else key
        header = over.get("header", self.header)
        nonce = over.get("nonce", self.nonce)
        ciphertext = over.get("ciphertext", self.ciphertext)
        message = signed_envelope_bytes(header, nonce, ciphertext)
        return {
            "envelope": self.wire(signature=signature, **over).hex(),
            "messageKey": self.key.hex(),
            **signature_fields(key, message, signature, self.signer if seed else None),
        }


def expected_fields(header: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "expected": {
            "messageId": header["message_id"].hex(),
            "conversationId": header["conversation_id"].hex(),
            "sender": header["sender"].hex(),
            "senderDevice": header["sender_device"].hex(),
            "sentAt": header["sent_at"],
            "recallSealedUntil": header["recall_sealed_until"],
            "recallOpenedUntil": header["recall_opened_until"],
            "kind": header["kind"],
            "replaces": None if header["replaces"] is None else header["replaces"].hex(),
            "expireAfter": header["expire_after"],
            "expireFrom": header["expire_from"],
            "text": text,
        }
    }


def envelope_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Envelope: Ed25519-signed header, XChaCha20-Poly1305 body",
        [
            "Verify the envelope's signature with signerPublicKey on the exact header bytes,",
            "then decode the header, check that its sender is the signer's fingerprint,",
            "and decrypt the body with messageKey. signedMessage is what the signature covers.",
        ],
    )
    group = vf.group("EnvelopeOpen")
    alice = ctx.alice
    valid_headers = [
        ("text message", header_dict(ctx, alice), "see you at noon"),
        (
            "replacement message",
            header_dict(ctx, alice, kind="replacement", replaces=ctx.new_id()),
            "see you at one, not noon",
        ),
        (
            "windows equal to sent_at",
            header_dict(ctx, alice, recall_sealed_until=T0, recall_opened_until=T0),
            "x",
        ),
        ("non-ASCII text", header_dict(ctx, alice), "\u00e0 bient\u00f4t \u2615"),
    ]
    for comment, header, text in valid_headers:
        env = Envelope(ctx, alice, wire.encode(header), text)
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            **env.fields(seed=True),
            **expected_fields(header, text),
        )

    base_header = header_dict(ctx, alice)
    env = Envelope(ctx, alice, wire.encode(base_header))
    group.add(
        "signature S + L", "bad_signature", ["Malleable"], **env.fields(malleate(env.signature))
    )
    group.add(
        "small-order R that OpenSSL accepts",
        "bad_signature",
        ["SmallOrderR"],
        **env.fields(forge_small_order_r(alice, env.message)),
    )
    group.add(
        "R with a torsion component (cofactored verifiers accept)",
        "bad_signature",
        ["TorsionR"],
        **env.fields(forge_torsion_r(alice, env.message)),
    )
    group.add(
        "signature bit flipped",
        "bad_signature",
        ["Tampered"],
        **env.fields(flip_bit(env.signature, 10)),
    )
    for index in (0, 20, len(env.header) - 1):
        group.add(
            f"header byte {index} flipped",
            "bad_signature",
            ["Tampered"],
            **env.fields(header=flip_bit(env.header, index, 2)),
        )
    group.add(
        "nonce bit flipped",
        "bad_signature",
        ["Tampered"],
        **env.fields(nonce=flip_bit(env.nonce, 0)),
    )
    group.add(
        "ciphertext bit flipped",
        "bad_signature",
        ["Tampered"],
        **env.fields(ciphertext=flip_bit(env.ciphertext, 7)),
    )
    group.add(
        "verified with another sender's key",
        "bad_signature",
        ["WrongKey"],
        **env.fields(key=ctx.carol.public_key.raw),
    )
    for label in (SIG_REVOCATION, SIG_DELETION_RECEIPT):
        name = label.decode().rstrip("\x00").rsplit("/", 1)[-1]
        group.add(
            f"signed under the {name} label",
            "bad_signature",
            ["PrefixConfusion"],
            **env.fields(alice.sign(label, env.message[len(SIG_ENVELOPE) :])),
        )
    for name, point in SMALL_ORDER_ED25519.items():
        group.add(
            f"sender key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            **env.fields(key=point),
        )
    group.add(
        "sender key not canonical",
        "invalid_key",
        ["NonCanonicalKey"],
        **env.fields(key=NON_CANONICAL_ED25519),
    )
    _mixed_order_case(ctx, group)

    wrong = Envelope(ctx, ctx.bob, wire.encode(header_dict(ctx, alice)))
    group.add(
        "signed by Bob, header names Alice as sender",
        "wrong_signer",
        ["WrongSigner"],
        **wrong.fields(),
    )
    group.add(
        "authentic, opened with the wrong message key",
        "auth_failure",
        ["WrongKey"],
        **{**env.fields(), "messageKey": ctx.rng(32).hex()},
    )

    def signed_header(comment: str, expect: str, flags: list[str], header: bytes) -> None:
        group.add(comment, expect, flags, **Envelope(ctx, alice, header).fields())

    signed_header(
        "header version 2",
        "unsupported_version",
        ["UnknownVersion"],
        wire.encode(header_dict(ctx, alice, version=2)),
    )
    signed_header(
        "header with an unknown field",
        "decode_failure",
        ["UnknownField"],
        wire.encode(header_dict(ctx, alice, colour="red")),
    )
    no_kind = header_dict(ctx, alice)
    del no_kind["kind"]
    signed_header("header without kind", "decode_failure", ["MissingField"], wire.encode(no_kind))
    signed_header(
        "sender as a string",
        "decode_failure",
        ["TypeConfusion"],
        wire.encode(header_dict(ctx, alice, sender=ctx.uid(alice).hex())),
    )
    signed_header(
        "message id of 15 bytes",
        "decode_failure",
        ["BadLength"],
        wire.encode(header_dict(ctx, alice, message_id=bytes(15))),
    )
    signed_header(
        "opened window after sealed window",
        "decode_failure",
        ["HeaderRule"],
        wire.encode(header_dict(ctx, alice, recall_opened_until=T0 + 8 * DAY)),
    )
    signed_header(
        "window before sent_at",
        "decode_failure",
        ["HeaderRule"],
        wire.encode(header_dict(ctx, alice, recall_opened_until=T0 - 1)),
    )
    signed_header(
        "replacement without replaces",
        "decode_failure",
        ["HeaderRule"],
        wire.encode(header_dict(ctx, alice, kind="replacement")),
    )
    signed_header(
        "text message with replaces",
        "decode_failure",
        ["HeaderRule"],
        wire.encode(header_dict(ctx, alice, replaces=ctx.new_id())),
    )
    same = ctx.new_id()
    signed_header(
        "replaces itself",
        "decode_failure",
        ["HeaderRule"],
        wire.encode(header_dict(ctx, alice, message_id=same, kind="replacement", replaces=same)),
    )
    signed_header(
        "unknown kind",
        "decode_failure",
        ["UnknownValue"],
        wire.encode(header_dict(ctx, alice, kind="gif")),
    )
    canonical = wire.encode(header_dict(ctx, alice))
    signed_header(
        "header with trailing byte", "decode_failure", ["TrailingBytes"], canonical + b"\xc0"
    )
    signed_header(
        "header keys unsorted",
        "decode_failure",
        ["NonCanonical"],
        _unsorted(header_dict(ctx, alice)),
    )

    group.add(
        "envelope with an unknown field",
        "decode_failure",
        ["UnknownField"],
        **{**env.fields(), "envelope": wire.encode({**_envelope_map(env), "x": b""}).hex()},
    )
    missing = _envelope_map(env)
    del missing["signature"]
    group.add(
        "envelope without signature",
        "decode_failure",
        ["MissingField"],
        **{**env.fields(), "envelope": wire.encode(missing).hex()},
    )
    group.add(
        "nonce of 23 bytes", "decode_failure", ["BadLength"], **env.fields(nonce=env.nonce[:23])
    )
    good = env.wire()
    group.add(
        "envelope with trailing byte",
        "decode_failure",
        ["TrailingBytes"],
        **{**env.fields(), "envelope": (good + b"\x00").hex()},
    )
    _truncations(ctx, vf, env)
    return vf


def _truncations(ctx: Context, vf: VectorFile, env: Envelope) -> None:
    """Every prefix of one envelope, and every prefix of its header signed as if whole.

    The second kind passes the signature check (the sender signed exactly
    those bytes), so it reaches the header decoder, which must refuse it.
    """
    shared = {"signerPublicKey": env.signer.public_key.raw.hex(), "messageKey": env.key.hex()}
    cut = vf.group("EnvelopeTruncated", note="every proper prefix of one valid envelope", **shared)
    add_truncations(cut, env.wire(), "envelope", what="envelope")
    signed = vf.group(
        "EnvelopeTruncated",
        note="every proper prefix of one header, each signed by the sender as a whole header",
        **shared,
    )
    for length in range(len(env.header)):
        prefix = Envelope(ctx, env.signer, env.header[:length], key_and_nonce=(env.key, env.nonce))
        signed.add(
            f"header cut to {length} of {len(env.header)} bytes, then signed",
            "decode_failure",
            ["Truncated"],
            envelope=prefix.wire().hex(),
        )


def _envelope_map(env: Envelope) -> dict[str, bytes]:
    return {
        "header": env.header,
        "nonce": env.nonce,
        "ciphertext": env.ciphertext,
        "signature": env.signature,
    }


def _unsorted(header: dict[str, Any]) -> bytes:
    """Encode a map with its keys in reverse order (not canonical)."""
    return msgpack.packb(dict(reversed(list(header.items()))), use_bin_type=True)


def _mixed_order_case(ctx: Context, group: Any) -> None:
    """A sender key A + T8 whose signature OpenSSL accepts; the protocol must not."""
    key_nonce, body_key = ctx.rng(24), ctx.rng(32)
    state: dict[str, bytes] = {}

    def payload_for(sender: bytes) -> bytes:
        header = wire.encode(header_dict(ctx, ctx.alice, sender=sender))
        _, ct = encrypt_body(Body("mixed"), body_key, header, rng=lambda n: key_nonce)
        state.update(header=header, ciphertext=ct)
        return signed_envelope_bytes(header, key_nonce, ct)[len(SIG_ENVELOPE) :]

    mixed, payload, signature = forge_mixed_order_key(ctx.alice, SIG_ENVELOPE, payload_for)
    envelope = wire.encode(
        {
            "header": state["header"],
            "nonce": key_nonce,
            "ciphertext": state["ciphertext"],
            "signature": signature,
        }
    )
    group.add(
        "sender key of mixed order, signature OpenSSL accepts",
        "invalid_key",
        ["MixedOrderKey"],
        envelope=envelope.hex(),
        messageKey=body_key.hex(),
        **signature_fields(mixed, SIG_ENVELOPE + payload, signature),
    )
