"""The relay's group rules as pure functions: member rows, reading rights, the send rule."""

from __future__ import annotations

import pytest

from relay.errors import BadRequest, Conflict, Forbidden, NotFound
from relay.groups.rules import (
    MembershipMoved,
    chain_end,
    member_rows,
    membership_rule,
    required_users,
    state_of,
)
from relay.storage.group_records import GroupRecord, GroupView, MemberRecord

G = b"g" * 16
A, B, C, D = (bytes([n]) * 32 for n in range(1, 5))


H = b"h" * 32


def _view(*members: MemberRecord, seq: int = 3) -> GroupView:
    return GroupView(GroupRecord(G, b"c" * 16, seq, H, 0, 0), members)


def test_member_rows_write_only_what_changed() -> None:
    view = _view(
        MemberRecord(G, A, True, 0),
        MemberRecord(G, B, False, 0),
        MemberRecord(G, C, False, 0),
        MemberRecord(G, D, False, 1, left_seq=2),
    )
    after = state_of(view)
    after = type(after)(G, 4, b"n" * 32, frozenset({A, B, D}), frozenset({A, B}), b"c" * 16)
    rows = member_rows(G, {m.user_id: m for m in view.members}, after)
    assert rows == [
        MemberRecord(G, B, True, 0),  # promoted
        MemberRecord(G, D, False, 4),  # back, with a new joined seq
        MemberRecord(G, C, False, 0, left_seq=4),  # gone
    ]


def test_who_reads_how_much_of_the_chain() -> None:
    view = _view(MemberRecord(G, A, True, 0), MemberRecord(G, B, False, 0, left_seq=2))
    assert chain_end(view, A) is None
    assert chain_end(view, B) == 2
    with pytest.raises(NotFound):
        chain_end(view, C)


def test_the_send_rule_of_a_group() -> None:
    view = _view(
        MemberRecord(G, A, True, 0),
        MemberRecord(G, B, False, 0),
        MemberRecord(G, C, False, 0, left_seq=2),
    )
    assert required_users(view, A, {B}) == {B}
    assert required_users(view, A, set()) == {B}  # missing devices are found by the caller
    with pytest.raises(Conflict) as behind:  # C left: the sender's chain is behind
        required_users(view, A, {B, C})
    assert (behind.value.code, behind.value.data) == ("group_changed", {"seq": 3, "head": H})
    with pytest.raises(BadRequest):  # D never was a member
        required_users(view, A, {B, D})
    with pytest.raises(BadRequest):  # nor is D once C is with it
        required_users(view, A, {C, D})
    with pytest.raises(Forbidden):
        required_users(view, C, {A, B})


def test_the_storing_rule_wants_the_head_the_send_was_checked_against() -> None:
    checked = _view(MemberRecord(G, A, True, 0)).group
    rule = membership_rule(checked)
    rule(checked)  # unchanged: the message is stored
    rule(GroupRecord(G, b"c" * 16, 3, H, 0, 99))  # only updated_at differs: the same head
    for moved in (
        GroupRecord(G, b"c" * 16, 4, b"n" * 32, 0, 1),  # a later change
        GroupRecord(G, b"c" * 16, 3, b"n" * 32, 0, 1),  # another head at the same seq
        None,  # no group for the conversation any more
    ):
        with pytest.raises(MembershipMoved) as refused:
            rule(moved)
        assert refused.value.current == moved
