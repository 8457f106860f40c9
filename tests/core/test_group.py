"""Group changes: signing, verifying one change, and every membership rule."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from group_cast import T0, Cast, Chain

import e2e_recall
from e2e_recall import (
    MAX_GROUP_MEMBERS,
    AlreadyAdmin,
    AlreadyMember,
    BrokenChain,
    DecodeError,
    GroupAction,
    GroupChangeRefused,
    GroupState,
    NotAMember,
    NotAuthorised,
    SignatureInvalid,
    StaleChange,
    TooManyMembers,
    UnsupportedVersion,
    UsageError,
    WrongContext,
    WrongSigner,
    direct_conversation_id,
    group_change_digest,
    group_conversation_id,
    peek_group_change_signer,
    replay_group,
    sign_group_change,
    verify_group_change,
    wire,
)
from e2e_recall.domains import (
    HASH_GROUP_CHANGE,
    HASH_GROUP_CONVERSATION,
    SIG_GROUP_CHANGE,
    SIG_REVOCATION,
)
from e2e_recall.signed import seal_signed


@pytest.fixture
def cast() -> Cast:
    return Cast()


def body(cast: Cast, signer: str = "alice", **over: Any) -> dict[str, Any]:
    """A well-formed create payload by ``signer``, with fields overridden."""
    fields: dict[str, Any] = {
        "version": 1,
        "group_id": bytes(range(16)),
        "seq": 0,
        "previous": None,
        "action": "create",
        "members": sorted(cast.uids([signer, "bob"])),
        "by": cast.uid(signer),
        "issued_at": T0,
    }
    fields.update(over)
    return fields


def test_the_contract_is_exported() -> None:
    for name in (
        "GroupAction",
        "GroupChange",
        "GroupState",
        "SignedGroupChange",
        "group_change_digest",
        "group_conversation_id",
        "peek_group_change_signer",
        "replay_group",
        "sign_group_change",
        "verify_group_change",
        "MAX_GROUP_MEMBERS",
    ):
        assert name in e2e_recall.__all__, name
    assert MAX_GROUP_MEMBERS == 1024
    assert [str(a) for a in GroupAction] == ["create", "add", "remove", "leave", "promote"]
    assert SIG_GROUP_CHANGE == b"e2e-recall/v1/sig/group-change\x00"
    assert HASH_GROUP_CHANGE == b"e2e-recall/v1/hash/group-change\x00"
    assert HASH_GROUP_CONVERSATION == b"e2e-recall/v1/hash/group-conversation\x00"


def test_error_codes() -> None:
    codes = {
        NotAuthorised: "not_authorised",
        StaleChange: "stale_change",
        BrokenChain: "broken_chain",
        NotAMember: "not_a_member",
        AlreadyMember: "already_member",
        AlreadyAdmin: "already_admin",
        TooManyMembers: "too_many_members",
    }
    for cls, code in codes.items():
        assert cls.expect == code
        assert issubclass(cls, GroupChangeRefused)
    assert GroupChangeRefused.expect == "group_change_refused"


def test_conversation_id_is_a_labelled_hash_and_not_a_direct_one(cast: Cast) -> None:
    group_id = bytes(range(16))
    expected = hashlib.sha256(HASH_GROUP_CONVERSATION + group_id).digest()[:16]
    assert group_conversation_id(group_id) == expected
    assert group_conversation_id(group_id) != group_id
    assert group_conversation_id(group_id) != direct_conversation_id(*cast.uids(["a", "b"]))
    for bad in (bytes(15), bytes(17), "0" * 16):
        with pytest.raises(UsageError):
            group_conversation_id(bad)  # type: ignore[arg-type]


def test_sign_and_verify_round_trip(cast: Cast) -> None:
    signed = sign_group_change(
        cast["alice"],
        group_id=bytes(16),
        seq=0,
        previous=None,
        action="create",
        members=cast.uids(["carol", "alice", "bob"]),  # any order: sorted when signed
        issued_at=T0,
    )
    change = verify_group_change(signed.signed, cast["alice"].public_key)
    assert change == signed.change
    assert change.members == tuple(sorted(cast.uids(["alice", "bob", "carol"])))
    assert change.action is GroupAction.CREATE
    assert change.by == cast.uid("alice")
    assert change.previous is None
    assert signed.digest == change.digest == group_change_digest(signed.signed)
    assert signed.digest == hashlib.sha256(HASH_GROUP_CHANGE + signed.signed).digest()
    assert peek_group_change_signer(signed.signed) == cast.uid("alice")
    # the wire form is the signed container of section 3.3 over the canonical payload
    outer = wire.decode(signed.signed)
    assert set(outer) == {"body", "signature"}
    assert wire.decode(outer["body"]) == body(
        cast, members=list(change.members), group_id=bytes(16)
    )
    cast["alice"].public_key.verify(SIG_GROUP_CHANGE, outer["body"], outer["signature"])


def test_signing_is_deterministic(cast: Cast) -> None:
    def make() -> bytes:
        return sign_group_change(
            cast["alice"],
            group_id=bytes(16),
            seq=0,
            previous=None,
            action=GroupAction.CREATE,
            members=cast.uids(["alice"]),
            issued_at=T0,
        ).signed

    assert make() == make()


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"members": []}, "bad_length"),
        ({"members": [bytes(31)]}, "bad_length"),
        ({"members": ["x" * 32]}, "wrong_type"),
        ({"members": [bytes(32), bytes(32)]}, "duplicate_members"),
        ({"previous": bytes(32)}, "bad_previous"),
        ({"seq": 1}, "bad_previous"),
        ({"seq": -1}, "wrong_type"),
        ({"seq": 2**63}, "out_of_range"),
        ({"group_id": bytes(15)}, "bad_length"),
        ({"action": "rename"}, "unknown_action"),
        ({"issued_at": -5}, "wrong_type"),
        ({"members": [bytes(32)] * (MAX_GROUP_MEMBERS + 1)}, "bad_length"),
    ],
)
def test_sign_refuses_what_a_verifier_would_refuse(
    cast: Cast, over: dict[str, Any], reason: str
) -> None:
    args: dict[str, Any] = {
        "group_id": bytes(16),
        "seq": 0,
        "previous": None,
        "action": "create",
        "members": cast.uids(["alice"]),
        "issued_at": T0,
    }
    args.update(over)
    with pytest.raises(UsageError) as info:
        sign_group_change(cast["alice"], **args)
    if reason != "duplicate_members" or len(args["members"]) <= MAX_GROUP_MEMBERS:
        assert info.value.reason == reason


def _sealed(cast: Cast, signer: str = "alice", **over: Any) -> bytes:
    return seal_signed(body(cast, signer, **over), SIG_GROUP_CHANGE, cast[signer])


@pytest.mark.parametrize(
    ("over", "error", "reason"),
    [
        ({"version": 2}, UnsupportedVersion, "unknown_version"),
        ({"members": "not a list"}, DecodeError, "wrong_type"),
        ({"members": []}, DecodeError, "bad_length"),
        ({"members": [b"short"]}, DecodeError, "bad_length"),
        ({"members": [1]}, DecodeError, "wrong_type"),
        ({"previous": bytes(32)}, DecodeError, "bad_previous"),
        ({"seq": 3}, DecodeError, "bad_previous"),
        ({"action": "rename"}, DecodeError, "unknown_value"),
        ({"action": b"create"}, DecodeError, "wrong_type"),
        ({"by": bytes(31)}, DecodeError, "bad_length"),
        ({"extra": 1}, DecodeError, "unknown_field"),
        ({"group_id": bytes(17)}, DecodeError, "bad_length"),
    ],
)
def test_verify_refuses_malformed_payloads(
    cast: Cast, over: dict[str, Any], error: type[Exception], reason: str
) -> None:
    with pytest.raises(error) as info:
        verify_group_change(_sealed(cast, **over), cast["alice"].public_key)
    assert getattr(info.value, "reason", None) == reason


def test_verify_refuses_unsorted_and_duplicate_members(cast: Cast) -> None:
    low, high = sorted(cast.uids(["alice", "bob"]))
    for members, reason in (([high, low], "unsorted_members"), ([low, low], "duplicate_members")):
        with pytest.raises(DecodeError) as info:
            verify_group_change(_sealed(cast, members=members), cast["alice"].public_key)
        assert info.value.reason == reason


def test_verify_refuses_a_missing_field(cast: Cast) -> None:
    fields = body(cast)
    del fields["by"]
    signed = seal_signed(fields, SIG_GROUP_CHANGE, cast["alice"])
    with pytest.raises(DecodeError):
        verify_group_change(signed, cast["alice"].public_key)


def test_signature_is_checked_before_anything_it_covers(cast: Cast) -> None:
    # A body that would be a decode failure is first a bad signature under the wrong key.
    signed = _sealed(cast, version=2)
    with pytest.raises(SignatureInvalid):
        verify_group_change(signed, cast["bob"].public_key)
    # Signed under another label: refused even though the signature is Alice's.
    other = seal_signed(body(cast), SIG_REVOCATION, cast["alice"])
    with pytest.raises(SignatureInvalid):
        verify_group_change(other, cast["alice"].public_key)


def test_by_must_be_the_signer(cast: Cast) -> None:
    # Mallory signs a change in Alice's name: verified with Mallory's key, wrong signer.
    signed = seal_signed(body(cast, "alice"), SIG_GROUP_CHANGE, cast["mallory"])
    with pytest.raises(WrongSigner) as info:
        verify_group_change(signed, cast["mallory"].public_key)
    assert info.value.reason == "not_by"
    with pytest.raises(SignatureInvalid):
        verify_group_change(signed, cast["alice"].public_key)


def test_peek_is_unverified_and_strict_about_shape(cast: Cast) -> None:
    forged = seal_signed(body(cast, "alice"), SIG_GROUP_CHANGE, cast["mallory"])
    assert peek_group_change_signer(forged) == cast.uid("alice")  # a claim, not a fact
    for bad in (b"", b"\xc0", wire.encode({"body": b"x", "signature": bytes(64)}), bytes(5)):
        with pytest.raises(DecodeError):
            peek_group_change_signer(bad)
    no_by = body(cast)
    del no_by["by"]
    with pytest.raises(DecodeError):
        peek_group_change_signer(seal_signed(no_by, SIG_GROUP_CHANGE, cast["alice"]))


# -- the state and its rules ------------------------------------------------------------------


def test_create(cast: Cast) -> None:
    chain = Chain.create(cast, "alice", "bob", "carol")
    state = chain.state
    assert state.seq == 0
    assert state.group_id == chain.group_id
    assert state.head == chain.changes[0].digest
    assert state.members == frozenset(cast.uids(["alice", "bob", "carol"]))
    assert state.admins == frozenset({cast.uid("alice")})
    assert state.conversation_id == group_conversation_id(chain.group_id)
    # A create alone, of one member: the creator.
    assert Chain.create(cast, "dave").state.members == frozenset({cast.uid("dave")})


def test_create_rules(cast: Cast) -> None:
    chain = Chain(cast, cast.group_id())
    not_in = chain.sign("alice", "create", "bob", "carol")
    with pytest.raises(NotAMember) as info:
        GroupState.create(not_in.change)
    assert info.value.reason == "creator_not_member"
    add_first = chain.sign("alice", "add", "alice", "bob")
    with pytest.raises(BrokenChain) as info2:
        GroupState.create(add_first.change)
    assert info2.value.reason == "not_a_create"
    later = Chain.create(cast, "alice", "bob")
    second = later.sign("alice", "create", "alice")
    with pytest.raises(BrokenChain) as info3:
        GroupState.create(second.change)
    assert info3.value.reason == "not_first"
    with pytest.raises(BrokenChain) as info4:
        later.state.apply(second.change)
    assert info4.value.reason == "second_create"


def test_a_long_chain_of_every_action(cast: Cast) -> None:
    chain = Chain.create(cast, "alice", "bob")
    chain.append("alice", "add", "carol", "dave", "erin")
    chain.append("alice", "promote", "bob")
    chain.append("bob", "add", "frank")
    chain.append("bob", "remove", "alice")  # an admin may remove another admin
    chain.append("carol", "leave", "carol")  # a plain member may leave
    chain.append("bob", "promote", "dave", "erin")
    chain.append("erin", "remove", "frank")
    chain.append("dave", "leave", "dave")  # an admin may leave
    for i in range(40):
        chain.append("bob", "add", f"user{i}")
        if i % 3 == 0:
            chain.append("erin", "remove", f"user{i}")
    state = chain.state
    assert state.seq == len(chain.changes) - 1
    expected = {"bob", "erin"} | {f"user{i}" for i in range(40) if i % 3}
    assert state.members == frozenset(cast.uids(expected))
    assert state.admins == frozenset(cast.uids(["bob", "erin"]))
    assert replay_group(chain.signed, cast.lookup) == state
    # Every prefix replays to the state recorded after it.
    for n in range(1, len(chain.changes) + 1, 7):
        assert replay_group(chain.signed[:n], cast.lookup) == chain.states[n - 1]
    # Removal took admin rights with it; a removed admin can do nothing.
    assert cast.uid("alice") not in state.admins
    with pytest.raises(NotAuthorised):
        state.apply(chain.sign("alice", "add", "zed").change)


def _refused(chain: Chain, signer: str, action: str, *names: str) -> GroupChangeRefused:
    with pytest.raises(GroupChangeRefused) as info:
        chain.state.apply(chain.sign(signer, action, *names).change)
    return info.value


@pytest.mark.parametrize(
    ("signer", "action", "names", "error", "reason"),
    [
        ("bob", "add", ("dave",), NotAuthorised, "not_admin"),
        ("dave", "add", ("dave",), NotAuthorised, "not_admin"),  # an outsider adding itself
        ("alice", "add", ("bob",), AlreadyMember, "already_member"),
        ("alice", "add", ("dave", "alice"), AlreadyMember, "already_member"),
        ("bob", "remove", ("carol",), NotAuthorised, "not_admin"),
        ("alice", "remove", ("dave",), NotAMember, "not_a_member"),
        ("alice", "remove", ("alice",), NotAuthorised, "remove_self"),
        ("alice", "remove", ("alice", "bob"), NotAuthorised, "remove_self"),
        ("alice", "leave", ("bob",), NotAuthorised, "leave_for_other"),
        ("bob", "leave", ("bob", "carol"), NotAuthorised, "leave_for_other"),
        ("dave", "leave", ("dave",), NotAMember, "not_a_member"),
        ("bob", "promote", ("carol",), NotAuthorised, "not_admin"),
        ("alice", "promote", ("dave",), NotAMember, "not_a_member"),
        ("alice", "promote", ("alice",), AlreadyAdmin, "already_admin"),
        ("alice", "create", ("alice",), BrokenChain, "second_create"),
    ],
)
def test_every_rule_refuses(
    cast: Cast,
    signer: str,
    action: str,
    names: tuple[str, ...],
    error: type[GroupChangeRefused],
    reason: str,
) -> None:
    chain = Chain.create(cast, "alice", "bob", "carol")
    before = chain.state
    refused = _refused(chain, signer, action, *names)
    assert type(refused) is error
    assert refused.reason == reason
    assert chain.state == before  # nothing changed


def test_the_chain_links(cast: Cast) -> None:
    chain = Chain.create(cast, "alice", "bob")
    chain.append("alice", "add", "carol")
    state = chain.state
    with pytest.raises(StaleChange) as stale:
        state.apply(chain.changes[1].change)  # the head again
    assert stale.value.data == {"seq": 1}
    with pytest.raises(StaleChange):
        state.apply(
            chain.sign("alice", "add", "dave", seq=1, previous=chain.changes[0].digest).change
        )
    with pytest.raises(BrokenChain) as skipped:
        state.apply(chain.sign("alice", "add", "dave", seq=3, previous=state.head).change)
    assert skipped.value.reason == "skipped_seq"
    wrong = chain.sign("alice", "add", "dave", previous=chain.changes[0].digest)
    with pytest.raises(BrokenChain) as broken:
        state.apply(wrong.change)
    assert broken.value.reason == "wrong_previous"
    other = Chain.create(cast, "alice", "bob")
    foreign = chain.sign("alice", "add", "dave", group_id=other.group_id)
    with pytest.raises(WrongContext) as context:
        state.apply(foreign.change)
    assert context.value.reason == "other_group"


def test_apply_checks_a_given_digest(cast: Cast) -> None:
    chain = Chain.create(cast, "alice", "bob")
    change = chain.sign("alice", "add", "carol")
    assert chain.state.apply(change.change) == chain.state.apply(change.change, change.digest)
    with pytest.raises(UsageError):
        chain.state.apply(change.change, bytes(32))
    with pytest.raises(UsageError):
        GroupState.create(chain.changes[0].change, bytes(32))


def test_last_admin_leaving_freezes_all_but_leave(cast: Cast) -> None:
    chain = Chain.create(cast, "alice", "bob", "carol")
    chain.append("alice", "leave", "alice")
    assert chain.state.admins == frozenset()
    assert chain.state.members == frozenset(cast.uids(["bob", "carol"]))
    for signer, action, names in (
        ("bob", "add", ("dave",)),
        ("bob", "remove", ("carol",)),
        ("bob", "promote", ("bob",)),
        ("alice", "add", ("alice",)),
    ):
        assert type(_refused(chain, signer, action, *names)) is NotAuthorised
    chain.append("bob", "leave", "bob")
    chain.append("carol", "leave", "carol")
    assert chain.state.members == frozenset()
    assert replay_group(chain.signed, cast.lookup) == chain.state


def test_too_many_members(cast: Cast) -> None:
    chain = Chain.create(cast, "alice")
    fillers = [f"m{i}" for i in range(MAX_GROUP_MEMBERS - 2)]
    chain.append("alice", "add", *fillers)
    assert len(chain.state.members) == MAX_GROUP_MEMBERS - 1
    refused = _refused(chain, "alice", "add", "x", "y")
    assert type(refused) is TooManyMembers
    assert refused.data == {"limit": MAX_GROUP_MEMBERS}
    chain.append("alice", "add", "x")
    assert len(chain.state.members) == MAX_GROUP_MEMBERS
    assert type(_refused(chain, "alice", "add", "y")) is TooManyMembers
    chain.append("alice", "remove", "x")
    chain.append("alice", "add", "y")
    assert len(chain.state.members) == MAX_GROUP_MEMBERS


def test_a_group_of_1024_created_at_once(cast: Cast) -> None:
    names = ["alice"] + [f"p{i}" for i in range(MAX_GROUP_MEMBERS - 1)]
    chain = Chain.create(cast, *names)
    assert len(chain.state.members) == MAX_GROUP_MEMBERS
    assert len(chain.changes[0].signed) < 40_000
    verified = verify_group_change(chain.signed[0], cast["alice"].public_key)
    assert len(verified.members) == MAX_GROUP_MEMBERS
    chain.append("alice", "remove", *names[1:513])
    chain.append("alice", "promote", *names[513:])
    state = replay_group(chain.signed, cast.lookup)
    assert len(state.members) == 512
    assert len(state.admins) == 512
    # 1025 in one create cannot even be signed, let alone verified.
    with pytest.raises(UsageError):
        Chain.create(cast, *names, "one more")
