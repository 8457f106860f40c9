"""The group-change fuzz target: verification, then the membership rules behind it.

Kept apart from targets.py, which holds the decoders of single structures;
this one also builds changes on top of a known group so that the rules of
``GroupState.apply`` (admins, members, the chain) are reached, not only the
signature and the schema.
"""

from __future__ import annotations

import contextlib

from targets import NOW, SIGNER, SIGNER_PUBLIC, InvariantBroken, resigned

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.domains import MAX_GROUP_MEMBERS, SIG_GROUP_CHANGE
from e2e_recall.errors import E2ERecallError

_MEMBER_KEY = er.SigningKey(bytes(range(1, 33)))  # a member of the fuzz group, not its admin
_MEMBER = er.fingerprint(_MEMBER_KEY.public_key)
_GROUP_ID = bytes(range(100, 116))
_CREATED = er.sign_group_change(
    SIGNER,
    group_id=_GROUP_ID,
    seq=0,
    previous=None,
    action=er.GroupAction.CREATE,
    members=[er.fingerprint(SIGNER_PUBLIC), _MEMBER],
    issued_at=NOW,
)
_GROUP = er.GroupState.create(er.verify_group_change(_CREATED.signed, SIGNER_PUBLIC))
_ACTIONS = list(er.GroupAction)
_ADMIN_ONLY = (er.GroupAction.ADD, er.GroupAction.REMOVE, er.GroupAction.PROMOTE)


def _next_change(data: bytes) -> tuple[bytes, er.VerifyKey]:
    """A change on top of the fuzz group, its signer, action and members from ``data``."""
    signer = _MEMBER_KEY if data and data[0] & 0x80 else SIGNER
    action = _ACTIONS[data[0] % len(_ACTIONS)] if data else er.GroupAction.ADD
    pool = [_MEMBER, er.fingerprint(SIGNER_PUBLIC)]
    members = [data[i : i + 32] for i in range(1, len(data) - 31, 32)]
    members += [pool[b % 2] for b in data[1:3]]
    body = {
        "version": 1,
        "group_id": _GROUP_ID,
        "seq": 1,
        "previous": _GROUP.head,
        "action": str(action),
        "members": sorted(set(members)),
        "by": er.fingerprint(signer.public_key),
        "issued_at": NOW,
    }
    encoded = wire.encode(body)
    signature = signer.sign(SIG_GROUP_CHANGE, encoded)
    return wire.encode({"body": encoded, "signature": signature}), signer.public_key


def _check_state(state: er.GroupState, change: er.GroupChange) -> None:
    if state.seq != change.seq or state.head != er.group_change_digest(change.signed):
        raise InvariantBroken("a state that does not end at the change it applied")
    if not state.admins <= state.members and state.members:
        raise InvariantBroken("an admin who is not a member")
    if len(state.members) > MAX_GROUP_MEMBERS:
        raise InvariantBroken("a group past its member limit")
    admin_only = change.action in _ADMIN_ONLY
    if admin_only and state.seq == 1 and change.by not in _GROUP.admins:
        raise InvariantBroken("a change only an admin may make, by someone else")


def group_change(data: bytes) -> None:
    """Group changes: as received, re-signed, or a next change of a known group, then applied.

    Mode 0 verifies the bytes as they are (mostly stopped by the signature),
    mode 1 signs them as a change's body first, mode 2 builds a change on top
    of a known group from them, so that the membership rules are reached.
    Whatever verifies is applied both as a group's first change and on top
    of the known group; an accepted state must end at that change and keep
    its admins among its members and its size within the limit.
    """
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    key = SIGNER_PUBLIC
    if mode == 2:
        signed, key = _next_change(rest)
    else:
        signed = rest if mode == 0 else resigned(SIG_GROUP_CHANGE, rest)
    with contextlib.suppress(E2ERecallError):  # unverified, but must never crash
        er.peek_group_change_signer(signed)
    try:
        change = er.verify_group_change(signed, key)
    except E2ERecallError:
        return
    if change.signed != signed:
        raise InvariantBroken("a verified change that is not the bytes it came from")
    for apply in (er.GroupState.create, _GROUP.apply):
        try:
            state = apply(change)
        except E2ERecallError:
            continue
        _check_state(state, change)
