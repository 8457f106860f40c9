"""The relay's ``link`` and ``device`` events, as updates for a person.

``link``: a new device put its request in a slot this device opened (the
``device link`` command is waiting for it).  ``device``: one of this user's
devices was revoked; kept as a note and shown.
"""

from __future__ import annotations

from typing import Any

from .core import Core
from .device_notes import own_device_revoked, take_notes
from .receiving import Update

__all__ = ["device_updates", "on_device_event"]


def on_device_event(core: Core, kind: str, object_id: bytes, body: dict[str, Any]) -> Update | None:
    if kind == "link":
        return Update("link", object_id, "", "")
    device_id, revoked_at = body.get("device_id"), body.get("revoked_at")
    if type(device_id) is not bytes or len(device_id) != 16 or type(revoked_at) is not int:
        return None
    if device_id == core.device_id:
        return None  # this device itself: its next call to the relay says so
    return Update("device", device_id, "you", own_device_revoked(core, device_id, revoked_at))


def device_updates(core: Core) -> list[Update]:
    """Contacts' device changes noted since they were last shown (client.device_notes)."""
    updates = []
    for peer, device_id, text in take_notes(core):
        who = core.store.contact_by_user(peer)
        updates.append(Update("device", device_id, who.name if who else "", text))
    return updates
