"""Whole chains: replay_group, what a relay could try, and hypothesis properties."""

from __future__ import annotations

from typing import Any

import pytest
from group_cast import Cast, Chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_recall import (
    BrokenChain,
    GroupChangeRefused,
    NotAuthorised,
    ProtocolError,
    SignatureInvalid,
    StaleChange,
    VerifyKey,
    WrongContext,
    WrongSigner,
    replay_group,
    verify_group_change,
    wire,
)
from e2e_recall.domains import SIG_GROUP_CHANGE
from e2e_recall.signed import seal_signed
from e2e_recall.vectors.fixtures import flip_bit

CAST = Cast(b"tests group replay")
NAMES = [f"u{i}" for i in range(8)]


def _sample_chain() -> Chain:
    chain = Chain.create(CAST, "u0", "u1", "u2")
    chain.append("u0", "add", "u3", "u4")
    chain.append("u0", "promote", "u1")
    chain.append("u1", "remove", "u2")
    chain.append("u3", "leave", "u3")
    chain.append("u1", "add", "u5")
    return chain


SAMPLE = _sample_chain()


def test_replay_gives_the_state_of_applying_each_change() -> None:
    assert replay_group(SAMPLE.signed, CAST.lookup) == SAMPLE.state
    assert replay_group(SAMPLE.signed, CAST.lookup, group_id=SAMPLE.group_id) == SAMPLE.state


def test_replay_refuses_an_empty_chain_and_another_group() -> None:
    with pytest.raises(BrokenChain) as empty:
        replay_group([], CAST.lookup)
    assert empty.value.reason == "empty_chain"
    with pytest.raises(WrongContext) as other:
        replay_group(SAMPLE.signed, CAST.lookup, group_id=bytes(16))
    assert other.value.reason == "other_group"


def test_replay_refuses_an_unknown_signer_and_a_lying_key_lookup() -> None:
    with pytest.raises(WrongSigner) as unknown:
        replay_group(SAMPLE.signed, lambda user_id: None)
    assert unknown.value.reason == "unknown_signer"

    def lying(user_id: bytes) -> VerifyKey:
        return CAST["u7"].public_key  # a directory that hands out the wrong key

    with pytest.raises(SignatureInvalid):
        replay_group(SAMPLE.signed, lying)


def test_a_relay_cannot_drop_reorder_repeat_or_splice() -> None:
    signed = SAMPLE.signed
    cases: list[tuple[list[bytes], type[ProtocolError], str]] = [
        (signed[:2] + signed[3:], BrokenChain, "skipped_seq"),
        ([*signed[:2], signed[3], signed[2], *signed[4:]], BrokenChain, "skipped_seq"),
        ([*signed[:3], signed[2], *signed[3:]], StaleChange, "old_seq"),
        (signed[1:], BrokenChain, "not_first"),
        ([signed[0], signed[0]], StaleChange, "old_seq"),
    ]
    other = Chain.create(CAST, "u0", "u1", "u2")
    other.append("u0", "add", "u6")
    cases.append(([signed[0], other.signed[1]], WrongContext, "other_group"))
    # Same group id, a rival history: the second link does not name this chain's first.
    rival = Chain(CAST, SAMPLE.group_id)
    rival.append("u0", "create", "u0", "u1")
    rival.append("u0", "add", "u6")
    cases.append(([signed[0], rival.signed[1]], BrokenChain, "wrong_previous"))
    for chain, error, reason in cases:
        with pytest.raises(error) as info:
            replay_group(chain, CAST.lookup)
        assert info.value.reason == reason


def test_a_forged_add_by_the_relay_is_refused() -> None:
    # Signed as itself, the relay is no admin (nor a member) ...
    as_itself = SAMPLE.sign("relay", "add", "u7")
    with pytest.raises(NotAuthorised):
        replay_group([*SAMPLE.signed, as_itself.signed], CAST.lookup)
    # ... and it holds no admin's key, so a change in an admin's name fails its signature.
    payload = wire.decode(wire.decode(as_itself.signed)["body"])
    payload["by"] = CAST.uid("u0")
    in_their_name = seal_signed(payload, SIG_GROUP_CHANGE, CAST["relay"])
    with pytest.raises(SignatureInvalid):
        replay_group([*SAMPLE.signed, in_their_name], CAST.lookup)


# -- properties ------------------------------------------------------------------------------

_ACTIONS = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(["add", "remove", "leave", "promote"]),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
)


def _grow(steps: list[tuple[str, str, list[str]]]) -> tuple[Chain, int]:
    """A chain from any sequence of attempts: the refused ones are skipped (and counted)."""
    chain = Chain.create(CAST, "u0", "u1")
    refused = 0
    for signer, action, names in steps:
        if action == "leave":
            names = [signer]
        candidate = chain.sign(signer, action, *names)
        try:
            state = chain.state.apply(candidate.change, candidate.digest)
        except GroupChangeRefused:
            refused += 1
            continue
        chain.changes.append(candidate)
        chain.states.append(state)
    return chain, refused


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ACTIONS, max_size=25))
def test_any_sequence_of_changes_replays_to_the_same_state(steps: Any) -> None:
    chain, _ = _grow(steps)
    first = replay_group(chain.signed, CAST.lookup)
    assert first == chain.state
    assert replay_group(list(chain.signed), CAST.lookup) == first  # deterministic
    for state in chain.states:
        assert state.admins <= state.members
    assert [s.seq for s in chain.states] == list(range(len(chain.changes)))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7), st.integers(0, 5))
def test_any_bit_flip_of_a_signed_change_is_refused(index: int, bit: int, which: int) -> None:
    change = SAMPLE.changes[which]
    signed = change.signed
    tampered = flip_bit(signed, index % len(signed), bit)
    signer = CAST.lookup(change.change.by)
    assert signer is not None
    with pytest.raises(ProtocolError):
        verify_group_change(tampered, signer)
    chain = [*SAMPLE.signed[:which], tampered, *SAMPLE.signed[which + 1 :]]
    with pytest.raises(ProtocolError):
        replay_group(chain, CAST.lookup)


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(len(SAMPLE.changes))))
def test_only_the_chain_order_replays(order: list[int]) -> None:
    chain = [SAMPLE.signed[i] for i in order]
    if order == sorted(order):
        assert replay_group(chain, CAST.lookup) == SAMPLE.state
    else:
        with pytest.raises(ProtocolError):
            replay_group(chain, CAST.lookup)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_a_protocol_error_never_a_crash(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        replay_group([data], CAST.lookup)
    with pytest.raises(ProtocolError):
        replay_group([SAMPLE.signed[0], data], CAST.lookup)
