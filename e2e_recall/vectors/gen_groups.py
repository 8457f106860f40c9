"""Vectors for groups: one signed change on its own, and whole chains replayed.

Single changes (``GroupChangeVerify``) test the signature and the fields;
chains (``GroupChain``) test the membership rules, each invalid chain a
valid prefix followed by the one change that breaks one rule, so a checker
that refuses it for any other reason is caught by the ``reason`` it gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import wire
from ..domains import MAX_GROUP_MEMBERS, SIG_GROUP_CHANGE, SIG_REVOCATION
from ..group import (
    GroupState,
    group_change_digest,
    group_conversation_id,
    replay_group,
    sign_group_change,
)
from ..identity import fingerprint
from ..signing import SigningKey
from .fixtures import MINUTE, T0, Context, container
from .format import VectorFile
from .signatures import SignedCase, add_signature_attacks
from .truncation import add_truncations

__all__ = ["group_vectors"]


class _Builder:
    """A chain under construction from the vector cast; nothing here checks the rules."""

    def __init__(self, ctx: Context, group_id: bytes | None = None) -> None:
        self.ctx = ctx
        self.group_id = group_id or ctx.new_id()
        self.signed: list[bytes] = []

    def next(self, signer: SigningKey, action: str, members: Iterable[bytes], **over: Any) -> bytes:
        seq = over.pop("seq", len(self.signed))
        if "previous" in over:
            previous = over.pop("previous")
        else:
            previous = group_change_digest(self.signed[seq - 1]) if seq else None
        return sign_group_change(
            signer,
            group_id=over.pop("group_id", self.group_id),
            seq=seq,
            previous=previous,
            action=action,
            members=members,
            issued_at=over.pop("issued_at", T0 + seq * MINUTE),
        ).signed

    def add(self, signer: SigningKey, action: str, members: Iterable[bytes]) -> bytes:
        self.signed.append(self.next(signer, action, members))
        return self.signed[-1]


def _payload(ctx: Context, signer: SigningKey, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "group_id": ctx.conversation,
        "seq": 0,
        "previous": None,
        "action": "create",
        "members": sorted([ctx.uid(signer), ctx.uid(ctx.bob)]),
        "by": ctx.uid(signer),
        "issued_at": T0,
    }
    body.update(over)
    return body


def _expected(body: dict[str, Any], signed: bytes) -> dict[str, Any]:
    return {
        "expected": {
            "groupId": body["group_id"].hex(),
            "seq": body["seq"],
            "previous": None if body["previous"] is None else body["previous"].hex(),
            "action": body["action"],
            "members": [m.hex() for m in body["members"]],
            "by": body["by"].hex(),
            "issuedAt": body["issued_at"],
            "digest": group_change_digest(signed).hex(),
            "conversationId": group_conversation_id(body["group_id"]).hex(),
        }
    }


def _single(ctx: Context, vf: VectorFile) -> None:
    group = vf.group("GroupChangeVerify")
    alice, bob = ctx.alice, ctx.bob
    create = _payload(ctx, alice)
    later = _payload(
        ctx,
        alice,
        seq=7,
        previous=ctx.rng(32),
        action="remove",
        members=[ctx.uid(ctx.carol)],
        issued_at=T0 + 9 * MINUTE,
    )
    leave = _payload(ctx, bob, seq=3, previous=ctx.rng(32), action="leave", members=[ctx.uid(bob)])
    for comment, signer, body in (
        ("create of two", alice, create),
        ("remove at seq 7", alice, later),
        ("leave", bob, leave),
    ):
        case = SignedCase(signer, SIG_GROUP_CHANGE, wire.encode(body))
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            **case.fields(seed=True),
            **_expected(body, case.wire),
        )
    base = SignedCase(alice, SIG_GROUP_CHANGE, wire.encode(create))
    add_signature_attacks(ctx, group, base, [SIG_REVOCATION], dict)

    def signed(
        comment: str,
        expect: str,
        flags: list[str],
        body: dict[str, Any] | bytes,
        signer: SigningKey = alice,
        verify_with: SigningKey | None = None,
        reason: str | None = None,
    ) -> None:
        raw = body if isinstance(body, bytes) else wire.encode(body)
        case = SignedCase(signer, SIG_GROUP_CHANGE, raw)
        key = None if verify_with is None else verify_with.public_key.raw
        extra = {} if reason is None else {"reason": reason}
        group.add(comment, expect, flags, **case.fields(key), **extra)

    signed(
        "signed by Carol in Alice's name, verified with Alice's key",
        "bad_signature",
        ["WrongSigner"],
        create,
        signer=ctx.carol,
        verify_with=alice,
    )
    signed(
        "signed by Carol in Alice's name, verified with Carol's key",
        "wrong_signer",
        ["WrongSigner"],
        create,
        signer=ctx.carol,
        reason="not_by",
    )
    low, high = sorted([ctx.uid(alice), ctx.uid(bob)])
    signed(
        "members unsorted",
        "decode_failure",
        ["Unsorted"],
        _payload(ctx, alice, members=[high, low]),
        reason="unsorted_members",
    )
    signed(
        "a member listed twice",
        "decode_failure",
        ["Unsorted"],
        _payload(ctx, alice, members=[low, low, high]),
        reason="duplicate_members",
    )
    signed(
        "no members",
        "decode_failure",
        ["BadLength"],
        _payload(ctx, alice, members=[]),
        reason="bad_length",
    )
    many = sorted(ctx.rng(32) for _ in range(MAX_GROUP_MEMBERS + 1))
    signed(
        f"{MAX_GROUP_MEMBERS + 1} members in one change",
        "decode_failure",
        ["TooMany"],
        _payload(ctx, alice, members=many),
        reason="bad_length",
    )
    signed(
        "a member id of 31 bytes",
        "decode_failure",
        ["BadLength"],
        _payload(ctx, alice, members=[bytes(31)]),
        reason="bad_length",
    )
    signed(
        "a member id as a string",
        "decode_failure",
        ["TypeConfusion"],
        _payload(ctx, alice, members=["a" * 32]),
        reason="wrong_type",
    )
    signed(
        "seq 0 with a previous digest",
        "decode_failure",
        ["HeaderRule"],
        _payload(ctx, alice, previous=bytes(32)),
        reason="bad_previous",
    )
    signed(
        "seq 1 without a previous digest",
        "decode_failure",
        ["HeaderRule"],
        _payload(ctx, alice, seq=1, action="add"),
        reason="bad_previous",
    )
    signed(
        "unknown action",
        "decode_failure",
        ["UnknownValue"],
        _payload(ctx, alice, action="demote"),
        reason="unknown_value",
    )
    signed(
        "group id of 17 bytes",
        "decode_failure",
        ["BadLength"],
        _payload(ctx, alice, group_id=bytes(17)),
        reason="bad_length",
    )
    signed(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        _payload(ctx, alice, version=2),
    )
    signed(
        "unknown field",
        "decode_failure",
        ["UnknownField"],
        _payload(ctx, alice, name="friends"),
        reason="unknown_field",
    )
    no_by = _payload(ctx, alice)
    del no_by["by"]
    signed("no by", "decode_failure", ["MissingField"], no_by, reason="missing_field")
    signed(
        "body with a trailing byte",
        "decode_failure",
        ["TrailingBytes"],
        wire.encode(create) + b"\xc0",
    )

    truncation = vf.group(
        "GroupChangeTruncated",
        note="every proper prefix of one valid group change",
        signerPublicKey=alice.public_key.raw.hex(),
    )
    whole = base.wire
    add_truncations(truncation, whole, "signed", what="group change")
    truncation.add(
        "one trailing byte", "decode_failure", ["TrailingBytes"], signed=(whole + b"\x00").hex()
    )


def _state_out(state: GroupState, chain: list[bytes]) -> dict[str, Any]:
    return {
        "expected": {
            "groupId": state.group_id.hex(),
            "seq": state.seq,
            "head": state.head.hex(),
            "members": sorted(m.hex() for m in state.members),
            "admins": sorted(a.hex() for a in state.admins),
            "conversationId": state.conversation_id.hex(),
            "digests": [group_change_digest(signed).hex() for signed in chain],
        }
    }


def _chains(ctx: Context, vf: VectorFile) -> None:
    alice, bob, carol, dave = ctx.alice, ctx.bob, ctx.carol, ctx.relay
    outsider = SigningKey.generate(ctx.rng)
    cast = (alice, bob, carol, dave, outsider)
    a, b, c, d, o = (ctx.uid(key) for key in cast)
    group = vf.group(
        "GroupChain",
        note="replay_group: verify and apply every change in order; keys maps user id to key",
        keys={ctx.uid(key).hex(): key.public_key.raw.hex() for key in cast},
    )

    def add(
        comment: str, expect: str, flags: list[str], chain: list[bytes], reason: str | None = None
    ) -> None:
        fields: dict[str, Any] = {"changes": [signed.hex() for signed in chain]}
        if expect == "success":
            state = _replay(chain, cast)
            fields |= _state_out(state, chain)
        if reason is not None:
            fields["reason"] = reason
        group.add(comment, expect, flags, **fields)

    main = _Builder(ctx)
    main.add(alice, "create", [a, b])
    add("a create alone", "success", ["Valid"], list(main.signed))
    main.add(alice, "add", [c, d])
    main.add(alice, "promote", [b])
    main.add(bob, "remove", [a])
    main.add(carol, "leave", [c])
    main.add(bob, "add", [o])
    add("create, add, promote, remove an admin, leave, add", "success", ["Valid"], main.signed)
    head = list(main.signed)  # members bob (the admin), dave, the outsider

    def broken(
        comment: str,
        expect: str,
        reason: str,
        change: bytes,
        flags: list[str] | None = None,
        prefix: list[bytes] | None = None,
    ) -> None:
        add(comment, expect, flags or ["GroupRule"], [*(prefix or head), change], reason)

    builder = _Builder(ctx, main.group_id)
    builder.signed = list(head)
    broken(
        "a non-admin member adds",
        "not_authorised",
        "not_admin",
        builder.next(dave, "add", [c]),
    )
    broken(
        "a non-member adds themselves",
        "not_authorised",
        "not_admin",
        builder.next(carol, "add", [c]),
    )
    broken(
        "an admin adds a member", "already_member", "already_member", builder.next(bob, "add", [d])
    )
    broken(
        "an admin removes a non-member",
        "not_a_member",
        "not_a_member",
        builder.next(bob, "remove", [c]),
    )
    broken(
        "an admin removes themselves",
        "not_authorised",
        "remove_self",
        builder.next(bob, "remove", [b]),
    )
    broken(
        "a member leaves for someone else",
        "not_authorised",
        "leave_for_other",
        builder.next(dave, "leave", [o]),
    )
    broken("a non-member leaves", "not_a_member", "not_a_member", builder.next(carol, "leave", [c]))
    broken(
        "promote a non-member", "not_a_member", "not_a_member", builder.next(bob, "promote", [a])
    )
    broken("promote an admin", "already_admin", "already_admin", builder.next(bob, "promote", [b]))
    broken("a second create", "broken_chain", "second_create", builder.next(bob, "create", [b]))
    seq = len(head)
    broken(
        "seq skipped",
        "broken_chain",
        "skipped_seq",
        builder.next(bob, "add", [c], seq=seq + 1, previous=group_change_digest(head[-1])),
        ["ChainBreak"],
    )
    broken(
        "previous names an older change",
        "broken_chain",
        "wrong_previous",
        builder.next(bob, "add", [c], previous=group_change_digest(head[-2])),
        ["ChainBreak"],
    )
    broken("an old change replayed", "stale_change", "old_seq", head[2], ["ChainBreak"])
    broken("the head repeated", "stale_change", "old_seq", head[-1], ["ChainBreak"])
    other = _Builder(ctx)
    other.add(alice, "create", [a, b])
    other.add(alice, "add", [c])
    broken(
        "a change of another group",
        "wrong_context",
        "other_group",
        other.signed[1],
        ["WrongContext"],
    )
    add(
        "another group's create after this one's",
        "wrong_context",
        ["WrongContext"],
        [*head[:1], other.signed[0]],
        "other_group",
    )
    add(
        "a chain that does not start with seq 0",
        "broken_chain",
        ["ChainBreak"],
        head[1:],
        "not_first",
    )
    add("an empty chain", "broken_chain", ["ChainBreak"], [], "empty_chain")
    starts = _Builder(ctx)
    add(
        "a chain that starts with an add",
        "broken_chain",
        ["ChainBreak"],
        [starts.next(alice, "add", [a, b])],
        "not_a_create",
    )
    add(
        "a create that leaves out its creator",
        "not_a_member",
        ["GroupRule"],
        [starts.next(alice, "create", [b, c])],
        "creator_not_member",
    )
    unknown = SigningKey.generate(ctx.rng)
    broken(
        "signed by someone not in keys",
        "wrong_signer",
        "unknown_signer",
        builder.next(unknown, "add", [c]),
        ["WrongSigner"],
    )
    in_name = wire.decode(wire.decode(builder.next(dave, "add", [c]))["body"])
    in_name["by"] = b
    forged_body = wire.encode(in_name)
    broken(
        "signed by a non-admin in an admin's name",
        "bad_signature",
        "bad_signature",
        container(forged_body, dave.sign(SIG_GROUP_CHANGE, forged_body)),
        ["WrongSigner"],
    )
    tampered = bytearray(builder.next(bob, "add", [c]))
    tampered[-1] ^= 1  # the signature's last byte
    broken(
        "one bit of a change flipped",
        "bad_signature",
        "bad_signature",
        bytes(tampered),
        ["Tampered"],
    )
    unsorted = _payload(
        ctx,
        bob,
        group_id=main.group_id,
        seq=seq,
        previous=group_change_digest(head[-1]),
        action="add",
        members=sorted([a, c], reverse=True),
        issued_at=T0,
    )
    unsorted_bytes = wire.encode(unsorted)
    broken(
        "members unsorted in a signed add",
        "decode_failure",
        "unsorted_members",
        container(unsorted_bytes, bob.sign(SIG_GROUP_CHANGE, unsorted_bytes)),
        ["Unsorted"],
    )

    full = _Builder(ctx)
    members = sorted([a, *(ctx.rng(32) for _ in range(MAX_GROUP_MEMBERS - 1))])
    full.add(alice, "create", members)
    add(f"a create of {MAX_GROUP_MEMBERS} members", "success", ["Valid", "TooMany"], full.signed)
    add(
        f"an add to a group of {MAX_GROUP_MEMBERS}",
        "too_many_members",
        ["TooMany"],
        [*full.signed, full.next(alice, "add", [b])],
        "too_many_members",
    )

    frozen = _Builder(ctx)
    frozen.add(alice, "create", [a, b, c])
    frozen.add(alice, "leave", [a])
    add("the last admin leaves", "success", ["Valid"], frozen.signed)
    add(
        "no admin left: a member adds",
        "not_authorised",
        ["GroupRule"],
        [*frozen.signed, frozen.next(bob, "add", [d])],
        "not_admin",
    )
    frozen.add(bob, "leave", [b])
    add("no admin left: members may still leave", "success", ["Valid"], frozen.signed)


def _replay(chain: list[bytes], keys: Iterable[SigningKey]) -> GroupState:
    table = {fingerprint(key.public_key): key.public_key for key in keys}
    return replay_group(chain, table.get)


def group_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Groups: signed membership changes and their chain",
        [
            "GroupChangeVerify: verify one change with signerPublicKey under the group-change",
            "label, decode it, and check that by is the signer's fingerprint.",
            "GroupChain: replay the chain with the group's keys (user id -> identity key),",
            "applying the membership rules; invalid chains break exactly one rule, at the end.",
        ],
    )
    _single(ctx, vf)
    _chains(ctx, vf)
    return vf
