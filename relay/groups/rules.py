"""The group rules of the relay, as pure functions of what is stored: no I/O, no SQL, no clock.

The membership rules themselves are the core's (:class:`e2e_recall.group.GroupState`,
the same code every client replays the chain with); what is here is the
relay's part around them: who may post a change, when a change is a retry,
which rows and events an accepted change writes, who may read the chain and
how much of it, and which devices a message to the group must be wrapped to.
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
)

__all__ = [
    "ChangeOutcome",
    "Moved",
    "chain_end",
    "decide_change",
    "group_event",
    "member_rows",
    "required_users",
    "state_of",
]


class Moved(Exception):
    """The group took another change between the read and the write: read again."""


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
    a current member (400: a removed member gets nothing); the answer is
    every other current member, each of whose current devices needs a wrap.
    """
    members = view.current
    if sender not in members:
        raise Forbidden("Only a member of the group may send to it.", "not_a_member")
    if wrapped_users - members:
        raise BadRequest(
            "A wrap is addressed to someone who is not a member of the group.", "bad_recipients"
        )
    return members - {sender}
