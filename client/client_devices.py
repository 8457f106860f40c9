"""The device half of :class:`client.client.Client`: linking, listing, revoking, keys.

Thin calls into the modules that do the work: :mod:`client.pending_link`
and :mod:`client.linking` (both ends of a link), :mod:`client.devices`
(the checked listing and revocation) and :mod:`client.rotation` (this
device's wrapping keys).  Joining makes a new profile, so it is a
constructor, :meth:`Client.join`, next to :meth:`Client.create`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import devices, rotation
from .core import Core
from .devices import DeviceInfo, DeviceRevocation
from .pending_link import LinkedDevice, PendingLink, open_link
from .rotation import Rotation, Schedule

__all__ = [
    "LINK_TIMEOUT_MS",
    "DeviceInfo",
    "DeviceRevocation",
    "DevicesMixin",
    "LinkedDevice",
    "PendingLink",
]

LINK_TIMEOUT_MS = 10 * 60 * 1000  # a link code works at most this long


class DevicesMixin:
    """Devices for :class:`client.client.Client`, which provides ``core``."""

    core: Core

    async def link_device(self, timeout_ms: int = LINK_TIMEOUT_MS) -> PendingLink:
        """Open a link for a new device of yours; show it ``.code`` and ``.relay_url``.

        Then ``await link.joined()`` certifies the device that uses the code and
        waits for it to register.  The answer carries your contacts and the
        groups this device knows, so :meth:`sync` first to include recent ones.
        History is not copied.
        """
        return await open_link(self.core, timeout_ms)

    async def devices(self) -> list[DeviceInfo]:
        """Your devices as the relay lists them (only certificates your identity signed)."""
        return await devices.list_devices(self.core)

    async def revoke_device(self, device: bytes | str) -> DeviceRevocation:
        """Revoke another of your devices, by id or by the start of its id in hex.

        It can no longer log in, nothing more is wrapped to it, and the message
        keys waiting for it are destroyed; your contacts' devices see the change.
        """
        return await devices.revoke_device(self.core, device)

    async def rotate_keys(self) -> Rotation:
        """Rotate this device's wrapping key now, then delete the old keys no longer needed."""
        done = await rotation.rotate(self.core)
        if done.deleted:
            return done
        return replace(done, deleted=tuple(await rotation.prune(self.core)))

    def key_schedule(self) -> Schedule:
        """How often the wrapping key rotates and how long each key lives (ms)."""
        return rotation.schedule(self.core)

    def set_key_schedule(
        self, rotate_every: int | None = None, lifetime: int | None = None
    ) -> Schedule:
        """Keep a rotation period and/or key lifetime (ms) as this profile's setting."""
        return rotation.set_schedule(self.core, rotate_every, lifetime)

    def wrap_keys(self) -> list[dict[str, Any]]:
        """The wrapping keys this device keeps and why: ids, states and dates, never keys."""
        return rotation.describe_keys(self.core)
