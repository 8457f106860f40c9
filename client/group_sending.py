"""Sending to a group: one envelope, its key wrapped to every current member device.

The members are the ones of the chain this device verified, brought up to
date from the relay first when it answers, so a member removed a moment ago
gets no wrap (and the relay, which holds the same chain, would refuse one).
The message goes through the same outbox as any other: sealed once, retried
byte for byte, and wrapped again only when the relay names devices it lacks.
The sender's own other devices get a wrap too, so they have a copy that the
same recall reaches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from e2e_recall import DeviceCertificate, ExpireFrom

from .attachments import record_sent_files, seal_files
from .core import Core
from .errors import GroupRefused, RelayRefused, RelayUnreachable, UsageProblem
from .group_people import group_member_devices
from .group_store import StoredGroup, by_conversation
from .groups import find_group, refresh_group
from .sending import (
    DEFAULT_OPENED_WINDOW,
    DEFAULT_SEALED_WINDOW,
    SendOutcome,
    _check_text,
    _deliver_send,
    prepare_send,
)

__all__ = ["group_devices", "send_to_group"]


async def _current(core: Core, group: StoredGroup) -> StoredGroup:
    """The group as the relay's chain has it now, verified; as kept here if unreachable."""
    try:
        group = await refresh_group(core, group.group_id)
    except RelayUnreachable:
        pass
    except RelayRefused as exc:
        if exc.status != 404:  # 404: the relay no longer shows it to us (we were removed)
            raise
    if not group.member:
        raise GroupRefused(
            f"You are no longer a member of {group.name}; nothing was sent.", "not_a_member"
        )
    return group


async def group_devices(core: Core, conversation_id: bytes) -> list[DeviceCertificate]:
    """Every current device of every other member, and our own other devices."""
    group = by_conversation(core.store, conversation_id)
    if group is None:
        raise GroupRefused("This device no longer knows that group.", "no_group")
    group = await _current(core, group)
    others = [m for m in group.member_ids() if m != core.user_id]
    return await group_member_devices(core, group.group_id, [*others, core.user_id])


async def send_to_group(
    core: Core,
    name: str,
    text: str,
    *,
    sealed_window: int = DEFAULT_SEALED_WINDOW,
    opened_window: int = DEFAULT_OPENED_WINDOW,
    files: Sequence[Path] = (),
    timer: tuple[int, ExpireFrom] | None = None,
) -> SendOutcome:
    """Seal once for the group's conversation, keep in the outbox, deliver."""
    _check_text(text, with_files=bool(files))
    group = find_group(core, name)
    if not group.member:
        raise GroupRefused(
            f"You are no longer a member of {name}; nothing was sent.", "not_a_member"
        )
    if len(group.member_ids()) < 2:
        raise UsageProblem(f"There is no one else in {name} to send to.", "empty_group")
    devices = await group_devices(core, group.conversation_id)
    message_id, message_key = os.urandom(16), os.urandom(32)
    sealed_files = seal_files(core, message_id, message_key, files)
    prepared = prepare_send(
        core,
        group.group_id,
        text,
        devices,
        sealed_window=sealed_window,
        opened_window=opened_window,
        message_id=message_id,
        message_key=message_key,
        files=sealed_files,
        conversation_id=group.conversation_id,
        timer=timer,
    )
    with core.store.transaction():
        core.store.save_message(prepared.local_copy)
        core.store.save_outbox(prepared.item)
        record_sent_files(core, message_id, sealed_files)
    return await _deliver_send(core, prepared.item, prepared.request)
