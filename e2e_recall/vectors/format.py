"""The shape of a vector file, in the manner of Wycheproof.

A file is ``{"algorithm", "schema", "protocolVersion", "generator",
"numberOfTests", "header", "notes", "testGroups": [{"type", ..., "tests":
[{"tcId", "comment", "flags", "result", "expect", ...}]}]}``.  Byte strings
are lowercase hex.  ``result`` is ``valid`` or ``invalid``; ``expect`` names
the error class (see :mod:`e2e_recall.errors`) or ``success``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..domains import PROTOCOL_VERSION

__all__ = ["FLAG_NOTES", "SCHEMA", "Group", "VectorFile", "dumps", "hexify"]

SCHEMA = "e2e-recall-vectors/1"

FLAG_NOTES: dict[str, tuple[str, str]] = {
    "Valid": ("Basic", "A well-formed input that must be accepted with the given outputs."),
    "Deterministic": (
        "Basic",
        "Every secret and random input is in the vector (signer seeds included): signing and"
        " encrypting again with them must reproduce the bytes exactly.",
    ),
    "KnownAnswer": (
        "Basic",
        "An honest ML-KEM-768 encapsulation drawn from the OS (no usable library takes its"
        " randomness): sealing from the stated ML-KEM secret and X25519 ephemeral reproduces"
        " the wrap, but regenerating from the seed alone draws another encapsulation.",
    ),
    "ImplicitRejection": (
        "EdgeCase",
        "An ML-KEM ciphertext that is no encapsulation to the key: FIPS 203 decapsulation"
        " returns the implicit-rejection secret, not an error, and the wrap was sealed to it.",
    ),
    "Tampered": ("Authentication", "One bit of an authenticated or signed byte was flipped."),
    "WrongKey": ("Authentication", "Opened or verified with a key it was not made for."),
    "MovedWrap": (
        "Context",
        "A wrap presented for another device, message or conversation than its HPKE info binds.",
    ),
    "ZeroSharedSecret": (
        "EdgeCase",
        "An X25519 share of small order, so the Diffie-Hellman result is all zero.",
    ),
    "SmallOrderKey": ("EdgeCase", "A public key of small order (1, 2, 4 or 8)."),
    "MixedOrderKey": (
        "EdgeCase",
        "An Ed25519 public key with a torsion component; lax verifiers accept some signatures.",
    ),
    "NonCanonicalKey": ("EdgeCase", "A key encoding with y >= p."),
    "InvalidKey": ("EdgeCase", "A key that does not parse for its algorithm."),
    "Malleable": ("SignatureMalleability", "S replaced by S + L; strict verifiers require S < L."),
    "SmallOrderR": (
        "SignatureMalleability",
        "R is a small-order point; OpenSSL accepts this signature, libsodium does not.",
    ),
    "TorsionR": (
        "SignatureMalleability",
        "R is an honest R plus a point of order 8: cofactored checks accept it, strict do not.",
    ),
    "ImpossibleTransition": (
        "StateMachine",
        "An event that cannot happen in this state; it must be refused, not applied.",
    ),
    "PrefixConfusion": (
        "DomainSeparation",
        "A valid signature made under another purpose's label.",
    ),
    "WrongSigner": (
        "Authorization",
        "A valid signature by a party not allowed to sign this object.",
    ),
    "WrongContext": (
        "Context",
        "An authentic object presented for another message, conversation or revocation.",
    ),
    "Truncated": ("Encoding", "The encoding is cut short."),
    "TrailingBytes": ("Encoding", "Bytes follow the complete value."),
    "NonCanonical": ("Encoding", "A value encoded in a form other than the canonical one."),
    "DuplicateKey": ("Encoding", "A map repeats a key."),
    "UnknownField": ("Encoding", "A map has a key the structure does not define."),
    "MissingField": ("Encoding", "A map lacks a key the structure requires."),
    "TypeConfusion": ("Encoding", "A value of the wrong msgpack type (for example str for bin)."),
    "BadLength": ("Encoding", "A byte string of the wrong length."),
    "UnknownVersion": ("Versioning", "A version this protocol does not define."),
    "DepthBomb": ("Resource", "Nesting deeper than the limit of 32."),
    "HugeLength": ("Resource", "A declared length far beyond the input or the limits."),
    "TooLarge": ("Resource", "Input longer than the limit for the structure."),
    "ExtType": ("Encoding", "A msgpack extension type (including the timestamp)."),
    "Float": ("Encoding", "A floating-point value; the protocol has none."),
    "NonStringKey": ("Encoding", "A map key that is not a string."),
    "InvalidUtf8": ("Encoding", "A string that is not valid UTF-8."),
    "ReservedByte": ("Encoding", "The msgpack byte 0xc1, which is never used."),
    "Padding": ("Encoding", "Malformed body padding inside a valid ciphertext."),
    "HeaderRule": (
        "Semantics",
        "A signed header that breaks a rule (window order, replacement fields).",
    ),
    "Timer": (
        "Semantics",
        "A disappearing-message timer in the header (expire_after, expire_from).",
    ),
    "TimerEdge": ("Semantics", "A timer at or just past its allowed range, or its instant."),
    "Legacy": (
        "Compatibility",
        "Bytes signed or sealed before a field was added, which must still be read.",
    ),
    "TimerExpired": (
        "RecallRule",
        "A recall of a message its timer already destroyed: accepted, changing nothing.",
    ),
    "WindowEdge": ("RecallRule", "At or just past a recall deadline."),
    "WindowClosed": ("RecallRule", "The recall window for the message's state has closed."),
    "PolicyCap": ("RecallRule", "The relay's policy caps the sender's own window."),
    "OnlyWhileUnread": ("RecallRule", "The relay only recalls messages no device has opened."),
    "RateLimited": ("RecallRule", "The per-conversation daily recall limit is reached."),
    "Idempotent": ("RecallRule", "A second recall of an already recalled message succeeds."),
    "Replay": (
        "RecallRule",
        "A replayed revocation: the exact bytes of one accepted before (a repeat for its own"
        " message, wrong_context for any other), or one older than the message (replay).",
    ),
    "FromFuture": ("RecallRule", "A revocation dated beyond the allowed clock skew."),
    "Expired": ("Validity", "Outside the certificate's validity period."),
    "SameWrapKey": ("Rotation", "A rotated certificate that keeps the current wrapping key."),
    "NotLater": ("Rotation", "A rotated certificate not created after the current one."),
    "OtherDevice": ("Rotation", "A rotated certificate for another device id."),
    "SigningKeyChanged": ("Rotation", "A rotated certificate with another device signing key."),
    "NoExpiry": ("Rotation", "A rotated certificate without an expiry."),
    "LifetimeTooLong": ("Rotation", "A rotated certificate living longer than the relay allows."),
    "Unsorted": ("Encoding", "A list that must be sorted and unique is not."),
    "Typo": (
        "Input",
        "A link code with a changed, swapped, missing, extra or foreign symbol: bad_code.",
    ),
    "UnknownValue": ("Encoding", "A string field with a value outside its enumeration."),
    "ChunkReordered": ("Stream", "Two chunks of an authentic blob swapped."),
    "ChunkDuplicated": ("Stream", "A chunk of an authentic blob repeated."),
    "ChunkSubstituted": (
        "Stream",
        "A chunk, header or blob of another file or another message put in place of this one's.",
    ),
    "WrongFileIndex": ("Context", "A blob opened as another position of the body's files list."),
    "StreamTag": (
        "Stream",
        "An authentic chunk with the wrong secretstream tag (FINAL too early, missing, or other).",
    ),
    "SizeLie": (
        "Context",
        "The descriptor's size differs from the file's: the stream's layout or padding refutes it.",
    ),
    "DigestMismatch": ("Context", "An authentic blob that is not the one the descriptor names."),
    "FileName": ("Sanitising", "A sender-chosen file name and the safe name it must become."),
    "DuplicateBlob": ("Semantics", "Two files of one body name the same blob."),
    "TooMany": ("Resource", "More list entries than the structure allows."),
    "GroupRule": (
        "Authorization",
        "A group change its signer may not make in the group's current state.",
    ),
    "ChainBreak": (
        "StateMachine",
        "A group change that does not extend the chain: skipped, stale, repeated, misnamed"
        " previous, another group's, or a chain not starting with its create.",
    ),
}


def hexify(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


@dataclass
class Group:
    """One test group: shared fields plus its tests."""

    type: str
    fields: dict[str, Any]
    tests: list[dict[str, Any]] = field(default_factory=list)

    def add(self, comment: str, expect: str, flags: list[str], **values: Any) -> None:
        result = "valid" if expect == "success" else "invalid"
        for flag in flags:
            if flag not in FLAG_NOTES:
                raise ValueError(f"undocumented flag {flag}")
        self.tests.append(
            {"comment": comment, "flags": flags, "result": result, "expect": expect, **values}
        )


@dataclass
class VectorFile:
    """A whole vector file under construction."""

    algorithm: str
    header: list[str]
    groups: list[Group] = field(default_factory=list)

    def group(self, type_: str, **fields: Any) -> Group:
        group = Group(type_, fields)
        self.groups.append(group)
        return group

    def to_json(self, seed: str) -> dict[str, Any]:
        tc_id = 0
        groups = []
        used: set[str] = set()
        for group in self.groups:
            tests = []
            for test in group.tests:
                tc_id += 1
                used.update(test["flags"])
                tests.append({"tcId": tc_id, **test})
            groups.append({"type": group.type, **group.fields, "tests": tests})
        return {
            "algorithm": self.algorithm,
            "schema": SCHEMA,
            "protocolVersion": PROTOCOL_VERSION,
            "generator": f"e2e-recall-vectors generate --seed {seed}",
            "numberOfTests": tc_id,
            "header": self.header,
            "notes": {
                flag: {"bugType": FLAG_NOTES[flag][0], "description": FLAG_NOTES[flag][1]}
                for flag in sorted(used)
            },
            "testGroups": groups,
        }


def dumps(obj: dict[str, Any]) -> str:
    """The exact text written to disk, so regenerating can be compared byte for byte."""
    return json.dumps(obj, indent=2, ensure_ascii=True) + "\n"
