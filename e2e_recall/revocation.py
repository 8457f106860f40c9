"""Revocations: the sender's signed order to recall one message.

A revocation is signed by the original sender's identity key under its own
label, so neither the relay nor a recipient can forge a recall, and a
signature made for anything else cannot be presented as one.  Recipients
check it themselves with :func:`verify_revocation` and
:func:`check_revocation_matches` before deleting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .domains import (
    FINGERPRINT_LEN,
    HASH_REVOCATION,
    ID_LEN,
    MAX_CLOCK_SKEW_MS,
    PROTOCOL_VERSION,
    SIG_REVOCATION,
)
from .envelope import Header
from .errors import (
    DecodeError,
    RecallWindowClosed,
    ReplayedRevocation,
    UsageError,
    WrongContext,
    WrongSigner,
)
from .hashing import digest
from .identity import fingerprint
from .schema import Field, check_map, check_version
from .signed import open_signed, seal_signed
from .signing import SigningKey, VerifyKey

__all__ = [
    "Revocation",
    "check_revocation_belongs",
    "check_revocation_matches",
    "check_sender_deadline",
    "revocation_digest",
    "sign_revocation",
    "verify_revocation",
]

_FIELDS = (
    Field("version", "uint"),
    Field("message_id", "bin", size=ID_LEN),
    Field("conversation_id", "bin", size=ID_LEN),
    Field("sender", "bin", size=FINGERPRINT_LEN),
    Field("issued_at", "uint", max_value=2**63 - 1),
    Field("replacement_id", "bin", size=ID_LEN, optional=True),
)


@dataclass(frozen=True, slots=True)
class Revocation:
    """A verified (or freshly signed) revocation and its exact wire bytes."""

    message_id: bytes
    conversation_id: bytes
    sender: bytes
    issued_at: int
    replacement_id: bytes | None
    signed: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256(HASH_REVOCATION || wire bytes): how receipts refer to it."""
        return revocation_digest(self.signed)


def revocation_digest(signed: bytes) -> bytes:
    """The digest receipts use to name the revocation with these exact wire bytes."""
    return digest(HASH_REVOCATION, signed)


def _body(
    message_id: bytes,
    conversation_id: bytes,
    sender: bytes,
    issued_at: int,
    replacement_id: bytes | None,
) -> dict[str, Any]:
    return {
        "version": PROTOCOL_VERSION,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "sender": sender,
        "issued_at": issued_at,
        "replacement_id": replacement_id,
    }


def sign_revocation(
    identity: SigningKey,
    *,
    message_id: bytes,
    conversation_id: bytes,
    issued_at: int,
    replacement_id: bytes | None = None,
) -> Revocation:
    """Sign the recall of one message (optionally naming its replacement)."""
    sender = fingerprint(identity.public_key)
    body = _body(message_id, conversation_id, sender, issued_at, replacement_id)
    try:
        check_map(body, _FIELDS, "revocation")
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    if replacement_id == message_id:
        raise UsageError("bad_replacement", "a message cannot replace itself")
    signed = seal_signed(body, SIG_REVOCATION, identity)
    return Revocation(message_id, conversation_id, sender, issued_at, replacement_id, signed)


def verify_revocation(data: bytes, sender: VerifyKey) -> Revocation:
    """Verify a revocation as signed by ``sender`` (whose message it must be)."""
    _, obj = open_signed(data, SIG_REVOCATION, sender)
    check_version(obj, "revocation", PROTOCOL_VERSION)
    fields = check_map(obj, _FIELDS, "revocation")
    if fields["sender"] != fingerprint(sender):
        raise WrongSigner("not_sender", "the revocation names another sender than its signer")
    if fields["replacement_id"] == fields["message_id"]:
        raise DecodeError("bad_replacement", "a message cannot replace itself")
    return Revocation(
        message_id=fields["message_id"],
        conversation_id=fields["conversation_id"],
        sender=fields["sender"],
        issued_at=fields["issued_at"],
        replacement_id=fields["replacement_id"],
        signed=data,
    )


def check_revocation_matches(revocation: Revocation, header: Header) -> None:
    """Refuse a revocation that does not belong to the message with ``header``.

    State-dependent windows and relay policy are the relay's to apply (see
    :mod:`e2e_recall.recall_rules`), but a recipient does hold the sender to
    the sender's own signed outer deadline: a revocation issued after
    ``recall_sealed_until`` (plus clock skew) cannot be one the relay was
    allowed to accept, so a relay that applies a recall it refused is caught.
    """
    check_revocation_belongs(revocation, header)
    check_sender_deadline(revocation, header)


def check_revocation_belongs(revocation: Revocation, header: Header) -> None:
    """Rules 1-4 of the spec's section 8.1: signer, message, conversation, age."""
    if revocation.sender != header.sender:
        raise WrongSigner("not_sender", "only the sender of a message can recall it")
    if revocation.message_id != header.message_id:
        raise WrongContext("other_message", "the revocation is for another message")
    if revocation.conversation_id != header.conversation_id:
        raise WrongContext("other_conversation", "the revocation is for another conversation")
    if revocation.issued_at < header.sent_at:
        raise ReplayedRevocation("predates_message", "the revocation is older than the message")


def check_sender_deadline(revocation: Revocation, header: Header) -> None:
    """Rule 5 of section 8.1: not issued after the sender's own signed outer deadline."""
    if revocation.issued_at > header.recall_sealed_until + MAX_CLOCK_SKEW_MS:
        raise RecallWindowClosed(
            "issued_after_window",
            "the revocation was issued after the sender's own deadline",
            {"closed_at": header.recall_sealed_until},
        )
