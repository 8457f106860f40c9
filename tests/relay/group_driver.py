"""Groups for the relay tests: signed chains of the driver's people, group sends and recalls.

A :class:`Group` signs each next change with the right ``seq`` and
``previous`` (a test may ask for something else) and posts it over real
HTTP; :func:`send_to_group` seals a message in the group's conversation and
wraps it to every device of every other member, as a client does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import e2e_recall as er
from e2e_recall import GroupAction, SignedGroupChange, group_conversation_id, sign_group_change

from driver import MINUTE, Person


@dataclass
class Group:
    members: list[Person]  # the test's view of who is in it (kept up to date by the helpers)
    group_id: bytes = field(default_factory=lambda: os.urandom(16))
    changes: list[SignedGroupChange] = field(default_factory=list)

    @property
    def conversation_id(self) -> bytes:
        return group_conversation_id(self.group_id)

    @property
    def path(self) -> str:
        return f"/v1/groups/{self.group_id.hex()}"

    def sign(
        self,
        by: Person,
        action: GroupAction,
        names: list[Person] | None = None,
        *,
        seq: int | None = None,
        previous: bytes | str | None = "head",
        users: list[bytes] | None = None,
    ) -> SignedGroupChange:
        """The next change signed by ``by`` (``seq`` and ``previous`` overridable)."""
        if seq is None:
            seq = len(self.changes)
        if previous == "head":
            previous = self.changes[-1].digest if self.changes and seq else None
        ids = users if users is not None else [p.user_id for p in names or [by]]
        return sign_group_change(
            by.identity,
            group_id=self.group_id,
            seq=seq,
            previous=previous if isinstance(previous, bytes) or previous is None else None,
            action=action,
            members=ids,
            issued_at=by.relay.clock.now,
        )

    async def post(self, by: Person, signed: bytes, device: int = 0) -> dict[str, Any]:
        return await by.call("POST", f"{self.path}/changes", {"change": signed}, device=device)

    async def change(
        self, by: Person, action: GroupAction, names: list[Person] | None = None
    ) -> dict[str, Any]:
        """Sign, post and (once accepted) record the next change; update ``members``."""
        signed = self.sign(by, action, names)
        answer = await self.post(by, signed.signed)
        self.changes.append(signed)
        named = names or [by]
        if action in (GroupAction.CREATE, GroupAction.ADD):
            self.members += [p for p in named if p not in self.members]
        elif action in (GroupAction.REMOVE, GroupAction.LEAVE):
            self.members = [p for p in self.members if p not in named]
        return answer

    async def chain(self, reader: Person, device: int = 0) -> list[bytes]:
        answer = await reader.call("GET", self.path, device=device)
        assert answer["group_id"] == self.group_id
        return list(answer["changes"])


async def create_group(creator: Person, *others: Person) -> Group:
    group = Group(members=[])
    await group.change(creator, GroupAction.CREATE, [creator, *others])
    return group


def seal_to_group(
    sender: Person, group: Group, text: str, device: int = 0, message_id: bytes | None = None
) -> tuple[er.Header, er.SealedMessage]:
    now = sender.relay.clock.now
    header = er.Header(
        message_id=message_id or os.urandom(16),
        conversation_id=group.conversation_id,
        sender=sender.user_id,
        sender_device=sender.devices[device].secrets.device_id,
        sent_at=now,
        recall_sealed_until=now + 7 * 24 * 60 * MINUTE,
        recall_opened_until=now + 60 * MINUTE,
        kind=er.MessageKind.TEXT,
    )
    return header, er.seal_message(header, er.Body(text), sender.identity)


def wraps_to_people(
    sender: Person, people: list[Person], header: er.Header, key: bytes, device: int = 0
) -> list[dict[str, bytes]]:
    """A wrap for every device of each of ``people`` (the sending device excepted)."""
    sending = sender.devices[device].secrets.device_id
    wraps = []
    for person in people:
        for dev in person.devices:
            if dev.secrets.device_id == sending:
                continue
            wraps.append(
                {
                    "device_id": dev.secrets.device_id,
                    "wrap": er.wrap_message_key(
                        key,
                        dev.secrets.wrap_key.public_key,
                        message_id=header.message_id,
                        conversation_id=header.conversation_id,
                        device_id=dev.secrets.device_id,
                    ),
                    "key_id": dev.secrets.wrap_key.public_key.key_id,
                }
            )
    return wraps


async def send_to_group(
    sender: Person,
    group: Group,
    text: str,
    *,
    to: list[Person] | None = None,
    device: int = 0,
) -> tuple[er.Header, dict[str, Any]]:
    """Send to ``to`` (default: every member, the sender's other devices included)."""
    header, sealed = seal_to_group(sender, group, text, device)
    wraps = wraps_to_people(
        sender, to if to is not None else group.members, header, sealed.message_key, device
    )
    answer = await sender.call(
        "POST",
        "/v1/messages",
        {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
        device=device,
    )
    return header, answer
