"""The group half of :class:`client.client.Client`: membership, members, sending.

Every method is a thin call into the modules that do the work
(:mod:`client.groups` signs and verifies the chain of changes,
:mod:`client.group_sending` wraps a message to every member device,
:mod:`client.group_people` finds and checks members' devices), so the CLI
and a program using the library take exactly the same path.

Recalling a group message and reading its report are the same calls as for
a direct message (:meth:`Client.recall`, :meth:`Client.report`): one
recall reaches every member device, and the report has a line per device,
which :meth:`client.reporting.ReportView.by_person` groups per member.

A group is returned as the record this device keeps of the state it
verified (:class:`client.group_store.StoredGroup`: ``name``, ``group_id``,
``member_ids()``, ``admin_ids()``, ``member`` while this user is in it).
A change is made on the group as this device last verified it; if someone
changed it meanwhile, the relay says so and the change is made once more on
the newer chain.  Call :meth:`Client.sync` first to see those changes (and
their updates) before deciding on one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import expiring
from . import groups as chain
from .core import Core
from .errors import RelayRefused, RelayUnreachable
from .expiring import Timer
from .group_people import cached_member_devices, display_name, group_member_devices
from .group_sending import send_to_group
from .group_store import StoredGroup
from .live import flush_quietly
from .sending import DEFAULT_OPENED_WINDOW, DEFAULT_SEALED_WINDOW, SendOutcome

__all__ = ["GroupMember", "GroupsMixin", "members_of"]


@dataclass(frozen=True)
class GroupMember:
    """A member of a group as this device verified it, with their devices."""

    user_id: bytes
    name: str  # "you", a contact's name, the member's handle, or a short user id
    admin: bool
    you: bool
    devices: tuple[bytes, ...]  # device ids whose certificates verified against their identity

    def to_json(self) -> dict[str, Any]:
        """The member shape of ``group --json`` (devices are not part of it)."""
        return {
            "user_id": self.user_id.hex(),
            "name": self.name,
            "admin": self.admin,
            "you": self.you,
        }


def members_of(core: Core, group: StoredGroup, *, devices: bool = True) -> list[GroupMember]:
    """The members of ``group``, with the devices last verified for each (no network).

    Without ``devices`` their tuples are empty, and no certificate is checked.
    """
    return _with_devices(core, group, None, listed=devices)


def _with_devices(
    core: Core,
    group: StoredGroup,
    fetched: dict[bytes, list[bytes]] | None,
    *,
    listed: bool = True,
) -> list[GroupMember]:
    """``fetched``: device ids per member as just verified; None: the cached ones."""
    admins = set(group.admin_ids())
    found = []
    for user_id in group.member_ids():
        devices: list[bytes] = []
        if not listed:
            pass
        elif fetched is not None:
            devices = fetched.get(user_id, [])
        else:
            devices = [c.device_id for c in cached_member_devices(core, user_id)]
        if listed and user_id == core.user_id:
            devices = [core.device_id, *devices]  # the others' lists leave this one out
        found.append(
            GroupMember(
                user_id=user_id,
                name=display_name(core, user_id),
                admin=user_id in admins,
                you=user_id == core.user_id,
                devices=tuple(dict.fromkeys(devices)),
            )
        )
    return found


class GroupsMixin:
    """Groups for :class:`client.client.Client`, which provides ``core``."""

    core: Core

    async def create_group(self, name: str, contacts: Sequence[str]) -> StoredGroup:
        """A group of you and these contacts, named ``name`` here; you are its admin."""
        return await chain.create_group(self.core, name, contacts)

    async def add_members(self, name: str, contacts: Sequence[str]) -> StoredGroup:
        """Add contacts (admins only); they get what is sent from now on, nothing before."""
        return await chain.add_members(self.core, name, contacts)

    async def remove_members(self, name: str, members: Sequence[str]) -> StoredGroup:
        """Remove members, named by contact name, handle or user-id prefix (admins only).

        Nothing sent afterwards is wrapped to their devices; what they had stays
        with them unless it is recalled.
        """
        return await chain.remove_members(self.core, name, members)

    async def leave_group(self, name: str) -> StoredGroup:
        """Leave; this user gets none of the group's later messages."""
        return await chain.leave_group(self.core, name)

    def rename_group(self, name: str, new_name: str) -> StoredGroup:
        """Names are local: no one else sees this."""
        return chain.rename_group(self.core, name, new_name)

    def groups(self) -> list[StoredGroup]:
        """Every group this device knows, including those this user has left."""
        return chain.all_groups(self.core)

    def group(self, name: str) -> StoredGroup:
        """A group by its local name (:class:`NotFound` if there is none)."""
        return chain.find_group(self.core, name)

    async def group_members(self, name: str, *, refresh: bool = True) -> list[GroupMember]:
        """The members and their devices.

        With ``refresh`` the chain and every member's devices are fetched and
        verified now (the devices a message sent now would be wrapped to);
        without it, or if the relay cannot be reached, the last ones verified.
        """
        core = self.core
        group = chain.find_group(core, name)
        if not refresh:
            return members_of(core, group)
        with contextlib.suppress(RelayUnreachable):
            try:
                group = await chain.refresh_group(core, group.group_id)
            except RelayRefused as exc:
                if exc.status != 404:  # 404: the relay no longer shows it to us
                    raise
            certificates = await group_member_devices(core, group.group_id, group.member_ids())
            fetched: dict[bytes, list[bytes]] = {}
            for certificate in certificates:
                fetched.setdefault(certificate.user, []).append(certificate.device_id)
            return _with_devices(core, group, fetched)
        return members_of(core, group)

    async def send_to_group(
        self,
        name: str,
        text: str,
        *,
        sealed_window: int = DEFAULT_SEALED_WINDOW,
        opened_window: int = DEFAULT_OPENED_WINDOW,
        files: Sequence[Path] = (),
        timer: Timer | Literal["default"] | None = "default",
    ) -> SendOutcome:
        """Send to every current member device (and your own other devices).

        Like :meth:`Client.send`, but ``name`` is always the group's, even when
        a contact has the same name.  ``timer`` as for :meth:`Client.send`.
        """
        await flush_quietly(self.core)
        group = chain.find_group(self.core, name)
        if timer == "default":
            timer = expiring.conversation_timer(self.core, group.conversation_id)
        return await send_to_group(
            self.core,
            name,
            text,
            sealed_window=sealed_window,
            opened_window=opened_window,
            files=files,
            timer=timer,
        )
