"""Who a message must be wrapped to, and the check that its wraps go to exactly them.

Kept apart from :mod:`.messaging`, which stores what this module accepted.
A send's wraps are checked against the directory and the group's membership
as this process last read them (caches, for speed).  Two things make that
safe for groups:

- a refusal is never the cache's word alone: a group send the cached
  membership refuses, or one that leaves out a device the cache still
  holds current, is checked again against the database before it is
  refused, so another relay process's change is seen at once;
- an acceptance is not final either: the group's head the check used goes
  with the prepared message (:attr:`Checked.group`), and the transaction
  that stores it refuses it if the head moved meanwhile
  (:func:`~.groups.rules.membership_rule`); the send is then checked once
  more on the database's membership (:meth:`.messaging.Messaging.send`),
  since the wraps may be right for it all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from e2e_recall.envelope import Header
from e2e_recall.expiry import message_expires_at
from e2e_recall.identity import direct_conversation_id

from .accounts import Accounts, Session
from .errors import BadRequest, Conflict, Forbidden, RelayError, unknown_device
from .groups.rules import required_users
from .keys.service import WrapKeys
from .storage.base import DeliveryRecord, DeviceRecord
from .storage.group_records import GroupRecord, GroupView

__all__ = ["Checked", "GroupLookup", "Recipients", "Wrap"]


class GroupLookup(Protocol):
    """Where a send finds the group of its conversation (:class:`relay.groups.Groups`)."""

    async def membership(
        self, conversation_id: bytes, *, fresh: bool = False
    ) -> GroupView | None: ...

    def forget(self, conversation_id: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Wrap:
    device_id: bytes
    wrap: bytes
    key_id: bytes | None = None  # the key it is made to; the API requires it (relay/keys)


@dataclass(frozen=True, slots=True)
class Checked:
    """A send's deliveries, and the group row its wraps were checked against (if any)."""

    deliveries: list[DeliveryRecord]
    group: GroupRecord | None = None


class Recipients:
    """The checks of a send's wraps: devices, keys, and who must receive the message."""

    def __init__(self, accounts: Accounts, keys: WrapKeys, groups: GroupLookup | None) -> None:
        self.accounts = accounts
        self.keys = keys
        self.groups = groups

    async def check(self, session: Session, header: Header, wraps: list[Wrap]) -> Checked:
        """One delivery per wrapped device, after checking who may receive this message."""
        if len({w.device_id for w in wraps}) != len(wraps):
            raise BadRequest("A device appears twice among the wraps.", "duplicate_device")
        devices: dict[bytes, DeviceRecord] = {}
        for item in wraps:
            device = await self.accounts.cache.device(item.device_id)
            if device is None or device.revoked_at is not None:
                raise unknown_device()
            if item.device_id == session.device_id:
                raise BadRequest(
                    "The sending device needs no wrap of its own message.", "wrap_to_self"
                )
            if item.key_id is None:
                raise BadRequest("Every wrap names the key it is made to.", "missing_field")
            await self.keys.check_wrap(device, item.key_id, item.wrap)
            devices[item.device_id] = device
        group = await self._check_recipients(session, header, devices)
        expires_at = message_expires_at(header)  # from sending: one moment for every copy
        deliveries = [
            DeliveryRecord(
                message_id=header.message_id,
                device_id=item.device_id,
                user_id=devices[item.device_id].user_id,
                wrap=item.wrap,
                own_device=devices[item.device_id].user_id == session.user_id,
                key_id=item.key_id,
                expires_at=expires_at,
            )
            for item in wraps
        ]
        return Checked(deliveries, group)

    async def _check_recipients(
        self, session: Session, header: Header, devices: dict[bytes, DeviceRecord]
    ) -> GroupRecord | None:
        """Check the wrapped users; the group row the check used (None: a direct message)."""
        others = {d.user_id for d in devices.values()} - {session.user_id}
        if len(others) == 1:
            (recipient,) = others
            if header.conversation_id == direct_conversation_id(session.user_id, recipient):
                await self._covered(others, devices)
                return None
        if self.groups is None:
            raise _not_a_conversation(others)
        group = await self.groups.membership(header.conversation_id)
        if group is None:  # not cached: this is the database's answer already
            raise _not_a_conversation(others)
        try:
            await self._covered(required_users(group, session.user_id, others), devices)
        except RelayError:
            # The cache may be behind a change another relay process made: the database
            # has the last word on a refusal (an acceptance is checked again on storing).
            group = await self.groups.membership(header.conversation_id, fresh=True)
            if group is None:
                raise _not_a_conversation(others) from None
            await self._covered(required_users(group, session.user_id, others), devices)
        return group.group

    async def _covered(
        self, users: frozenset[bytes] | set[bytes], devices: dict[bytes, DeviceRecord]
    ) -> None:
        """Every current device of every user the message must reach has a wrap.

        A refusal is decided on the stored devices, not the cache alone: a
        device another relay process revoked a moment ago may still be
        cached here (its signal is on its way), and the sender, who was told
        of the revocation, rightly left it out.
        """
        for user in users:
            if await self._missing(user, devices):
                self.accounts.cache.forget(user)
                if await self._missing(user, devices):
                    raise Conflict(
                        "A recipient has devices this message is not wrapped to; "
                        "refresh the directory.",
                        "missing_devices",
                    )

    async def _missing(self, user: bytes, devices: dict[bytes, DeviceRecord]) -> bool:
        current = {d.device_id for d in await self.accounts.current_devices(user)}
        return bool(current - devices.keys())


def _not_a_conversation(others: set[bytes]) -> RelayError:
    """A conversation that is neither the direct one of the two users nor a group's."""
    if len(others) != 1:
        return BadRequest(
            "A message goes to exactly one other person, or to the members of a group.",
            "bad_recipients",
        )
    return Forbidden(
        "The conversation does not belong to the sender and the recipient.",
        "wrong_conversation",
    )
