"""Wrapping-key rotation (protocol section 5.1): the rule, the schedule, and its vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e_recall import SeededRandom, WrapSuite, verify_device_certificate
from e2e_recall.device import DeviceCertificate
from e2e_recall.errors import CertificateExpired, RotationRefused, UsageError
from e2e_recall.rotation import (
    DEFAULT_LIFETIME_MS,
    DEFAULT_ROTATE_EVERY_MS,
    check_rotation,
    issue_expiring_certificate,
    rotation_due,
    usable_until,
)
from e2e_recall.signing import SigningKey
from e2e_recall.vectors import run_test
from e2e_recall.wrapping import WrapPrivateKey

VECTORS = Path(__file__).parent.parent / "vectors" / "device_rotation.json"
DAY = 24 * 60 * 60 * 1000
MAX = 90 * DAY


def _issue(world: Any, wrap: WrapPrivateKey, created_at: int, **over: Any) -> DeviceCertificate:
    device = world.bob_device
    return issue_expiring_certificate(
        over.get("identity", world.bob),
        over.get("device_id", device.device_id),
        over.get("signing", device.signing_key.public_key),
        wrap.public_key,
        created_at=created_at,
        lifetime=over.get("lifetime", DEFAULT_LIFETIME_MS),
    )


@pytest.fixture
def fresh_wrap() -> WrapPrivateKey:
    return WrapPrivateKey.generate(WrapSuite.X25519, SeededRandom(b"rotation"))


def test_a_rotation_a_week_later_is_accepted(world: Any, fresh_wrap: WrapPrivateKey) -> None:
    current = _issue(world, world.bob_device.wrap_key, world.now)
    later = world.now + DEFAULT_ROTATE_EVERY_MS
    new = _issue(world, fresh_wrap, later)
    checked = check_rotation(current, new.signed, world.bob.public_key, now=later, max_lifetime=MAX)
    assert checked.wrap_key.key_id == fresh_wrap.public_key.key_id
    assert checked.expires_at == later + DEFAULT_LIFETIME_MS
    assert usable_until(current, checked) == world.now + DEFAULT_LIFETIME_MS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"wrap": "same"}, "same_wrap_key"),
        ({"created": -1}, "not_later"),
        ({"created": 0}, "not_later"),
        ({"device_id": b"\x07" * 16}, "other_device"),
        ({"signing": "other"}, "signing_key_changed"),
        ({"lifetime": MAX + 1}, "lifetime_too_long"),
    ],
)
def test_each_rotation_rule_refuses(
    world: Any, fresh_wrap: WrapPrivateKey, change: dict[str, Any], reason: str
) -> None:
    current = _issue(world, world.bob_device.wrap_key, world.now)
    created = world.now + change.pop("created", DAY)
    wrap = world.bob_device.wrap_key if change.pop("wrap", None) else fresh_wrap
    if change.get("signing") == "other":
        change["signing"] = SigningKey.generate(SeededRandom(b"other")).public_key
    new = _issue(world, wrap, created, **change)
    with pytest.raises(RotationRefused) as refused:
        check_rotation(current, new.signed, world.bob.public_key, now=created, max_lifetime=MAX)
    assert refused.value.reason == reason


def test_an_expired_or_foreign_rotation_is_refused(world: Any, fresh_wrap: WrapPrivateKey) -> None:
    current = _issue(world, world.bob_device.wrap_key, world.now)
    short = _issue(world, fresh_wrap, world.now + 1, lifetime=10)
    with pytest.raises(CertificateExpired):
        check_rotation(
            current, short.signed, world.bob.public_key, now=world.now + 11, max_lifetime=MAX
        )
    theirs = _issue(world, fresh_wrap, world.now + 1, identity=world.mallory)
    with pytest.raises(RotationRefused) as refused:
        check_rotation(
            current, theirs.signed, world.mallory.public_key, now=world.now + 1, max_lifetime=MAX
        )
    assert refused.value.reason == "other_user"


def test_an_expired_current_certificate_can_still_be_rotated(
    world: Any, fresh_wrap: WrapPrivateKey
) -> None:
    current = _issue(world, world.bob_device.wrap_key, world.now)
    back = world.now + 60 * DAY
    new = _issue(world, fresh_wrap, back)
    check_rotation(current, new.signed, world.bob.public_key, now=back, max_lifetime=MAX)


def test_rotation_is_due_by_age_expiry_or_a_missing_expiry(world: Any) -> None:
    cert = _issue(world, world.bob_device.wrap_key, world.now)
    every = DEFAULT_ROTATE_EVERY_MS
    assert not rotation_due(cert, now=world.now, rotate_every=every)
    assert not rotation_due(cert, now=world.now + every - 1, rotate_every=every)
    assert rotation_due(cert, now=world.now + every, rotate_every=every)
    assert rotation_due(cert, now=cert.expires_at or 0, rotate_every=10 * every)
    assert rotation_due(world.bob_cert, now=world.now, rotate_every=every) == (
        world.bob_cert.expires_at is None or world.now >= world.bob_cert.created_at + every
    )


def test_a_lifetime_must_be_positive(world: Any, fresh_wrap: WrapPrivateKey) -> None:
    with pytest.raises(UsageError):
        _issue(world, fresh_wrap, world.now, lifetime=0)


def test_a_stored_certificate_is_read_without_the_time_check(world: Any) -> None:
    cert = _issue(world, world.bob_device.wrap_key, world.now, lifetime=5)
    with pytest.raises(CertificateExpired):
        verify_device_certificate(cert.signed, world.bob.public_key, now=world.now + 5)
    assert verify_device_certificate(cert.signed, world.bob.public_key, now=None) == cert


def _tests() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = json.loads(VECTORS.read_text())
    return [(g, t) for g in data["testGroups"] for t in g["tests"]]


def test_the_rotation_vectors_pass_and_cover_each_rule() -> None:
    cases = _tests()
    assert [run_test(g, t) for g, t in cases] == [None] * len(cases)
    reasons = {t.get("reason") for _, t in cases if t["result"] == "invalid"}
    assert {
        "same_wrap_key",
        "not_later",
        "other_device",
        "signing_key_changed",
        "no_expiry",
        "lifetime_too_long",
        "outside_validity",
        "other_user",
    } <= reasons
    assert sum(t["result"] == "valid" for _, t in cases) >= 4


def test_the_rotation_checker_notices_a_wrong_vector() -> None:
    cases = _tests()
    group, valid = next((g, t) for g, t in cases if t["result"] == "valid")
    assert run_test(group, {**valid, "maxLifetime": DAY}) is not None
    lying = {**valid, "expected": {**valid["expected"], "keyId": "00" * 16}}
    assert run_test(group, lying) is not None
    group, invalid = next((g, t) for g, t in cases if t.get("reason") == "same_wrap_key")
    assert run_test(group, {**invalid, "reason": "not_later"}) is not None
