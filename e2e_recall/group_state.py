"""A group's membership, and the rules by which one change may follow another.

Everything that decides whether a change is allowed lives here, as pure
functions of the current state and one verified change, so the relay (which
stores the chain) and every client (which trusts only what it verified)
apply exactly the same rules and reach the same state from the same bytes.
The state is immutable: :meth:`GroupState.apply` returns a new state and
leaves the old one as it was, so a refused change changes nothing.

The rules, in the order they are checked, are listed in ``docs/protocol.md``
("Groups"); the error raised names the first rule broken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .domains import MAX_GROUP_MEMBERS
from .errors import (
    AlreadyAdmin,
    AlreadyMember,
    BrokenChain,
    NotAMember,
    NotAuthorised,
    StaleChange,
    TooManyMembers,
    UsageError,
    WrongContext,
    WrongSigner,
)
from .group_change import (
    GroupAction,
    GroupChange,
    group_conversation_id,
    peek_group_change_signer,
    verify_group_change,
)
from .signing import VerifyKey

__all__ = ["GroupState", "replay_group"]


@dataclass(frozen=True, slots=True)
class GroupState:
    """The membership after the change with ``seq`` (whose digest is ``head``).

    ``admins`` is always a subset of ``members``.  It may become empty (the
    last admin left): the group then keeps its members and its conversation,
    but the only change it can still take is a ``leave``.
    """

    group_id: bytes
    seq: int
    head: bytes
    members: frozenset[bytes]
    admins: frozenset[bytes]
    conversation_id: bytes

    @classmethod
    def create(cls, change: GroupChange, digest: bytes | None = None) -> GroupState:
        """The state a verified ``create`` (seq 0) starts: its signer is the one admin."""
        _check_digest(change, digest)
        if change.seq != 0:
            raise BrokenChain("not_first", "a group starts with the change with seq 0")
        if change.action is not GroupAction.CREATE:
            raise BrokenChain("not_a_create", "a group's first change must be a create")
        if change.by not in change.members:
            raise NotAMember("creator_not_member", "the creator must be among the members")
        return cls(
            group_id=change.group_id,
            seq=0,
            head=change.digest,
            members=frozenset(change.members),
            admins=frozenset({change.by}),
            conversation_id=group_conversation_id(change.group_id),
        )

    def apply(self, change: GroupChange, digest: bytes | None = None) -> GroupState:
        """The state after ``change`` (already verified), or the first rule it breaks.

        ``digest`` may be given (as the relay stores it); it must then be the
        change's own digest, which is otherwise computed from its bytes.
        """
        _check_digest(change, digest)
        if change.group_id != self.group_id:
            raise WrongContext("other_group", "the change is for another group")
        if change.seq <= self.seq:
            raise StaleChange(
                "old_seq", "the group already has a change with this seq", {"seq": self.seq}
            )
        if change.seq != self.seq + 1:
            raise BrokenChain("skipped_seq", "a change is missing before this one")
        if change.previous != self.head:
            raise BrokenChain("wrong_previous", "the change does not name the latest change")
        members, admins = _RULES[change.action](self, change)
        return GroupState(
            group_id=self.group_id,
            seq=change.seq,
            head=change.digest,
            members=members,
            admins=admins,
            conversation_id=self.conversation_id,
        )


_Rule = Callable[[GroupState, GroupChange], tuple[frozenset[bytes], frozenset[bytes]]]


def _check_digest(change: GroupChange, digest: bytes | None) -> None:
    if digest is not None and digest != change.digest:
        raise UsageError("wrong_digest", "the digest given is not the change's own")


def _require_admin(state: GroupState, change: GroupChange) -> None:
    if change.by not in state.admins:
        raise NotAuthorised("not_admin", f"only an admin may {change.action} members")


def _require_members(state: GroupState, named: frozenset[bytes]) -> None:
    if not named <= state.members:
        raise NotAMember("not_a_member", "the change names someone who is not a member")


def _create(state: GroupState, change: GroupChange) -> tuple[frozenset[bytes], frozenset[bytes]]:
    raise BrokenChain("second_create", "a group is created only once, by its first change")


def _add(state: GroupState, change: GroupChange) -> tuple[frozenset[bytes], frozenset[bytes]]:
    _require_admin(state, change)
    named = frozenset(change.members)
    if named & state.members:
        raise AlreadyMember("already_member", "the change adds someone who is already a member")
    if len(state.members) + len(named) > MAX_GROUP_MEMBERS:
        raise TooManyMembers(
            "too_many_members",
            f"a group has at most {MAX_GROUP_MEMBERS} members",
            {"limit": MAX_GROUP_MEMBERS},
        )
    return state.members | named, state.admins


def _remove(state: GroupState, change: GroupChange) -> tuple[frozenset[bytes], frozenset[bytes]]:
    _require_admin(state, change)
    named = frozenset(change.members)
    _require_members(state, named)
    if change.by in named:
        raise NotAuthorised("remove_self", "an admin leaves with a leave, not a remove")
    return state.members - named, state.admins - named


def _leave(state: GroupState, change: GroupChange) -> tuple[frozenset[bytes], frozenset[bytes]]:
    if change.members != (change.by,):
        raise NotAuthorised("leave_for_other", "a member can only leave for themselves")
    _require_members(state, frozenset(change.members))
    return state.members - {change.by}, state.admins - {change.by}


def _promote(state: GroupState, change: GroupChange) -> tuple[frozenset[bytes], frozenset[bytes]]:
    _require_admin(state, change)
    named = frozenset(change.members)
    _require_members(state, named)
    if named & state.admins:
        raise AlreadyAdmin("already_admin", "the change promotes someone who is already an admin")
    return state.members, state.admins | named


_RULES: dict[GroupAction, _Rule] = {
    GroupAction.CREATE: _create,
    GroupAction.ADD: _add,
    GroupAction.REMOVE: _remove,
    GroupAction.LEAVE: _leave,
    GroupAction.PROMOTE: _promote,
}


def replay_group(
    changes: Sequence[bytes],
    keys: Callable[[bytes], VerifyKey | None],
    *,
    group_id: bytes | None = None,
) -> GroupState:
    """Verify and apply a whole chain, from its create, and return the final state.

    ``keys`` maps a user id to that user's identity key (None if unknown,
    which refuses the change as ``wrong_signer``); the key it returns is only
    trusted as far as its fingerprint is the change's ``by``, which
    :func:`verify_group_change` checks.  Pass ``group_id`` to refuse a chain
    of another group than the one asked for.  The first change that fails
    stops the replay: a chain is accepted whole or not at all.
    """
    if not changes:
        raise BrokenChain("empty_chain", "a group's chain has at least its create")
    state: GroupState | None = None
    for signed in changes:
        signer = keys(peek_group_change_signer(signed))
        if signer is None:
            raise WrongSigner("unknown_signer", "the change is signed by an unknown user")
        change = verify_group_change(signed, signer)
        if state is None:
            if group_id is not None and change.group_id != group_id:
                raise WrongContext("other_group", "the chain is for another group")
            state = GroupState.create(change)
        else:
            state = state.apply(change)
    assert state is not None
    return state
