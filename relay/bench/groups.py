"""Groups for the bench: made before the clock starts, as a client makes them, and sent to.

With ``--groups N`` each worker creates its share of the groups among its
own users before the window: the creator signs the chain's first change
(``create``, seq 0, listing every member) with its identity key and posts
it to ``/v1/groups/{id}/changes``, so the relay checks the signature and
keeps the chain exactly as for a real client.  A group send is sealed in
the group's conversation and wrapped to every current device of every
member but the sending device (the sender's other devices included), which
the relay checks against the group's members and their devices.  Group
messages are recalled, fetched, opened and receipted like the others; only
the names they are counted under differ (``group_send``, ``group_recall``,
``group_propagation``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from e2e_recall import GroupAction, group_conversation_id, sign_group_change, wire

from .protocol import BenchDevice, BenchUser, PreparedSend, RelayClient, now_ms, seal_send

__all__ = ["BenchGroup", "create_groups", "seal_group_send"]


@dataclass(eq=False)
class BenchGroup:
    """One group the bench made: its id and members, and whose turn it is to send."""

    group_id: bytes
    members: tuple[BenchUser, ...]
    turn: int = 0

    @property
    def conversation_id(self) -> bytes:
        return group_conversation_id(self.group_id)


async def create_group(client: RelayClient, members: tuple[BenchUser, ...]) -> BenchGroup:
    """The first member creates the group with everyone in it: one signed change."""
    group = BenchGroup(os.urandom(16), members)
    creator = members[0]
    change = sign_group_change(
        creator.identity,
        group_id=group.group_id,
        seq=0,
        previous=None,
        action=GroupAction.CREATE,
        members=[user.user_id for user in members],
        issued_at=now_ms(),
    )
    body = wire.encode({"change": change.signed})
    await client.call(
        "POST", f"/v1/groups/{group.group_id.hex()}/changes", body, creator.devices[0]
    )
    return group


async def create_groups(
    client: RelayClient, users: list[BenchUser], count: int, size: int, rng: random.Random
) -> list[BenchGroup]:
    """``count`` groups of ``size`` of ``users``, creators in turn, the others at random."""
    groups = []
    for index in range(count):
        creator = users[index % len(users)]
        others = rng.sample([u for u in users if u is not creator], size - 1)
        groups.append(await create_group(client, (creator, *others)))
    return groups


def seal_group_send(
    group: BenchGroup, sender: BenchDevice, text: str, expire_ms: int = 0
) -> PreparedSend:
    """A message to the group from ``sender``: a wrap for every member device but its own."""
    recipients = tuple(
        device
        for user in group.members
        for device in user.devices
        if device.device_id != sender.device_id
    )
    return seal_send(sender, recipients, text, expire_ms, conversation=group.conversation_id)
