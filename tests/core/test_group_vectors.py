"""The group vectors: every case the contract lists is there, and the checker can fail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from e2e_recall.vectors import run_alt, run_test

FILE = Path(__file__).parent.parent / "vectors" / "group_changes.json"


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FILE.read_text())
    return data


def _tests(data: dict[str, Any], kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(g, t) for g in data["testGroups"] if g["type"] == kind for t in g["tests"]]


def test_every_listed_case_is_covered() -> None:
    data = _load()
    chains = {(t["expect"], t.get("reason")) for _, t in _tests(data, "GroupChain")}
    assert {
        ("success", None),
        ("bad_signature", "bad_signature"),
        ("wrong_signer", "unknown_signer"),
        ("broken_chain", "skipped_seq"),
        ("broken_chain", "wrong_previous"),
        ("broken_chain", "second_create"),
        ("broken_chain", "not_first"),
        ("broken_chain", "empty_chain"),
        ("not_authorised", "not_admin"),
        ("not_authorised", "remove_self"),
        ("not_authorised", "leave_for_other"),
        ("not_a_member", "not_a_member"),
        ("already_member", "already_member"),
        ("already_admin", "already_admin"),
        ("too_many_members", "too_many_members"),
        ("stale_change", "old_seq"),
        ("wrong_context", "other_group"),
        ("decode_failure", "unsorted_members"),
    } <= chains
    singles = {(t["expect"], t.get("reason")) for _, t in _tests(data, "GroupChangeVerify")}
    assert {
        ("success", None),
        ("wrong_signer", "not_by"),
        ("decode_failure", "unsorted_members"),
        ("decode_failure", "duplicate_members"),
        ("decode_failure", "bad_previous"),
        ("unsupported_version", None),
    } <= singles
    assert sum(1 for _ in _tests(data, "GroupChangeTruncated")) > 100


def test_valid_singles_are_signed_again_from_their_seed() -> None:
    for group, test in _tests(_load(), "GroupChangeVerify"):
        if test["result"] == "valid":
            assert "Deterministic" in test["flags"]
            assert run_test(group, test) is None
            assert run_test(group, {**test, "signerPrivateKey": "42" * 32}) is not None
            assert run_alt(group, test) is None


def test_the_checkers_notice_a_wrong_chain_vector() -> None:
    data = _load()
    group, test = next((g, t) for g, t in _tests(data, "GroupChain") if t["result"] == "valid")
    assert run_test(group, test) is None
    expected = test["expected"]
    wrong_members = {**expected, "members": expected["members"][1:]}
    assert run_test(group, {**test, "expected": wrong_members}) is not None
    wrong_head = {**expected, "head": "00" * 32}
    assert run_test(group, {**test, "expected": wrong_head}) is not None
    assert run_alt(group, {**test, "expected": wrong_head}) is not None
    _, refused = next(
        (g, t) for g, t in _tests(data, "GroupChain") if t["expect"] == "not_authorised"
    )
    assert run_test(group, {**refused, "reason": "remove_self"}) is not None
    assert run_test(group, {**refused, "expect": "success", "result": "valid"}) is not None


def test_every_refusal_the_spec_lists_has_a_vector() -> None:
    """Section 16's tables name (refusal, reason) pairs; each has a vector that raises it."""
    text = (FILE.parent.parent.parent / "docs" / "protocol.md").read_text()
    start = text.index("\n## 16. Groups\n")
    end = text.find("\n## ", start + 1)  # section 16 only, not the sections after it
    section = text[start : end if end != -1 else None]
    listed = set(re.findall(r"\| `([a-z_]+)` \| `([a-z_]+)` \|$", section, re.MULTILINE))
    listed |= set(re.findall(r"\(`([a-z_]+)`, `([a-z_]+)`\)", section))
    assert len(listed) >= 15
    data = _load()
    covered = {(t["expect"], t.get("reason")) for g in data["testGroups"] for t in g["tests"]}
    assert listed - covered == set()
