"""What the relay stores to link and withdraw devices, and the store every backend implements.

A link slot (:class:`LinkRecord`) holds two sealed messages the relay cannot
read, each written once.  Revoking a device is one transaction
(:meth:`DeviceStore.revoke_device`): the device is marked revoked, its
sessions and queued events go, every wrap still held for it is destroyed
(its report line becomes ``never_delivered`` or ``delivered_sealed``), and
``device`` events are queued for the user's other devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # base imports this module for the Storage protocol
    from .base import NewEvent

__all__ = ["DeviceStore", "LinkRecord", "RevokeOutcome"]


@dataclass(frozen=True, slots=True)
class LinkRecord:
    link_id: bytes
    user_id: bytes  # whose slot it is
    device_id: bytes  # the device that opened it (told when the request arrives)
    request: bytes | None
    answer: bytes | None
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class RevokeOutcome:
    revoked_at: int  # the stored time (an earlier revocation's, for a repeat)
    newly: bool  # False: the device was already revoked, nothing changed
    wraps_destroyed: int


class DeviceStore(Protocol):
    async def create_link(self, link: LinkRecord, max_open: int) -> None:
        """Store a new slot; ``Conflict`` if the id exists, ``RateLimited`` past ``max_open``."""

    async def get_link(self, link_id: bytes, now: int) -> LinkRecord | None:
        """The slot, unless it is unknown or expired."""

    async def put_link_request(self, link_id: bytes, request: bytes, event: NewEvent) -> None:
        """Store the request once, with ``event`` for the slot's device (404 / 409 otherwise)."""

    async def put_link_answer(self, link_id: bytes, user_id: bytes, answer: bytes) -> None:
        """Store the answer once, for a slot of ``user_id`` that has its request."""

    async def take_link_answer(self, link_id: bytes, now: int) -> tuple[bool, bytes | None]:
        """(slot found, answer): an answer is returned once and the slot deleted with it."""

    async def forget_links(self, now: int) -> int:
        """Delete expired slots; return how many."""

    async def revoke_device(
        self, device_id: bytes, revoked_at: int, events: list[NewEvent]
    ) -> RevokeOutcome:
        """Withdraw a device in one transaction (see the module docstring)."""
