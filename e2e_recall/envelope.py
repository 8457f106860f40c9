"""The message envelope: signed header, encrypted body.

A sender builds a :class:`Header`, encodes it canonically, encrypts the body
with the header bytes as associated data, and signs
``SIG_ENVELOPE || u32(len(header)) || header || SHA-256(HASH_CIPHERTEXT || nonce || ciphertext)``
with their identity key.  A receiver (or the relay) verifies that signature
on the exact received header bytes before decoding them, then checks that
the header names the signer as sender.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import wire
from .body import MAX_BODY_LEN, Body, decrypt_body, encrypt_body
from .domains import (
    FINGERPRINT_LEN,
    HASH_CIPHERTEXT,
    ID_LEN,
    KEY_LEN,
    NONCE_LEN,
    PROTOCOL_VERSION,
    SIG_ENVELOPE,
    SIGNATURE_LEN,
)
from .errors import DecodeError, UsageError, WrongSigner
from .expiry import ExpireFrom, check_timer
from .hashing import digest
from .identity import fingerprint
from .randomness import Rng, system_random
from .schema import Field, check_map, check_version
from .signing import SigningKey, VerifyKey

__all__ = [
    "Header",
    "MessageKind",
    "SealedMessage",
    "VerifiedEnvelope",
    "open_envelope",
    "seal_message",
    "signed_envelope_bytes",
]

MAX_HEADER_LEN = 1024
MAX_ENVELOPE_LEN = MAX_HEADER_LEN + MAX_BODY_LEN + 256


class MessageKind(StrEnum):
    """What a message is: ordinary text, or the replacement of a recalled one."""

    TEXT = "text"
    REPLACEMENT = "replacement"


_HEADER_FIELDS = (
    Field("version", "uint"),
    Field("message_id", "bin", size=ID_LEN),
    Field("conversation_id", "bin", size=ID_LEN),
    Field("sender", "bin", size=FINGERPRINT_LEN),
    Field("sender_device", "bin", size=ID_LEN),
    Field("sent_at", "uint", max_value=2**63 - 1),
    Field("recall_sealed_until", "uint", max_value=2**63 - 1),
    Field("recall_opened_until", "uint", max_value=2**63 - 1),
    Field("kind", "str", choices=frozenset(MessageKind)),
    Field("replaces", "bin", size=ID_LEN, optional=True),
    # Their ranges and pairing are checked by check_timer, so that any bad timer is bad_expiry.
    Field("expire_after", "uint", optional=True),
    Field("expire_from", "str", max_len=16, optional=True),
)
_TIMER_KEYS = frozenset({"expire_after", "expire_from"})
_ENVELOPE_FIELDS = (
    Field("header", "bin", max_len=MAX_HEADER_LEN),
    Field("nonce", "bin", size=NONCE_LEN),
    Field("ciphertext", "bin", max_len=MAX_BODY_LEN + 16),
    Field("signature", "bin", size=SIGNATURE_LEN),
)
_ENVELOPE_LIMITS = wire.Limits(max_size=MAX_ENVELOPE_LEN, max_bin=MAX_BODY_LEN + 16, max_map=4)
_HEADER_LIMITS = wire.Limits(max_size=MAX_HEADER_LEN, max_map=16, max_depth=1)


@dataclass(frozen=True, slots=True)
class Header:
    """The signed, cleartext part of a message; the relay can read it.

    Times are milliseconds since the Unix epoch.  ``recall_sealed_until`` is
    the sender's own deadline for recalling while no device has opened the
    message; ``recall_opened_until`` the (earlier or equal) deadline once one
    has.  The relay may cap both further.  ``expire_after`` (ms) and
    ``expire_from`` are the disappearing-message timer (:mod:`.expiry`),
    both set or both None.
    """

    message_id: bytes
    conversation_id: bytes
    sender: bytes
    sender_device: bytes
    sent_at: int
    recall_sealed_until: int
    recall_opened_until: int
    kind: MessageKind = MessageKind.TEXT
    replaces: bytes | None = None
    expire_after: int | None = None
    expire_from: ExpireFrom | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "version": PROTOCOL_VERSION,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "sender": self.sender,
            "sender_device": self.sender_device,
            "sent_at": self.sent_at,
            "recall_sealed_until": self.recall_sealed_until,
            "recall_opened_until": self.recall_opened_until,
            "kind": str(self.kind),
            "replaces": self.replaces,
            "expire_after": self.expire_after,
            "expire_from": None if self.expire_from is None else str(self.expire_from),
        }

    def encode(self) -> bytes:
        """Canonical header bytes, checked by the same rules a receiver applies."""
        obj = self.to_wire()
        try:
            check_map(obj, _HEADER_FIELDS, "header")
            self._check_rules()
        except DecodeError as exc:
            raise UsageError(exc.reason, exc.detail) from None
        return wire.encode(obj)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        obj = wire.decode(data, limits=_HEADER_LIMITS)
        check_version(obj, "header", PROTOCOL_VERSION)
        if isinstance(obj, dict) and not _TIMER_KEYS & obj.keys():
            # A header signed before timers existed (protocol 7.1): it has no timer.  Its
            # bytes stay what was signed; only the reading fills in the two nil keys.
            obj = {**obj, "expire_after": None, "expire_from": None}
        fields = check_map(obj, _HEADER_FIELDS, "header")
        check_timer(fields["expire_after"], fields["expire_from"])
        header = cls(
            message_id=fields["message_id"],
            conversation_id=fields["conversation_id"],
            sender=fields["sender"],
            sender_device=fields["sender_device"],
            sent_at=fields["sent_at"],
            recall_sealed_until=fields["recall_sealed_until"],
            recall_opened_until=fields["recall_opened_until"],
            kind=MessageKind(fields["kind"]),
            replaces=fields["replaces"],
            expire_after=fields["expire_after"],
            expire_from=None
            if fields["expire_from"] is None
            else ExpireFrom(fields["expire_from"]),
        )
        header._check_rules()
        return header

    def _check_rules(self) -> None:
        if not self.sent_at <= self.recall_opened_until <= self.recall_sealed_until:
            raise DecodeError(
                "bad_windows", "need sent_at <= recall_opened_until <= recall_sealed_until"
            )
        if (self.kind is MessageKind.REPLACEMENT) != (self.replaces is not None):
            raise DecodeError("bad_replaces", "replaces is set exactly for replacement messages")
        if self.replaces == self.message_id:
            raise DecodeError("bad_replaces", "a message cannot replace itself")
        check_timer(self.expire_after, self.expire_from)


def _signed_payload(header_bytes: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return (
        struct.pack(">I", len(header_bytes))
        + header_bytes
        + digest(HASH_CIPHERTEXT, nonce + ciphertext)
    )


def signed_envelope_bytes(header_bytes: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """The exact bytes an envelope signature covers (label included)."""
    return SIG_ENVELOPE + _signed_payload(header_bytes, nonce, ciphertext)


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message ready to send: the envelope bytes and the key to wrap per device."""

    header: Header
    envelope: bytes
    message_key: bytes


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An envelope whose signature and header have been checked."""

    header: Header
    header_bytes: bytes
    nonce: bytes
    ciphertext: bytes
    signature: bytes

    def decrypt(self, message_key: bytes) -> Body:
        return decrypt_body(self.nonce, self.ciphertext, message_key, self.header_bytes)


def seal_message(
    header: Header,
    body: Body,
    identity: SigningKey,
    *,
    message_key: bytes | None = None,
    rng: Rng = system_random,
) -> SealedMessage:
    """Encrypt and sign one message under a fresh per-message key."""
    if header.sender != fingerprint(identity.public_key):
        raise UsageError("wrong_sender", "the header must name the signing identity as sender")
    key = rng(KEY_LEN) if message_key is None else message_key
    header_bytes = header.encode()
    nonce, ciphertext = encrypt_body(body, key, header_bytes, rng)
    signature = identity.sign(SIG_ENVELOPE, _signed_payload(header_bytes, nonce, ciphertext))
    envelope = wire.encode(
        {"ciphertext": ciphertext, "header": header_bytes, "nonce": nonce, "signature": signature}
    )
    return SealedMessage(header=header, envelope=envelope, message_key=key)


def open_envelope(data: bytes, sender: VerifyKey) -> VerifiedEnvelope:
    """Verify an envelope as coming from ``sender``; does not decrypt it."""
    fields = check_map(wire.decode(data, limits=_ENVELOPE_LIMITS), _ENVELOPE_FIELDS, "envelope")
    header_bytes = fields["header"]
    sender.verify(
        SIG_ENVELOPE,
        _signed_payload(header_bytes, fields["nonce"], fields["ciphertext"]),
        fields["signature"],
    )
    header = Header.decode(header_bytes)
    if header.sender != fingerprint(sender):
        raise WrongSigner("not_sender", "the envelope was signed by someone other than its sender")
    return VerifiedEnvelope(
        header=header,
        header_bytes=header_bytes,
        nonce=fields["nonce"],
        ciphertext=fields["ciphertext"],
        signature=fields["signature"],
    )
