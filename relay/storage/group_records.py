"""What the relay stores about groups, and the store every backend implements for them.

A group is a chain of signed membership changes (``e2e_recall.group``).
The relay keeps the chain as it received it (the exact bytes of each
change, so clients verify what the signers signed), the head it reached
(seq and digest), and one row per user who is or was a member, so that a
send to the group's conversation and a request for its chain need no
replay.  The relay cannot forge any of this: every client replays the
chain itself.

As with messages the rules never write SQL: a change runs a pure decision
on what is stored (:class:`GroupView`, or None for an unknown group) inside
the transaction that writes what it returns (:class:`GroupWrite`).  A send
to a group's conversation is checked the same way: its :data:`MembershipRule`
runs on the group's row as the transaction that stores the message reads it,
so a membership change committed between the send's check and its write (by
this relay process or another) cannot slip past.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # base imports this module for the Storage protocol
    from .base import NewEvent

__all__ = [
    "GroupChangeRecord",
    "GroupRecord",
    "GroupStore",
    "GroupView",
    "GroupWrite",
    "MemberRecord",
    "MembershipRule",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: bytes
    conversation_id: bytes  # group_conversation_id(group_id): how a send finds its group
    seq: int  # the seq of the latest change
    head: bytes  # the digest of the latest change
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A user who is (``left_seq`` None) or was a member of a group."""

    group_id: bytes
    user_id: bytes
    admin: bool
    joined_seq: int  # the change that (last) added them
    left_seq: int | None = None  # the change that removed them, or that they left by


@dataclass(frozen=True, slots=True)
class GroupChangeRecord:
    group_id: bytes
    seq: int
    change: bytes  # the signed change exactly as received
    digest: bytes
    received_at: int


@dataclass(frozen=True, slots=True)
class GroupView:
    """Everything stored about one group (its chain aside), as one transaction sees it."""

    group: GroupRecord
    members: tuple[MemberRecord, ...]  # current and former, ordered by user id
    change_at: bytes | None = None  # the stored change at the seq asked for (a retry's check)

    @property
    def current(self) -> frozenset[bytes]:
        return frozenset(m.user_id for m in self.members if m.left_seq is None)

    @property
    def admins(self) -> frozenset[bytes]:
        return frozenset(m.user_id for m in self.members if m.left_seq is None and m.admin)

    def member(self, user_id: bytes) -> MemberRecord | None:
        for member in self.members:
            if member.user_id == user_id:
                return member
        return None


# (the group of the message's conversation, as the storing transaction reads it) -> raises
# to refuse the message; None: the conversation is no group's (any more).
MembershipRule = Callable[[GroupRecord | None], None]


@dataclass
class GroupWrite:
    """What one accepted change writes: the group row, the change, member rows, events."""

    group: GroupRecord
    change: GroupChangeRecord
    members: list[MemberRecord] = field(default_factory=list)  # rows to replace whole
    events: list[NewEvent] = field(default_factory=list)


class GroupStore(Protocol):
    async def get_group(
        self, group_id: bytes | None = None, conversation_id: bytes | None = None
    ) -> GroupView | None:
        """The group with this id, or whose conversation this is; None if there is none."""

    async def group_changes(self, group_id: bytes, upto: int | None = None) -> list[bytes]:
        """The group's signed changes in order, up to and including seq ``upto`` if given."""

    async def change_group(
        self,
        group_id: bytes,
        seq: int,
        decide: Callable[[GroupView | None], tuple[GroupWrite | None, T]],
    ) -> T:
        """Read the group (with its change at ``seq``), decide, write, in one transaction.

        ``decide`` gets None for an unknown group; it may raise to write
        nothing, or return no write (a retry of a stored change).  A write
        whose change takes a seq already stored, or whose group id is taken,
        is refused by the store (``Conflict``), never half-applied.
        """
