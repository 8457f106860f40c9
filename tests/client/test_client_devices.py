"""The ``Client`` facade's device methods, over a relay process.

Bob links a phone from his laptop (``link_device`` on one side,
``Client.join`` on the other, both in this process), lists and revokes
devices, and rotates his wrapping key; each test checks what the relay and
the other people then do differently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.client import Client
from client.errors import DeviceRevoked, NotFound, UsageProblem
from client.linking import LinkFailed
from e2e_recall import DeviceState

from relay_process import RelayProcess

Phone = tuple[Client, Client, Client]


async def _link(laptop: Client, root: Path) -> Client:
    link = await laptop.link_device()
    assert link.relay_url == laptop.whoami()["relay"]
    answering = asyncio.create_task(link.joined())
    phone, problems = await Client.join(
        root, "phone passphrase", link.code, link.relay_url, strength="interactive"
    )
    linked = await answering
    assert problems == []
    assert linked.device_id == phone.device_id
    assert linked.registered
    return phone


@pytest.fixture
async def with_phone(clients: tuple[Client, Client], tmp_path: Path) -> AsyncIterator[Phone]:
    """Alice; Bob's laptop (a contact of Alice's); Bob's phone, linked from the laptop."""
    alice, laptop = clients
    await laptop.create_group("pair", ["alice"])
    phone = await _link(laptop, tmp_path / "bob-phone")
    try:
        yield alice, laptop, phone
    finally:
        await phone.close()


async def test_a_joined_device_has_the_identity_contacts_and_groups_and_gets_messages(
    with_phone: Phone,
) -> None:
    alice, laptop, phone = with_phone
    assert phone.user_id == laptop.user_id
    assert phone.device_id != laptop.device_id
    assert [c.name for c in phone.contacts()] == ["alice"]
    assert [g.group_id for g in phone.groups()] == [laptop.group("pair").group_id]

    listed = await laptop.devices()
    assert {d.device_id for d in listed} == {laptop.device_id, phone.device_id}
    assert [d.this_device for d in listed if d.device_id == laptop.device_id] == [True]
    assert all(d.revoked_at is None for d in listed)

    sent = await alice.send("bob", "to both of Bob's devices", timer=None)
    report = await alice.report(sent.message_id)
    assert {line.device for line in report.lines} == {
        laptop.device_id.hex()[:8],
        phone.device_id.hex()[:8],
    }
    await phone.sync()
    assert (await phone.open_message(sent.message_id)).text == "to both of Bob's devices"


async def test_a_revoked_device_gets_nothing_more_and_revoking_is_checked(
    with_phone: Phone,
) -> None:
    alice, laptop, phone = with_phone
    with pytest.raises(UsageProblem) as self_revoke:
        await laptop.revoke_device(laptop.device_id)
    assert self_revoke.value.code == "revoke_self"
    with pytest.raises(UsageProblem) as bad:
        await laptop.revoke_device("xyz")
    assert bad.value.code == "bad_id"
    ours = (laptop.device_id.hex(), phone.device_id.hex())
    unknown = next(p for p in ("0000", "ffff", "7777") if not any(o.startswith(p) for o in ours))
    with pytest.raises(NotFound):
        await laptop.revoke_device(unknown)

    waiting = await alice.send("bob", "waiting for the phone", timer=None)
    done = await laptop.revoke_device(phone.device_id.hex()[:6])
    assert done.device_id == phone.device_id
    assert not done.already_revoked
    assert done.wraps_destroyed == 1  # the key waiting for the phone, destroyed unread
    again = await laptop.revoke_device(phone.device_id)
    assert again.already_revoked

    (revoked,) = [d for d in await laptop.devices() if d.device_id == phone.device_id]
    assert revoked.revoked_at == done.revoked_at
    later = await alice.send("bob", "only for the laptop", timer=None)
    devices = {line.device for line in (await alice.report(later.message_id)).lines}
    assert devices == {laptop.device_id.hex()[:8]}
    (line,) = [
        x
        for x in (await alice.report(waiting.message_id)).lines
        if x.device == phone.device_id.hex()[:8]
    ]
    assert line.state is not DeviceState.OPENED
    with pytest.raises(DeviceRevoked):
        await phone.sync()


async def test_a_link_nobody_uses_fails_when_its_code_expires(
    clients: tuple[Client, Client],
) -> None:
    _, laptop = clients
    link = await laptop.link_device(timeout_ms=1_000)
    with pytest.raises(LinkFailed):
        await link.joined()
    assert [d.device_id for d in await laptop.devices()] == [laptop.device_id]


async def test_joining_with_a_mistyped_code_makes_no_profile(
    clients: tuple[Client, Client], tmp_path: Path, relay: RelayProcess
) -> None:
    with pytest.raises(UsageProblem) as bad:
        await Client.join(tmp_path / "nowhere", "pass", "not-a-code", relay.url())
    assert bad.value.code == "bad_code"
    assert not (tmp_path / "nowhere").exists()


async def test_rotating_keys_makes_a_new_current_key_that_senders_wrap_to(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, bob = clients
    before = {k["key_id"]: k["state"] for k in bob.wrap_keys()}
    assert list(before.values()) == ["current"]
    done = await bob.rotate_keys()
    after = {k["key_id"]: k["state"] for k in bob.wrap_keys()}
    assert after[done.key_id.hex()] == "current"
    assert [after[key_id] for key_id in before] == ["previous"]  # kept while wraps may be pending
    assert done.deleted == ()

    sent = await alice.send("bob", "wrapped to the new key", timer=None)
    await bob.sync()
    assert (await bob.open_message(sent.message_id)).text == "wrapped to the new key"


async def test_the_key_schedule_is_kept_in_the_profile_and_checked(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    _, bob = clients
    day = 86_400_000
    assert bob.key_schedule().rotate_every == 7 * day
    kept = bob.set_key_schedule(rotate_every=3 * day)
    assert (kept.rotate_every, kept.lifetime) == (3 * day, bob.key_schedule().lifetime)
    with pytest.raises(UsageProblem) as too_long:
        bob.set_key_schedule(lifetime=91 * day)
    assert too_long.value.code == "bad_schedule"
    await bob.close()
    reopened = Client.open(tmp_path / "bob", "bob passphrase")
    try:
        assert reopened.key_schedule().rotate_every == 3 * day
    finally:
        await reopened.close()
