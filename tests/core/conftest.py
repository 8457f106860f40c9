"""Shared fixtures for the core-library tests.

Everything is deterministic: keys and ids come from :class:`SeededRandom`, and
time is the fixed ``World.now`` (the library never reads the clock).  The
fixtures are session-scoped so hypothesis tests can use them too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from e2e_recall import (
    Body,
    DeviceCertificate,
    DeviceSecrets,
    Header,
    MessageKind,
    Revocation,
    SealedMessage,
    SeededRandom,
    SigningKey,
    WrapSuite,
    direct_conversation_id,
    fingerprint,
    issue_device_certificate,
    seal_message,
    sign_revocation,
)

MINUTE = 60_000
DAY = 24 * 60 * MINUTE


@dataclass(frozen=True)
class World:
    """Two users, an attacker, a relay key, and Bob's devices (one per suite)."""

    now: int
    minute: int
    day: int
    alice: SigningKey
    bob: SigningKey
    mallory: SigningKey
    relay: SigningKey
    alice_id: bytes
    bob_id: bytes
    mallory_id: bytes
    conversation: bytes
    other_conversation: bytes
    message_id: bytes
    other_message_id: bytes
    alice_device_id: bytes
    bob_device: DeviceSecrets
    bob_cert: DeviceCertificate
    bob_device_xwing: DeviceSecrets
    bob_cert_xwing: DeviceCertificate
    bob_device2: DeviceSecrets
    bob_cert2: DeviceCertificate

    def header(self, **changes: Any) -> Header:
        """Alice's header for ``message_id`` in the Alice-Bob conversation."""
        base = Header(
            message_id=self.message_id,
            conversation_id=self.conversation,
            sender=self.alice_id,
            sender_device=self.alice_device_id,
            sent_at=self.now,
            recall_sealed_until=self.now + self.day,
            recall_opened_until=self.now + 10 * self.minute,
            kind=MessageKind.TEXT,
            replaces=None,
        )
        return replace(base, **changes)

    def seal(
        self, text: str = "hello Bob", header: Header | None = None, seed: bytes = b"seal"
    ) -> SealedMessage:
        return seal_message(header or self.header(), Body(text), self.alice, rng=SeededRandom(seed))

    def revocation(self, **changes: Any) -> Revocation:
        args: dict[str, Any] = {
            "message_id": self.message_id,
            "conversation_id": self.conversation,
            "issued_at": self.now + self.minute,
            "replacement_id": None,
        }
        args.update(changes)
        signer = args.pop("signer", self.alice)
        return sign_revocation(signer, **args)


def _build_world() -> World:
    rng = SeededRandom(b"tests/core world")
    alice = SigningKey.generate(rng)
    bob = SigningKey.generate(rng)
    mallory = SigningKey.generate(rng)
    relay = SigningKey.generate(rng)
    alice_id, bob_id = fingerprint(alice.public_key), fingerprint(bob.public_key)
    now = 1_790_000_000_000

    def device(suite: WrapSuite) -> tuple[DeviceSecrets, DeviceCertificate]:
        secrets = DeviceSecrets.generate(suite, rng)
        cert = issue_device_certificate(
            bob,
            secrets.device_id,
            secrets.signing_key.public_key,
            secrets.wrap_key.public_key,
            created_at=now - DAY,
            expires_at=now + 365 * DAY,
        )
        return secrets, cert

    bob_device, bob_cert = device(WrapSuite.X25519)
    bob_device_xwing, bob_cert_xwing = device(WrapSuite.XWING)
    bob_device2, bob_cert2 = device(WrapSuite.X25519)
    return World(
        now=now,
        minute=MINUTE,
        day=DAY,
        alice=alice,
        bob=bob,
        mallory=mallory,
        relay=relay,
        alice_id=alice_id,
        bob_id=bob_id,
        mallory_id=fingerprint(mallory.public_key),
        conversation=direct_conversation_id(alice_id, bob_id),
        other_conversation=rng(16),
        message_id=rng(16),
        other_message_id=rng(16),
        alice_device_id=rng(16),
        bob_device=bob_device,
        bob_cert=bob_cert,
        bob_device_xwing=bob_device_xwing,
        bob_cert_xwing=bob_cert_xwing,
        bob_device2=bob_device2,
        bob_cert2=bob_cert2,
    )


@pytest.fixture(scope="session")
def world() -> World:
    return _build_world()
