"""User ids, safety numbers and direct conversation ids."""

from __future__ import annotations

import hashlib
import re

import pytest

from e2e_recall import (
    SeededRandom,
    SigningKey,
    VerifyKey,
    direct_conversation_id,
    fingerprint,
    format_fingerprint,
    safety_number,
)
from e2e_recall.domains import HASH_DIRECT_CONVERSATION, HASH_FINGERPRINT
from e2e_recall.errors import UsageError

SAFETY_FORMAT = re.compile(r"^(\d{5} ){11}\d{5}$")


@pytest.fixture(scope="module")
def keys() -> list[VerifyKey]:
    rng = SeededRandom(b"identity tests")
    return [SigningKey.generate(rng).public_key for _ in range(3)]


def test_fingerprint(keys: list[VerifyKey]) -> None:
    a = keys[0]
    assert fingerprint(a) == hashlib.sha256(HASH_FINGERPRINT + a.raw).digest()
    assert len(fingerprint(a)) == 32
    assert fingerprint(a) != fingerprint(keys[1])


def test_format_fingerprint() -> None:
    text = format_fingerprint(bytes(range(32)))
    groups = text.split(" ")
    assert len(groups) == 16
    assert all(re.fullmatch(r"[0-9a-f]{4}", g) for g in groups)
    assert text.startswith("0001 0203 ")
    assert "".join(groups) == bytes(range(32)).hex()


def test_safety_number_is_the_same_from_both_sides(keys: list[VerifyKey]) -> None:
    a, b, _ = keys
    assert safety_number(a, b) == safety_number(b, a)


def test_safety_number_format(keys: list[VerifyKey]) -> None:
    number = safety_number(keys[0], keys[1])
    assert SAFETY_FORMAT.match(number), number
    assert len(number.split(" ")) == 12
    assert len(number.replace(" ", "")) == 60


def test_safety_number_changes_when_a_key_changes(keys: list[VerifyKey]) -> None:
    a, b, c = keys
    ab, ac, bc = safety_number(a, b), safety_number(a, c), safety_number(b, c)
    assert len({ab, ac, bc}) == 3
    # Each party contributes its own 30 digits: the unchanged party's half survives.
    digits = {pair: n.replace(" ", "") for pair, n in {"ab": ab, "ac": ac, "bc": bc}.items()}
    halves = {pair: {d[:30], d[30:]} for pair, d in digits.items()}
    assert halves["ab"] & halves["ac"]  # a's digits
    assert halves["ab"] & halves["bc"]  # b's digits
    assert not (halves["ab"] & halves["ac"] & halves["bc"])


def test_safety_number_is_deterministic(keys: list[VerifyKey]) -> None:
    a, b, _ = keys
    assert safety_number(a, b) == safety_number(VerifyKey(a.raw), VerifyKey(b.raw))


def test_safety_number_needs_two_identities(keys: list[VerifyKey]) -> None:
    with pytest.raises(UsageError):
        safety_number(keys[0], VerifyKey(keys[0].raw))


def test_direct_conversation_id(keys: list[VerifyKey]) -> None:
    a, b, c = (fingerprint(k) for k in keys)
    ab = direct_conversation_id(a, b)
    assert ab == direct_conversation_id(b, a)
    assert len(ab) == 16
    low, high = sorted((a, b))
    assert ab == hashlib.sha256(HASH_DIRECT_CONVERSATION + low + high).digest()[:16]
    assert len({ab, direct_conversation_id(a, c), direct_conversation_id(b, c)}) == 3


@pytest.mark.parametrize(
    ("a", "b"),
    [(b"a" * 32, b"a" * 32), (b"a" * 31, b"b" * 32), (b"a" * 32, b"b" * 33), (b"", b"")],
)
def test_direct_conversation_id_refuses_bad_ids(a: bytes, b: bytes) -> None:
    with pytest.raises(UsageError):
        direct_conversation_id(a, b)
