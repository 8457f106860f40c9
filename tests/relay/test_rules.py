"""The relay's rules driven directly, without HTTP: Accounts, Messaging, Recalls, Inbox.

The same :class:`relay.services.Services` the app builds, over a real SQLite
file, with a controlled clock.  These are the rules an HTTP handler only
translates, so they are tested here where a failure names the rule: the
storage quota (checked in the inserting transaction, also for a recall's
replacement, also under concurrent sends), recall by a non-sender, and the
inbox's paging and acknowledgements.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import e2e_recall as er
from e2e_recall.auth import sign_login, sign_registration
from relay.accounts import Session
from relay.config import load_config
from relay.errors import PayloadTooLarge, RelayError
from relay.messaging import Wrap
from relay.metrics import Metrics
from relay.services import Services
from relay.storage.base import MessageState
from relay.storage.sqlite import SqliteStorage

from driver import MINUTE, Clock

QUOTA = 6000


@dataclass
class Member:
    """A user with one device, registered and logged in through Accounts."""

    identity: er.SigningKey = field(default_factory=er.SigningKey.generate)
    device: er.DeviceSecrets = field(default_factory=er.DeviceSecrets.generate)
    session: Session | None = None

    @property
    def user_id(self) -> bytes:
        return er.fingerprint(self.identity.public_key)


@dataclass
class World:
    services: Services
    clock: Clock
    alice: Member
    bob: Member

    async def join(self, member: Member) -> Member:
        accounts, now = self.services.accounts, self.clock.now
        cert = er.issue_device_certificate(
            member.identity,
            member.device.device_id,
            member.device.signing_key.public_key,
            member.device.wrap_key.public_key,
            created_at=now,
        ).signed
        challenge, _ = await accounts.challenge()
        id_sig, dev_sig = sign_registration(
            member.identity,
            member.device.signing_key,
            relay=accounts.relay_id,
            challenge=challenge,
            certificate=cert,
        )
        await accounts.register(
            member.identity.public_key.raw, cert, challenge, id_sig, dev_sig, None
        )
        challenge, _ = await accounts.challenge()
        signature = sign_login(
            member.device.signing_key,
            relay=accounts.relay_id,
            device_id=member.device.device_id,
            challenge=challenge,
        )
        token, _ = await accounts.login(member.device.device_id, challenge, signature)
        member.session = await accounts.authenticate(f"Bearer {token}")
        return member

    def seal(
        self, sender: Member, to: Member, size: int, replaces: bytes | None = None
    ) -> tuple[er.Header, bytes, list[Wrap]]:
        now = self.clock.now
        assert sender.session is not None
        header = er.Header(
            message_id=os.urandom(16),
            conversation_id=er.direct_conversation_id(sender.user_id, to.user_id),
            sender=sender.user_id,
            sender_device=sender.device.device_id,
            sent_at=now,
            recall_sealed_until=now + 24 * 60 * MINUTE,
            recall_opened_until=now + 60 * MINUTE,
            kind=er.MessageKind.REPLACEMENT if replaces else er.MessageKind.TEXT,
            replaces=replaces,
        )
        sealed = er.seal_message(header, er.Body("x" * size), sender.identity)
        wrap = er.wrap_message_key(
            sealed.message_key,
            to.device.wrap_key.public_key,
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            device_id=to.device.device_id,
        )
        key_id = to.device.wrap_key.public_key.key_id
        return header, sealed.envelope, [Wrap(to.device.device_id, wrap, key_id)]

    async def send(self, size: int) -> tuple[er.Header, int]:
        header, envelope, wraps = self.seal(self.alice, self.bob, size)
        assert self.alice.session is not None
        await self.services.messaging.send(self.alice.session, envelope, wraps)
        return header, len(envelope)

    def revocation(self, header: er.Header, replacement_id: bytes | None = None) -> bytes:
        return er.sign_revocation(
            self.alice.identity,
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            issued_at=self.clock.now,
            replacement_id=replacement_id,
        ).signed


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock()
    config = load_config(
        env={}, flags={"data_dir": str(tmp_path), "user_quota": QUOTA, "max_message_size": "4KiB"}
    )
    storage = SqliteStorage(config.database_path, clock)
    await storage.open()
    services = Services(config, storage, clock, Metrics())
    world = World(services, clock, Member(), Member())
    await world.join(world.alice)
    await world.join(world.bob)
    try:
        yield world
    finally:
        await services.inbox.drain()
        await storage.close()


async def _outcome(call: Any) -> str:
    try:
        await call
    except RelayError as exc:
        return exc.code
    return "stored"


async def test_concurrent_sends_at_the_quota_edge_never_pass_it(world: World) -> None:
    alice, messaging = world.alice, world.services.messaging
    assert alice.session is not None
    prepared = [world.seal(alice, world.bob, 700) for _ in range(16)]
    size = len(prepared[0][1])
    assert all(len(envelope) == size for _, envelope, _ in prepared)
    outcomes = await asyncio.gather(
        *(_outcome(messaging.send(alice.session, e, w)) for _, e, w in prepared)
    )
    fits = QUOTA // size
    assert 2 <= fits < len(prepared)  # the edge is inside the burst
    assert outcomes.count("stored") == fits
    assert outcomes.count("quota_exceeded") == len(prepared) - fits
    held = await world.services.storage.stored_bytes(alice.user_id)
    assert held == fits * size <= QUOTA


async def test_a_retry_at_the_quota_is_still_the_same_message(world: World) -> None:
    alice, messaging = world.alice, world.services.messaging
    assert alice.session is not None
    sent = []
    while True:
        _, envelope, wraps = world.seal(alice, world.bob, 900)
        if await _outcome(messaging.send(alice.session, envelope, wraps)) != "stored":
            break
        sent.append((envelope, wraps))
    stored, created = await messaging.send(alice.session, *sent[-1])  # a retry after a lost answer
    assert created is False
    assert stored.envelope == sent[-1][0]


async def test_a_recall_frees_the_quota(world: World) -> None:
    header, size = await world.send(900)
    assert world.alice.session is not None
    storage = world.services.storage
    assert await storage.stored_bytes(world.alice.user_id) == size
    world.clock.advance(MINUTE)
    await world.services.recalls.recall(
        world.alice.session, header.message_id, world.revocation(header)
    )
    assert await storage.stored_bytes(world.alice.user_id) == 0


async def test_a_replacement_counts_against_the_quota(world: World) -> None:
    alice, services = world.alice, world.services
    assert alice.session is not None
    original, size = await world.send(800)
    while (await services.storage.stored_bytes(alice.user_id)) + size <= QUOTA:
        await world.send(800)
    used = await services.storage.stored_bytes(alice.user_id)
    world.clock.advance(MINUTE)

    # a replacement bigger than what the recall frees plus the room left: refused, nothing done
    big_header, big, big_wraps = world.seal(
        alice, world.bob, 800 + (QUOTA - used) + 200, replaces=original.message_id
    )
    with pytest.raises(PayloadTooLarge) as refused:
        await services.recalls.recall(
            alice.session,
            original.message_id,
            world.revocation(original, big_header.message_id),
            (big, big_wraps, []),
        )
    assert refused.value.code == "quota_exceeded"
    view = await services.storage.get_message(original.message_id)
    assert view is not None
    assert view.message.state is MessageState.LIVE  # the recall did not happen either
    assert await services.storage.get_message(big_header.message_id) is None
    assert await services.storage.stored_bytes(alice.user_id) == used

    # one that fits once the original's bytes are freed: the recall and the replacement together
    header, envelope, wraps = world.seal(alice, world.bob, 800, replaces=original.message_id)
    outcome = await services.recalls.recall(
        alice.session,
        original.message_id,
        world.revocation(original, header.message_id),
        (envelope, wraps, []),
    )
    assert outcome.replacement_id == header.message_id
    assert await services.storage.stored_bytes(alice.user_id) == used - size + len(envelope)


async def test_only_the_sender_may_recall(world: World) -> None:
    header, _ = await world.send(100)
    bob = world.bob
    assert bob.session is not None
    forged = er.sign_revocation(
        bob.identity,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        issued_at=world.clock.now,
    ).signed
    with pytest.raises(RelayError) as refused:
        await world.services.recalls.recall(bob.session, header.message_id, forged)
    assert (refused.value.status, refused.value.code) == (403, "not_sender")
    view = await world.services.storage.get_message(header.message_id)
    assert view is not None
    assert view.message.envelope is not None


async def test_opening_on_every_device_completes_the_message_after_the_grace(
    world: World,
) -> None:
    header, _ = await world.send(100)
    bob, messaging, storage = world.bob, world.services.messaging, world.services.storage
    assert bob.session is not None
    await messaging.fetch(bob.session, header.message_id)
    wrap = await messaging.open(bob.session, header.message_id)
    assert len(wrap) > 0
    view = await storage.get_message(header.message_id)
    assert view is not None
    assert view.message.state is MessageState.LIVE  # kept, for a device whose answer was lost
    assert view.message.all_opened_at == world.clock.now
    assert await messaging.open(bob.session, header.message_id) == wrap
    world.clock.advance(world.services.config.open_grace - 1)
    assert (await world.services.retention.run_once()).completed == 0
    world.clock.advance(2)
    assert (await world.services.retention.run_once()).completed == 1
    view = await storage.get_message(header.message_id)
    assert view is not None
    assert view.message.state is MessageState.COMPLETE
    assert view.message.envelope is None
    assert all(d.wrap is None for d in view.deliveries)
    assert await storage.stored_bytes(world.alice.user_id) == 0


async def test_the_inbox_pages_and_acknowledges(world: World) -> None:
    for _ in range(5):
        await world.send(50)
    inbox, device = world.services.inbox, world.bob.device.device_id
    first = await inbox.page(device, 0, 3)
    assert (len(first.events), first.more) == (3, True)
    rest = await inbox.page(device, first.events[-1].seq, 3)
    assert (len(rest.events), rest.more) == (2, False)
    seqs = [e.seq for e in first.events + rest.events]
    assert seqs == sorted(seqs)
    # acknowledgements in any order, all at once: one durable outcome, the highest wins
    await asyncio.gather(*(inbox.ack(device, seq) for seq in reversed(seqs[:4])))
    left = await inbox.page(device, 0, 10)
    assert [e.seq for e in left.events] == [seqs[4]]
    await inbox.ack(device, seqs[0])  # an older ack moves nothing back
    assert [e.seq for e in (await inbox.page(device, 0, 10)).events] == [seqs[4]]
