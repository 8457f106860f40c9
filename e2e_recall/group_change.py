"""Group changes: one signed link of a group's membership chain.

A group has no authority but its members.  Every change (create, add,
remove, leave, promote) is signed by the member making it, under its own
label, and names the digest of the change before it, so the relay can store
and forward the chain but cannot add anyone, drop a change, reorder two or
splice in one from another group.  This module builds and checks one change
on its own; the membership rules that decide whether it may follow another
live in :mod:`e2e_recall.group_state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from . import wire
from .domains import (
    FINGERPRINT_LEN,
    HASH_GROUP_CHANGE,
    HASH_GROUP_CONVERSATION,
    ID_LEN,
    MAX_GROUP_MEMBERS,
    PROTOCOL_VERSION,
    SIG_GROUP_CHANGE,
    SIGNATURE_LEN,
)
from .errors import DecodeError, UsageError, WrongSigner
from .hashing import digest
from .identity import fingerprint
from .schema import Field, check_map, check_version
from .signed import BODY_LIMITS, MAX_SIGNED_BODY, open_signed, seal_signed
from .signing import SigningKey, VerifyKey

__all__ = [
    "MAX_GROUP_MEMBERS",
    "GroupAction",
    "GroupChange",
    "SignedGroupChange",
    "group_change_digest",
    "group_conversation_id",
    "peek_group_change_signer",
    "sign_group_change",
    "verify_group_change",
]

_MAX_TIME = 2**63 - 1
# The signed container's shape, as signed.py reads it, for the unverified peek.
_CONTAINER = (
    Field("body", "bin", max_len=MAX_SIGNED_BODY),
    Field("signature", "bin", size=SIGNATURE_LEN),
)
_CONTAINER_LIMITS = wire.Limits(max_size=MAX_SIGNED_BODY + 128, max_bin=MAX_SIGNED_BODY, max_map=2)


class GroupAction(StrEnum):
    """What a change does to the membership (the payload's ``action``)."""

    CREATE = "create"
    ADD = "add"
    REMOVE = "remove"
    LEAVE = "leave"
    PROMOTE = "promote"


_FIELDS = (
    Field("version", "uint"),
    Field("group_id", "bin", size=ID_LEN),
    Field("seq", "uint", max_value=_MAX_TIME),
    Field("previous", "bin", size=FINGERPRINT_LEN, optional=True),
    Field("action", "str", max_len=16, choices=frozenset(GroupAction)),
    Field("members", "list", min_len=1, max_len=MAX_GROUP_MEMBERS),
    Field("by", "bin", size=FINGERPRINT_LEN),
    Field("issued_at", "uint", max_value=_MAX_TIME),
)


@dataclass(frozen=True, slots=True)
class GroupChange:
    """A verified (or freshly signed) group change and its exact wire bytes.

    ``signed`` is kept so the change can be forwarded and digested as it
    arrived: the chain links are digests of wire bytes, never of a
    re-encoding.
    """

    group_id: bytes
    seq: int
    previous: bytes | None
    action: GroupAction
    members: tuple[bytes, ...]
    by: bytes
    issued_at: int
    signed: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256(HASH_GROUP_CHANGE || wire bytes): what the next change names."""
        return group_change_digest(self.signed)


@dataclass(frozen=True, slots=True)
class SignedGroupChange:
    """What :func:`sign_group_change` returns: the bytes to send and what they say."""

    signed: bytes
    change: GroupChange
    digest: bytes


def group_change_digest(signed: bytes) -> bytes:
    """The digest of a change's wire bytes; the next change's ``previous`` is this."""
    return digest(HASH_GROUP_CHANGE, signed)


def group_conversation_id(group_id: bytes) -> bytes:
    """The conversation id of a group's messages: 16 bytes of a labelled hash.

    Hashed under its own label (not the group id itself) so that a creator
    cannot choose a group id equal to a direct conversation's id and have the
    relay treat messages to someone's one-to-one conversation as the group's.
    """
    if type(group_id) is not bytes or len(group_id) != ID_LEN:
        raise UsageError("bad_group_id", "a group id is 16 bytes")
    return digest(HASH_GROUP_CONVERSATION, group_id)[:ID_LEN]


def _check_fields(obj: object) -> dict[str, Any]:
    """The rules on one change's own fields, beyond the schema: shared by sign and verify."""
    fields = check_map(obj, _FIELDS, "group change")
    members = fields["members"]
    for index, member in enumerate(members):
        if type(member) is not bytes:
            raise DecodeError("wrong_type", f"group change.members[{index}] must be a byte string")
        if len(member) != FINGERPRINT_LEN:
            raise DecodeError(
                "bad_length", f"group change.members[{index}] must be {FINGERPRINT_LEN} bytes"
            )
    for before, after in pairwise(members):
        if before == after:
            raise DecodeError("duplicate_members", "group change lists a member twice")
        if before > after:
            raise DecodeError("unsorted_members", "group change members are not sorted")
    if (fields["seq"] == 0) != (fields["previous"] is None):
        raise DecodeError("bad_previous", "previous is nil exactly for the change with seq 0")
    return fields


def sign_group_change(
    identity: SigningKey,
    *,
    group_id: bytes,
    seq: int,
    previous: bytes | None,
    action: GroupAction | str,
    members: Iterable[bytes],
    issued_at: int,
) -> SignedGroupChange:
    """Sign one change as ``identity`` (who becomes its ``by``).

    ``members`` may come in any order; they are sorted here, since the
    payload must list them sorted.  A list that would be refused by a
    verifier (a duplicate, a wrong length, seq 0 with a previous digest) is
    refused here as a :class:`UsageError` instead of being signed.  Whether
    the change is *allowed* (admin, membership) is not checked: that depends
    on the group's state, which :meth:`GroupState.apply` holds.
    """
    try:
        action = GroupAction(action)
    except ValueError:
        raise UsageError("unknown_action", f"no group action {action!r}") from None
    listed = list(members)
    if any(type(member) is not bytes for member in listed):
        raise UsageError("wrong_type", "members are user ids (32-byte strings)")
    body = {
        "version": PROTOCOL_VERSION,
        "group_id": group_id,
        "seq": seq,
        "previous": previous,
        "action": str(action),
        "members": sorted(listed),
        "by": fingerprint(identity.public_key),
        "issued_at": issued_at,
    }
    try:
        _check_fields(body)
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signed = seal_signed(body, SIG_GROUP_CHANGE, identity)
    change = _change(body, signed)
    return SignedGroupChange(signed=signed, change=change, digest=change.digest)


def verify_group_change(signed: bytes, signer: VerifyKey) -> GroupChange:
    """Verify one change as signed by ``signer``, and its fields on their own.

    The signature is checked on the exact body bytes before any field is
    read; then the version, the schema, the member list and the
    previous-iff-not-first rule; last, that ``by`` is ``signer``'s user id,
    so a key cannot sign in someone else's name.
    """
    _, obj = open_signed(signed, SIG_GROUP_CHANGE, signer)
    check_version(obj, "group change", PROTOCOL_VERSION)
    fields = _check_fields(obj)
    if fields["by"] != fingerprint(signer):
        raise WrongSigner("not_by", "the group change names another member than its signer")
    return _change(fields, signed)


def peek_group_change_signer(signed: bytes) -> bytes:
    """UNVERIFIED: the ``by`` a change claims, only to look up the key to verify it with.

    Nothing about the change is checked here but that it decodes and that
    ``by`` is 32 bytes.  The result must only be used to choose a key for
    :func:`verify_group_change`, which refuses the change unless that key's
    user id is ``by`` and its signature holds.
    """
    outer = check_map(wire.decode(signed, limits=_CONTAINER_LIMITS), _CONTAINER, "signed object")
    obj = wire.decode(outer["body"], limits=BODY_LIMITS)
    by = obj.get("by") if isinstance(obj, dict) else None
    if type(by) is not bytes or len(by) != FINGERPRINT_LEN:
        raise DecodeError("missing_field", "the group change names no 32-byte signer")
    return by


def _change(fields: dict[str, Any], signed: bytes) -> GroupChange:
    return GroupChange(
        group_id=fields["group_id"],
        seq=fields["seq"],
        previous=fields["previous"],
        action=GroupAction(fields["action"]),
        members=tuple(fields["members"]),
        by=fields["by"],
        issued_at=fields["issued_at"],
        signed=signed,
    )
