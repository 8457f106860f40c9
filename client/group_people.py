"""The people in groups: their identity keys, names and devices.

A member is named in a group change by user id, which is the fingerprint of
their identity key.  So a member's key is fetched from the relay's directory
by that user id and accepted only if its fingerprint is that user id
(:func:`client.contacts._directory` checks it): no trust on first use is
needed, and a relay cannot substitute a key.  A member who is also a
contact goes through the contact's own checks, so a contact whose identity
changed gets the same loud warning in a group as on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from e2e_recall import DeviceCertificate, VerifyKey, fingerprint, wire
from e2e_recall.errors import E2ERecallError

from .account import authed
from .contacts import (
    _directory,
    _verified_certificates,
    apply_directory_entry,
    cached_devices,
    check_not_changed,
    refresh_devices,
)
from .core import Core
from .errors import ContactError, RelayRefused, RelayUnreachable
from .group_store import Person, person, save_person
from .store import Contact

__all__ = [
    "cached_member_devices",
    "display_name",
    "fresh_member_devices",
    "group_member_devices",
    "known_key",
    "learn_people",
    "member_devices",
    "sender_contact",
]

_PARALLEL = 16  # directory requests in flight at once for one group
_DEVICE_LIMITS = wire.Limits(max_size=1 << 22, max_array=4096)


def known_key(core: Core, user_id: bytes) -> VerifyKey | None:
    """The identity key of ``user_id`` if this device knows it (never fetched here)."""
    if user_id == core.user_id:
        return core.keys.identity.public_key
    contact = core.store.contact_by_user(user_id)
    if contact is not None:
        return core.verify_key(contact.identity_key)
    known = person(core.store, user_id)
    return core.verify_key(known.identity_key) if known is not None else None


def display_name(core: Core, user_id: bytes) -> str:
    """How a member is shown: "you", the contact's name, their handle, or a short user id."""
    if user_id == core.user_id:
        return "you"
    contact = core.store.contact_by_user(user_id)
    if contact is not None:
        return contact.name
    known = person(core.store, user_id)
    if known is not None and known.handle:
        return known.handle
    return user_id.hex()[:8]


async def _fetch_person(core: Core, user_id: bytes) -> list[DeviceCertificate]:
    """The directory's entry for a member who is not a contact, kept with its checked devices."""
    entry = await _directory(core, user_id.hex())  # refuses a key whose fingerprint differs
    return _store_person(core, user_id, entry)


def _store_person(core: Core, user_id: bytes, entry: dict[str, Any]) -> list[DeviceCertificate]:
    """Keep a checked directory entry of a member who is not a contact, with its devices."""
    identity = core.verify_key(entry["identity_key"])
    certificates = _verified_certificates(core, identity, entry.get("devices") or [])
    handle = entry.get("handle")
    with core.store.transaction():
        save_person(
            core.store,
            Person(
                user_id=user_id,
                identity_key=identity.raw,
                handle=handle if isinstance(handle, str) else None,
                devices=wire.encode([c.signed for c in certificates]),
                seen_at=core.clock(),
            ),
        )
    return certificates


async def learn_people(core: Core, user_ids: Iterable[bytes]) -> None:
    """Fetch the keys of the members this device does not know yet (several at a time)."""
    unknown = [u for u in set(user_ids) if known_key(core, u) is None]
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(user_id: bytes) -> None:
        async with gate:
            await _fetch_person(core, user_id)

    await asyncio.gather(*(one(u) for u in unknown))


async def fresh_member_devices(core: Core, user_id: bytes) -> list[DeviceCertificate]:
    """A member's current devices from the relay, checked against their identity.

    For a contact this is the contact's own refresh (a changed identity raises
    :class:`IdentityChanged`); for ourselves, our other devices.
    """
    contact = core.store.contact_by_user(user_id)
    if contact is not None and user_id != core.user_id:
        try:
            return await refresh_devices(core, contact)
        except ContactError as exc:
            if exc.code == "no_devices":
                return []
            raise
    certificates = await _fetch_person(core, user_id)
    if user_id == core.user_id:
        return [c for c in certificates if c.device_id != core.device_id]
    return certificates


def cached_member_devices(core: Core, user_id: bytes) -> list[DeviceCertificate]:
    """The devices last verified for a member (a contact's cache, or the group cache)."""
    contact = core.store.contact_by_user(user_id)
    if contact is not None and user_id != core.user_id:
        return cached_devices(core, contact)
    known = person(core.store, user_id)
    if known is None or known.devices is None:
        return []
    signed = list(wire.decode(known.devices, limits=_DEVICE_LIMITS))
    found = _verified_certificates(core, core.verify_key(known.identity_key), signed)
    if user_id == core.user_id:
        return [c for c in found if c.device_id != core.device_id]
    return found


async def member_devices(core: Core, user_ids: Iterable[bytes]) -> list[DeviceCertificate]:
    """Every current device of these members, fetched several at a time.

    If the relay cannot be reached, the devices last verified are used (the
    message then waits in the outbox); a member with none cached makes it fail.
    """
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(user_id: bytes) -> list[DeviceCertificate]:
        async with gate:
            try:
                return await fresh_member_devices(core, user_id)
            except RelayUnreachable:
                cached = cached_member_devices(core, user_id)
                if not cached and user_id != core.user_id:
                    raise
                return cached

    found = await asyncio.gather(*(one(u) for u in user_ids))
    return [certificate for devices in found for certificate in devices]


def _checked_entry(entry: object, user_id: bytes) -> dict[str, Any]:
    """A member's entry from the group directory, held to what a directory answer must be."""
    malformed = RelayRefused("The group directory answer is malformed.", "bad_answer", 200, {})
    if not isinstance(entry, dict):
        raise malformed
    try:
        identity = VerifyKey(entry["identity_key"])
    except (KeyError, TypeError, E2ERecallError):
        raise malformed from None
    if entry.get("user_id") != user_id or fingerprint(identity) != user_id:
        sentence = "The group directory answer does not match its own identity keys."
        raise RelayRefused(sentence, "bad_answer", 200, {})
    return entry


def _take_member_entry(
    core: Core, user_id: bytes, entry: dict[str, Any]
) -> list[DeviceCertificate] | None:
    """A member's devices from a checked entry; None to look the member up alone instead.

    A contact found by handle is looked up alone when the entry carries another
    handle: the handle may now name someone else, which is exactly what the
    contact's own lookup warns about.
    """
    contact = core.store.contact_by_user(user_id)
    if contact is not None and user_id != core.user_id:
        if contact.handle and entry.get("handle") != contact.handle:
            return None
        check_not_changed(contact)
        try:
            return apply_directory_entry(core, contact, entry)
        except ContactError as exc:
            if exc.code == "no_devices":
                return []
            raise
    certificates = _store_person(core, user_id, entry)
    if user_id == core.user_id:
        return [c for c in certificates if c.device_id != core.device_id]
    return certificates


async def group_member_devices(
    core: Core, group_id: bytes, user_ids: Iterable[bytes]
) -> list[DeviceCertificate]:
    """Every current device of these members of one group, in one request to the relay.

    The relay's group directory gives every member's entry at once; each is
    checked like a directory answer.  A member it leaves out (or a contact
    whose handle moved) is looked up alone, and if the relay cannot be
    reached, or does not offer the group directory, :func:`member_devices`
    does it the slow way (with the cached devices as its fallback).
    """
    wanted = list(dict.fromkeys(user_ids))
    try:
        answer = await authed(core, "GET", f"/v1/groups/{group_id.hex()}/devices")
    except RelayUnreachable:
        return await member_devices(core, wanted)
    except RelayRefused as exc:
        if exc.status != 404:
            raise
        return await member_devices(core, wanted)
    members = answer.get("members") if isinstance(answer, dict) else None
    entries = {item.get("user_id"): item for item in members or [] if isinstance(item, dict)}
    found: list[DeviceCertificate] = []
    alone = []
    for user_id in wanted:
        entry = entries.get(user_id)
        taken = None
        if entry is not None:
            taken = _take_member_entry(core, user_id, _checked_entry(entry, user_id))
        if taken is None:
            alone.append(user_id)
        else:
            found += taken
    if alone:
        found += await member_devices(core, alone)
    return found


async def sender_contact(core: Core, user_id: bytes) -> Contact:
    """A member who wrote to a group, as a contact record to verify with (not saved).

    A contact is used as it is; anyone else is looked up by user id and their
    key accepted only for that fingerprint, without adding them as a contact.
    """
    contact = core.store.contact_by_user(user_id)
    if contact is not None:
        return contact
    if known_key(core, user_id) is None:
        await _fetch_person(core, user_id)
    key = known_key(core, user_id)
    assert key is not None
    known = person(core.store, user_id)
    return Contact(
        name=display_name(core, user_id),
        user_id=user_id,
        identity_key=key.raw,
        handle=known.handle if known else None,
        added_at=known.seen_at if known else 0,
        devices=known.devices if known else None,
    )
