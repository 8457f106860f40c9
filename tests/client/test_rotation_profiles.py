"""Where a profile keeps its wrapping keys, and a profile from before rotation catching up.

These drive the client library in-process (the code the CLI runs) against a
relay process on loopback, and open the profile's keystore and SQLite file
to check what they hold.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from client import rotation
from client.client import Client
from client.keystore import Keys, create_keystore, open_keystore
from client.paths import Profile
from e2e_recall import (
    DeviceSecrets,
    SigningKey,
    issue_device_certificate,
    verify_device_certificate,
)

from relay_process import RelayProcess

PASSPHRASE = "a long enough passphrase"


def _states(root: Path) -> dict[bytes, str]:
    (database,) = [p for p in root.iterdir() if p.suffix == ".db"]
    with sqlite3.connect(database) as conn:
        return {bytes(k): s for k, s in conn.execute("SELECT key_id, state FROM wrap_keys")}


def _old_profile(root: Path) -> DeviceSecrets:
    """A profile as the client made them before rotation: the key in the keystore, no expiry."""
    identity, device = SigningKey.generate(), DeviceSecrets.generate()
    certificate = issue_device_certificate(
        identity,
        device.device_id,
        device.signing_key.public_key,
        device.wrap_key.public_key,
        created_at=rotation_time_zero(),
    ).signed
    profile = Profile(root)
    profile.ensure()
    keys = Keys(identity, device, certificate, storage_key=bytes(range(32)))
    create_keystore(profile.keystore, PASSPHRASE, keys, strength="interactive")
    return device


def rotation_time_zero() -> int:
    from client.core import system_clock

    return system_clock() - 60_000


async def test_a_new_profile_keeps_its_wrapping_key_in_the_store_not_the_keystore(
    tmp_path: Path,
) -> None:
    client = Client.create(tmp_path / "new", PASSPHRASE, strength="interactive")
    try:
        keys = open_keystore(Profile(tmp_path / "new").keystore, PASSPHRASE)
        certificate = verify_device_certificate(
            keys.certificate, keys.identity.public_key, now=None
        )
        assert keys.wrap_keys_in_store
        assert (
            certificate.expires_at
            == certificate.created_at + rotation.schedule(client.core).lifetime
        )
        # The keystore's wrapping key is a placeholder nothing was ever certified for.
        assert keys.device.wrap_key.public_key.key_id != certificate.wrap_key.key_id
        assert _states(tmp_path / "new") == {certificate.wrap_key.key_id: "current"}
    finally:
        await client.close()


async def test_a_profile_from_before_rotation_moves_its_key_and_rotates_on_its_next_run(
    tmp_path: Path, relay: RelayProcess
) -> None:
    original = _old_profile(tmp_path / "old")
    old_id = original.wrap_key.public_key.key_id
    bob = Client.open(tmp_path / "old", PASSPHRASE)
    alice = Client.create(tmp_path / "alice", PASSPHRASE, strength="interactive")
    try:
        keys = open_keystore(Profile(tmp_path / "old").keystore, PASSPHRASE)
        assert keys.wrap_keys_in_store  # converted when opened
        assert keys.device.wrap_key.raw != original.wrap_key.raw
        assert _states(tmp_path / "old") == {old_id: "current"}
        await bob.register(relay.url(), "bob")  # with the old certificate, which never expires
        await alice.register(relay.url(), "alice")
        await alice.add_contact("bob", "bob")
        before = await alice.send("bob", "to the key of the old profile")
        assert not before.queued
        await bob.add_contact("alice", "alice")  # talks to the relay: the rotation comes first
        states = _states(tmp_path / "old")
        assert states[old_id] == "previous"
        assert sorted(states.values()) == ["current", "previous"]
        await bob.sync()
        opened = await bob.open_message(before.message_id)
        assert opened.text == "to the key of the old profile"
        after = await alice.send("bob", "to the new key")
        await bob.sync()
        assert (await bob.open_message(after.message_id)).text == "to the new key"
    finally:
        await alice.close()
        await bob.close()
    again = Client.open(tmp_path / "old", PASSPHRASE)  # converted once: opens as a new one
    try:
        assert open_keystore(Profile(tmp_path / "old").keystore, PASSPHRASE).wrap_keys_in_store
        assert len(rotation.key_rows(again.core.store)) == 2
    finally:
        await again.close()
