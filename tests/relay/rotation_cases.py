"""Certificates for rotation tests: a good one, and the bad ones with the refusal each gets.

Shared by the HTTP tests (test_wrap_keys.py) and the WebSocket ones
(test_wrap_keys_ws.py), which must refuse each case with the same code.
"""

from __future__ import annotations

import os
from typing import Any

import e2e_recall as er
from e2e_recall.rotation import issue_expiring_certificate

from driver import MINUTE, Device, Person

DAY = 24 * 60 * MINUTE
LIFETIME = 14 * DAY


def issue(person: Person, device: Device, wrap: er.WrapPrivateKey, **over: Any) -> bytes:
    """A certificate for ``device`` with ``wrap``, dated now; ``over`` changes a field."""
    now = person.relay.clock.now
    return issue_expiring_certificate(
        over.get("identity", person.identity),
        over.get("device_id", device.secrets.device_id),
        over.get("signing", device.secrets.signing_key.public_key),
        wrap.public_key,
        created_at=over.get("created_at", now),
        lifetime=over.get("lifetime", LIFETIME),
    ).signed


def bad_rotations(alice: Person, bob: Person) -> list[tuple[bytes, int, str]]:
    """Certificates Bob's device may not rotate to, each with its status and error code.

    Made at the relay's current time; the first case needs a day past Bob's
    registration (``not_later`` is dated two days back).
    """
    clock = bob.relay.clock
    dev = bob.devices[0]
    new = er.WrapPrivateKey.generate(er.WrapSuite.X25519)
    other_signing = er.SigningKey.generate().public_key
    return [
        (b"not a certificate", 400, "decode_failure"),
        (issue(bob, dev, dev.secrets.wrap_key), 400, "same_wrap_key"),
        (issue(bob, dev, new, created_at=clock.now - 2 * DAY), 409, "not_later"),
        (issue(bob, dev, new, device_id=os.urandom(16)), 400, "other_device"),
        (issue(bob, dev, new, signing=other_signing), 400, "signing_key_changed"),
        (issue(bob, dev, new, lifetime=91 * DAY), 400, "lifetime_too_long"),
        (issue(bob, dev, new, created_at=clock.now - DAY, lifetime=DAY // 2), 400, "expired"),
        (issue(bob, dev, new, identity=alice.identity), 403, "bad_signature"),
        (
            er.issue_device_certificate(
                bob.identity,
                dev.secrets.device_id,
                dev.secrets.signing_key.public_key,
                new.public_key,
                created_at=clock.now,
            ).signed,
            400,
            "no_expiry",
        ),
    ]
