"""The group rules of the relay, as pure functions of what is stored: no I/O, no SQL, no clock.

The membership rules themselves are the core's (:class:`e2e_recall.group.GroupState`,
the same code every client replays the chain with); what is here is the
relay's part around them: who may post a change, when a change is a retry,
which rows and events an accepted change writes, who may read the chain and
how much of it, which devices a message to the group must be wrapped to,
and the rule the transaction storing such a message runs on the group's row
(:func:`membership_rule`): the membership the send was checked against must
still be the current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from e2e_recall import wire
from e2e_recall.errors import (
    BrokenChain,
    GroupChangeRefused,
    NotAuthorised,
    ProtocolError,
    StaleChange,
    TooManyMembers,
)
from e2e_recall.group import GroupChange, GroupState

from ..errors import BadRequest, Conflict, Forbidden, NotFound, RelayError
from ..storage.base import EventKind, NewEvent
from ..storage.group_records import (
    GroupChangeRecord,
    GroupRecord,
    GroupView,
    GroupWrite,
    MemberRecord,
    MembershipRule,
)

__all__ = [
    "ChangeOutcome",
    "MembershipMoved",
    "Moved",
    "chain_end",
    "decide_change",
    "group_event",
    "member_rows",
    "membership_moved",
    "membership_rule",
    "required_users",
    "state_of",
]


class Moved(Exception):
    """The group took another change between the read and the write: read again."""


class MembershipMoved(Exception):
    """A group took a change between a send's check and the transaction storing it.

    Raised by :func:`membership_rule` inside that transaction, so nothing of
    the send is written; ``current`` is the group's row as the transaction
    read it, for the answer's facts.
    """

    def __init__(self, current: GroupRecord | None) -> None:
        super().__init__("the group changed since the send was checked")
        self.current = current


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    seq: int
    created: bool  # False for a retry of the change stored at this seq
    conversation_id: bytes


def state_of(view: GroupView) -> GroupState:
    """The core's state of a stored group (what replaying its chain gives)."""
    group = view.group
    return GroupState(
        group_id=group.group_id,
        seq=group.seq,
        head=group.head,
        members=view.current,
        admins=view.admins,
        conversation_id=group.conversation_id,
    )


def _refusal(exc: ProtocolError, view: GroupView | None) -> RelayError:
    """A core refusal of a change, as the relay answers it."""
    code = exc.expect
    if view is not None and isinstance(exc, StaleChange | BrokenChain):
        return Conflict(
            "The group has moved on: fetch its chain and sign the change again.",
            "stale_head",
            data={"seq": view.group.seq, "head": view.group.head},
        )
    if isinstance(exc, NotAuthorised):
        return Forbidden(exc.sentence, code)
    if isinstance(exc, TooManyMembers):
        return Conflict(exc.sentence, code, data=exc.data)
    if isinstance(exc, GroupChangeRefused) and view is not None:
        return Conflict(exc.sentence, code)  # already_member, not_a_member, already_admin
    return BadRequest(exc.sentence, code)


def member_rows(
    group_id: bytes,
    before: Mapping[bytes, MemberRecord],
    after: GroupState,
) -> list[MemberRecord]:
    """The member rows a change writes: joins, departures, promotions (only what changed)."""
    changed = []
    for user in sorted(after.members):
        admin = user in after.admins
        row = before.get(user)
        if row is None or row.left_seq is not None:
            changed.append(MemberRecord(group_id, user, admin, after.seq))
        elif row.admin != admin:
            changed.append(replace(row, admin=admin))
    for user, row in sorted(before.items()):
        if row.left_seq is None and user not in after.members:
            changed.append(replace(row, admin=False, left_seq=after.seq))
    return changed


def group_event(change: GroupChange, device_id: bytes) -> NewEvent:
    payload = wire.encode({"group_id": change.group_id, "seq": change.seq, "change": change.signed})
    return NewEvent(device_id, EventKind.GROUP, change.group_id, payload)


def decide_change(
    view: GroupView | None,
    change: GroupChange,
    *,
    poster: bytes,
    read_head: bytes | None,
    devices: Mapping[bytes, Iterable[bytes]],
    max_members: int,
    now: int,
) -> tuple[GroupWrite | None, ChangeOutcome]:
    """Accept ``change`` (already verified as signed by ``poster``) onto the stored group.

    ``read_head`` is the head the caller saw when it looked up ``devices``
    (every device of every member before the change and of everyone it
    names); if the group moved since, :class:`Moved` asks for a fresh read.
    """
    group_id = change.group_id
    if view is not None and view.change_at == change.signed:
        return None, ChangeOutcome(change.seq, False, view.group.conversation_id)
    if view is None:
        if read_head is not None:
            raise Moved
        if change.seq != 0:
            raise NotFound("No such group.")
        before: dict[bytes, MemberRecord] = {}
        try:
            after = GroupState.create(change)
        except ProtocolError as exc:
            raise _refusal(exc, None) from None
    else:
        if change.seq == 0:  # whoever asks: the id is taken, pick another
            raise Conflict("A group with this id already exists.", "group_exists")
        if poster not in view.current:
            raise NotFound("No such group.")  # the same answer whether it exists or not
        if view.group.head != read_head:
            raise Moved
        before = {m.user_id: m for m in view.members}
        try:
            after = state_of(view).apply(change)
        except ProtocolError as exc:
            raise _refusal(exc, view) from None
    if len(after.members) > max_members:
        raise Conflict(
            f"A group may have at most {max_members} members at this relay.",
            "too_many_members",
            data={"max": max_members},
        )
    created_at = now if view is None else view.group.created_at
    told = set(after.members) | (set(view.current) if view is not None else set())
    events = [group_event(change, device) for user in sorted(told) for device in devices[user]]
    write = GroupWrite(
        group=GroupRecord(group_id, after.conversation_id, after.seq, after.head, created_at, now),
        change=GroupChangeRecord(group_id, change.seq, change.signed, after.head, now),
        members=member_rows(group_id, before, after),
        events=events,
    )
    return write, ChangeOutcome(change.seq, True, after.conversation_id)


def chain_end(view: GroupView, user_id: bytes) -> int | None:
    """How far a user may read the chain: all of it (a member), to their removal, or 404."""
    member = view.member(user_id)
    if member is None:
        raise NotFound("No such group.")
    return member.left_seq


def required_users(view: GroupView, sender: bytes, wrapped_users: set[bytes]) -> frozenset[bytes]:
    """The users a group message must be wrapped to, after checking who it is wrapped to.

    The sender must be a current member (403); every user with a wrap must be
    a current member: a removed member gets nothing.  A wrap to someone who
    was a member is a ``409 group_changed`` (the sender's chain is behind:
    refresh and wrap again), one to someone who never was a ``400``.  The
    answer is every other current member, each of whose current devices
    needs a wrap.
    """
    members = view.current
    if sender not in members:
        raise Forbidden("Only a member of the group may send to it.", "not_a_member")
    outsiders = wrapped_users - members
    if outsiders and all(view.member(user) is not None for user in outsiders):
        raise membership_moved(view.group)
    if outsiders:
        raise BadRequest(
            "A wrap is addressed to someone who is not a member of the group.", "bad_recipients"
        )
    return members - {sender}


def _moved_facts(group: GroupRecord | None) -> dict[str, object] | None:
    return None if group is None else {"seq": group.seq, "head": group.head}


def membership_moved(current: GroupRecord | None) -> Conflict:
    """The answer to a send checked against a membership that is no longer the group's.

    A ``409`` the sender's client answers as it does ``missing_devices``:
    fetch the chain, wrap the same key again to the members it now names, retry.
    """
    return Conflict(
        "The group's members changed while this message was being sent; fetch its "
        "chain, wrap the message to its current members' devices and send it again.",
        "group_changed",
        data=_moved_facts(current),
    )


def membership_rule(checked: GroupRecord) -> MembershipRule:
    """The in-transaction rule for a send checked against the group at ``checked``.

    The check of a send's wraps (:func:`required_users`) may read the group
    through a cache, before the transaction; this rule is the final word: the
    group's head, as the transaction that stores the message reads it, must
    be the one that check used.  Every change moves the head, so a removal,
    an addition or a departure committed in between, by any relay process on
    the database, refuses the send (:class:`MembershipMoved`).
    """

    def rule(current: GroupRecord | None) -> None:
        if current is None or (current.seq, current.head) != (checked.seq, checked.head):
            raise MembershipMoved(current)

    return rule
