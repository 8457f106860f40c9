"""Contacts and trust: pin on first use, refuse a changed key until accepted.

A contact's identity key is pinned the first time it is seen (added by the
user, or first heard from).  Every directory answer after that is checked
against the pin: a different key is recorded and refused for sending until
the user accepts it, loudly.  Device certificates are verified against the
pinned key before anything is wrapped to a device, and the last good set is
cached so a message can be prepared while the relay is unreachable.
"""

from __future__ import annotations

import re
from typing import Any

from e2e_recall import (
    DeviceCertificate,
    VerifyKey,
    fingerprint,
    safety_number,
    verify_device_certificate,
    wire,
)
from e2e_recall.errors import E2ERecallError

from .account import authed
from .core import Core
from .device_notes import device_change_notes
from .errors import ContactError, IdentityChanged, NotFound, RelayRefused, UsageProblem
from .group_store import by_name as group_by_name
from .store import Contact

__all__ = [
    "accept_key",
    "add_contact",
    "apply_directory_entry",
    "cached_devices",
    "contact",
    "contact_for_sender",
    "mark_verified",
    "refresh_devices",
    "remove_contact",
    "safety_number_with",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_USER_ID_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ContactError(
            f"{name!r} is not a usable contact name: 1 to 32 letters, digits, '.', '_' or '-'.",
            "bad_name",
        )


async def _directory(core: Core, who: str) -> dict[str, Any]:
    """The relay's directory entry for a handle or a hex user id, checked for consistency."""
    path = f"/v1/users/{who.lower()}" if _USER_ID_HEX.match(who) else f"/v1/handles/{who}"
    try:
        entry = await authed(core, "GET", path)
    except RelayRefused as exc:
        if exc.status in (400, 404):
            raise NotFound(f"The relay knows no user {who!r}.", "no_such_user") from None
        raise
    try:
        identity = VerifyKey(entry["identity_key"])
    except (KeyError, TypeError, E2ERecallError):
        raise RelayRefused("The directory answer is malformed.", "bad_answer", 200, {}) from None
    if fingerprint(identity) != entry.get("user_id"):
        raise RelayRefused(
            "The directory answer does not match its own identity key.", "bad_answer", 200, {}
        )
    return entry


def _verified_certificates(
    core: Core, identity: VerifyKey, signed: list[Any]
) -> list[DeviceCertificate]:
    """The certificates that verify against ``identity`` now; forged ones are dropped.

    A certificate whose exact bytes this session already verified under the
    same identity is not verified again: only its validity at ``now``, the one
    part of the check that changes, is.
    """
    good = []
    now = core.clock()
    for data in signed:
        known = core.verified_certificate(identity, data)
        if known is not None:
            if known.is_valid_at(now):
                good.append(known)
            continue
        try:
            certificate = verify_device_certificate(data, identity, now=now)
        except (E2ERecallError, TypeError):
            continue
        core.remember_certificate(identity, data, certificate)
        good.append(certificate)
    return good


def contact(core: Core, name: str) -> Contact:
    found = core.store.contact_by_name(name)
    if found is None:
        raise NotFound(f"No contact named {name!r}; see 'e2e-recall contacts list'.", "no_contact")
    return found


async def add_contact(core: Core, name: str, who: str) -> Contact:
    """Look ``who`` up and pin the identity key the relay gives now."""
    _check_name(name)
    if core.store.contact_by_name(name) is not None:
        raise ContactError(f"There is already a contact named {name!r}.", "name_taken")
    if group_by_name(core.store, name) is not None:
        raise ContactError(f"There is already a group named {name!r}.", "name_taken")
    entry = await _directory(core, who)
    user_id = entry["user_id"]
    if user_id == core.user_id:
        raise ContactError("That is you; a contact must be someone else.", "self_contact")
    existing = core.store.contact_by_user(user_id)
    if existing is not None:
        if not existing.unsolicited:
            raise ContactError(
                f"That user is already your contact {existing.name!r}.", "already_contact"
            )
        with core.store.transaction():  # someone who wrote first: give them the chosen name
            core.store.remove_contact(existing.name)
            existing.name, existing.unsolicited = name, 0
            core.store.save_contact(existing)
        return existing
    identity = VerifyKey(entry["identity_key"])
    certificates = _verified_certificates(core, identity, entry.get("devices") or [])
    added = Contact(
        name=name,
        user_id=user_id,
        identity_key=identity.raw,
        handle=entry.get("handle"),
        added_at=core.clock(),
        devices=wire.encode([c.signed for c in certificates]),
    )
    with core.store.transaction():
        core.store.save_contact(added)
    return added


async def contact_for_sender(core: Core, user_id: bytes) -> Contact:
    """The contact for someone who wrote to us; pinned on first use if new."""
    known = core.store.contact_by_user(user_id)
    if known is not None:
        return known
    entry = await _directory(core, user_id.hex())
    handle = entry.get("handle")
    base = (
        handle if isinstance(handle, str) and _NAME.match(handle) else "user-" + user_id.hex()[:8]
    )
    name, suffix = base, 2
    while core.store.contact_by_name(name) is not None:
        name, suffix = f"{base}-{suffix}", suffix + 1
    identity = VerifyKey(entry["identity_key"])
    pinned = Contact(
        name=name,
        user_id=user_id,
        identity_key=identity.raw,
        handle=handle if isinstance(handle, str) else None,
        added_at=core.clock(),
        unsolicited=1,
        devices=wire.encode(
            [c.signed for c in _verified_certificates(core, identity, entry.get("devices") or [])]
        ),
    )
    with core.store.transaction():
        core.store.save_contact(pinned)
    return pinned


def cached_devices(core: Core, who: Contact) -> list[DeviceCertificate]:
    """The device certificates last seen for ``who``, verified again against the pin."""
    if who.devices is None:
        return []
    signed = wire.decode(who.devices, limits=wire.Limits(max_size=1 << 22, max_array=4096))
    return _verified_certificates(core, core.verify_key(who.identity_key), list(signed))


def check_not_changed(who: Contact) -> None:
    if who.changed_key is not None:
        raise IdentityChanged(
            f"WARNING: {who.name}'s identity key has changed. This happens when they reinstall, "
            "or when someone is impersonating them. Nothing will be sent to them until you "
            f"compare safety numbers ('e2e-recall contacts verify {who.name}') and accept the "
            f"new key ('e2e-recall contacts accept {who.name}').",
            "identity_changed",
        )


async def _current_entry(core: Core, who: Contact) -> dict[str, Any]:
    """The directory entry a message to ``who`` would go to now.

    A contact found by handle is looked up by handle again: the handle is
    what the user chose to talk to, and if it now names another identity
    (a reinstall, or an impostor) that is exactly the change to warn about.
    A released handle that nobody holds yet falls back to the pinned user id.
    """
    if who.handle:
        try:
            entry = await _directory(core, who.handle)
        except NotFound:
            entry = None
        if entry is not None:
            return entry
    return await _directory(core, who.user_id.hex())


async def refresh_devices(core: Core, who: Contact) -> list[DeviceCertificate]:
    """The contact's current devices from the relay, checked against the pinned identity."""
    check_not_changed(who)
    return apply_directory_entry(core, who, await _current_entry(core, who))


def apply_directory_entry(
    core: Core, who: Contact, entry: dict[str, Any]
) -> list[DeviceCertificate]:
    """Take a checked directory entry for ``who``: a changed key is flagged, devices noted.

    The entry may come from the contact's own lookup or from a group's
    member directory; either way it was checked by :func:`_directory` or its
    group twin (its key's fingerprint is its user id).
    """
    if entry["identity_key"] != who.identity_key:
        with core.store.transaction():
            who.changed_key, who.changed_at = entry["identity_key"], core.clock()
            core.store.save_contact(who)
        check_not_changed(who)
    certificates = _verified_certificates(
        core, core.verify_key(who.identity_key), entry.get("devices") or []
    )
    before = who.devices
    with core.store.transaction():
        device_change_notes(core, who, before, certificates)
        who.devices = wire.encode([c.signed for c in certificates])
        who.handle = entry.get("handle") if isinstance(entry.get("handle"), str) else who.handle
        core.store.save_contact(who)
    if not certificates:
        raise ContactError(f"{who.name} has no device that can receive messages.", "no_devices")
    return certificates


def accept_key(core: Core, name: str) -> Contact:
    """Trust the new identity key of ``name`` (it is no longer verified)."""
    who = contact(core, name)
    if who.changed_key is None:
        raise UsageProblem(f"{name}'s identity key has not changed.", "nothing_to_accept")
    new_user = fingerprint(VerifyKey(who.changed_key))
    holder = core.store.contact_by_user(new_user)
    if holder is not None and not holder.unsolicited:
        raise ContactError(
            f"The new key belongs to your contact {holder.name!r}; remove one of them first.",
            "already_contact",
        )
    with core.store.transaction():
        if holder is not None:  # they wrote first under the new key: fold that entry in
            core.store.remove_contact(holder.name)
        core.store.remove_contact(who.name)
        who.user_id, who.identity_key = new_user, who.changed_key
        who.changed_key, who.changed_at, who.verified_at, who.devices = None, None, None, None
        core.store.save_contact(who)
    return who


def safety_number_with(core: Core, who: Contact) -> str:
    """The number both sides compute from the two identity keys (section 4.2)."""
    key = who.changed_key if who.changed_key is not None else who.identity_key
    return safety_number(core.keys.identity.public_key, VerifyKey(key))


def mark_verified(core: Core, name: str) -> Contact:
    who = contact(core, name)
    check_not_changed(who)
    with core.store.transaction():
        who.verified_at = core.clock()
        core.store.save_contact(who)
    return who


def remove_contact(core: Core, name: str) -> None:
    contact(core, name)
    with core.store.transaction():
        core.store.remove_contact(name)
