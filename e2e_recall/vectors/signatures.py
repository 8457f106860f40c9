"""Signature-level fields every signed vector carries, and the hostile variants.

Each signed vector states exactly which bytes were signed (label included),
the signature, the key it is checked against, and whether a protocol-strict
verifier accepts that signature.  That lets another implementation -- or our
own checker using OpenSSL instead of libsodium -- test the signature step on
its own, apart from everything decoded after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidKey, SignatureInvalid
from ..signing import SigningKey, VerifyKey
from .fixtures import (
    SMALL_ORDER_ED25519,
    Context,
    container,
    flip_bit,
    forge_small_order_r,
    forge_torsion_r,
    malleate,
)
from .format import Group

__all__ = ["SignedCase", "add_signature_attacks", "signature_fields"]


def signature_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """The implementation's verdict on the signature step alone."""
    try:
        VerifyKey(public_key).verify(
            message[: _label_len(message)], message[_label_len(message) :], signature
        )
    except (InvalidKey, SignatureInvalid):
        return False
    return True


def _label_len(message: bytes) -> int:
    return message.index(b"\x00") + 1


def signature_fields(
    public_key: bytes, message: bytes, signature: bytes, signer: SigningKey | None = None
) -> dict[str, Any]:
    """The signature step of a vector; ``signer`` adds its seed, so signing can be redone.

    Ed25519 signing is deterministic (RFC 8032): anyone holding the seed and
    ``signedMessage`` must produce exactly ``signature``.  Valid vectors pass
    their signer; hostile ones (forged, malleated, mis-labelled) do not,
    because no honest signer made them.
    """
    fields = {
        "signerPublicKey": public_key.hex(),
        "signedMessage": message.hex(),
        "signature": signature.hex(),
        "signatureValid": signature_valid(public_key, message, signature),
    }
    if signer is not None:
        if (
            signer.public_key.raw != public_key
            or signer.sign(message[: _label_len(message)], message[_label_len(message) :])
            != signature
        ):
            raise AssertionError("the stated signer did not make this signature")
        fields["signerPrivateKey"] = signer.seed.hex()
    return fields


class SignedCase:
    """A signed object made by ``signer`` under ``label`` over ``body`` bytes."""

    def __init__(self, signer: SigningKey, label: bytes, body: bytes) -> None:
        self.signer = signer
        self.label = label
        self.body = body
        self.signature = signer.sign(label, body)

    @property
    def wire(self) -> bytes:
        return container(self.body, self.signature)

    def fields(self, verify_with: bytes | None = None, *, seed: bool = False) -> dict[str, Any]:
        """The test fields; ``seed`` states the signer's seed (for valid tests)."""
        key = self.signer.public_key.raw if verify_with is None else verify_with
        signer = self.signer if seed else None
        return {
            "signed": self.wire.hex(),
            **signature_fields(key, self.label + self.body, self.signature, signer),
        }


def add_signature_attacks(
    ctx: Context,
    group: Group,
    case: SignedCase,
    other_labels: list[bytes],
    extra: Callable[[], dict[str, Any]],
    *,
    key_attacks: bool = True,
) -> None:
    """The attacks common to every signed container, as invalid tests in ``group``.

    ``extra`` supplies the group-specific fields (expected ids and such) that
    a test of this group needs besides the signed bytes.  ``key_attacks``
    adds tests that substitute the verifying key; groups whose key comes from
    elsewhere (a deletion receipt is checked with its device certificate's
    key) leave them out.
    """
    pk = case.signer.public_key.raw

    def add(
        comment: str,
        expect: str,
        flags: list[str],
        body: bytes,
        signature: bytes,
        key: bytes = pk,
        label: bytes = case.label,
    ) -> None:
        group.add(
            comment,
            expect,
            flags,
            signed=container(body, signature).hex(),
            **{**signature_fields(key, label + body, signature), **extra()},
        )

    add("signature S + L", "bad_signature", ["Malleable"], case.body, malleate(case.signature))
    add(
        "small-order R that OpenSSL accepts",
        "bad_signature",
        ["SmallOrderR"],
        case.body,
        forge_small_order_r(case.signer, case.label + case.body),
    )
    add(
        "R with a torsion component (cofactored verifiers accept)",
        "bad_signature",
        ["TorsionR"],
        case.body,
        forge_torsion_r(case.signer, case.label + case.body),
    )
    add(
        "first signature bit flipped",
        "bad_signature",
        ["Tampered"],
        case.body,
        flip_bit(case.signature, 0),
    )
    add(
        "last signature bit flipped",
        "bad_signature",
        ["Tampered"],
        case.body,
        flip_bit(case.signature, 63, 6),
    )
    for index in (0, len(case.body) // 2, len(case.body) - 1):
        add(
            f"body byte {index} flipped",
            "bad_signature",
            ["Tampered"],
            flip_bit(case.body, index, 1),
            case.signature,
        )
    for label in other_labels:
        name = label.decode().rstrip("\x00").rsplit("/", 1)[-1]
        add(
            f"signed under the {name} label",
            "bad_signature",
            ["PrefixConfusion"],
            case.body,
            case.signer.sign(label, case.body),
        )
    if not key_attacks:
        return
    add(
        "verified with another party's key",
        "bad_signature",
        ["WrongKey"],
        case.body,
        case.signature,
        key=ctx.carol.public_key.raw,
    )
    for name, point in SMALL_ORDER_ED25519.items():
        add(
            f"signer key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            case.body,
            case.signature,
            key=point,
        )
