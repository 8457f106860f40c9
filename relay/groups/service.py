"""Groups: accept signed membership changes, serve the chain, know who is in a group.

A change is verified before anything is read about its group (signature
first, then fields; its signer must be the session's user), every user it
names must be registered here, and it must extend the stored chain; then,
in one transaction, it is stored with a ``group`` event for every device of
every member before and after it.  The relay cannot add anyone on its own:
each client replays the chain with the same core rules and refuses a change
that does not verify.

Sends to a group's conversation look up its current members here
(:meth:`Groups.membership`), through a small cache that a change made by this
process drops at once and that otherwise expires after the directory's TTL.
The cache is only the fast path: the transaction that stores a group message
checks that the group's head is still the one the send was checked against
(:func:`~.rules.membership_rule`), and a send the cache would refuse is
checked again against the database before it is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from e2e_recall.errors import ProtocolError
from e2e_recall.group import (
    MAX_GROUP_MEMBERS,
    GroupChange,
    peek_group_change_signer,
    verify_group_change,
)

from ..accounts import Accounts, Session
from ..directory import LruCache
from ..errors import BadRequest, Conflict, Forbidden, NotFound, from_protocol_error
from ..storage.base import DeviceRecord, Storage, UserRecord
from ..storage.group_records import GroupView
from .rules import ChangeOutcome, Moved, chain_end, decide_change

__all__ = ["Groups"]

_ATTEMPTS = 8  # reads before giving up on a group that keeps changing under us


class Groups:
    def __init__(
        self,
        storage: Storage,
        accounts: Accounts,
        clock: Callable[[], int],
        max_members: int = MAX_GROUP_MEMBERS,
        ttl: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.accounts = accounts
        self.clock = clock
        self.max_members = max_members
        self.ttl = ttl
        self.monotonic = monotonic
        self._by_conversation: LruCache[bytes, GroupView] = LruCache(10_000)

    async def _verify(self, session: Session, group_id: bytes, signed: bytes) -> GroupChange:
        try:
            signer = peek_group_change_signer(signed)  # unverified: only to pick the key
            if signer != session.user_id:
                raise Forbidden(
                    "A group change is posted by the member who signed it.", "wrong_signer"
                )
            identity = await self.accounts.cache.identity(signer)
            if identity is None:  # pragma: no cover - the session's user is registered
                raise Forbidden("The change is signed by an unknown user.", "wrong_signer")
            change = verify_group_change(signed, identity)
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        if change.group_id != group_id:
            raise BadRequest(
                "The change is for another group than the one in the address.", "other_group"
            )
        for user in change.members:
            if await self.accounts.cache.identity(user) is None:
                raise BadRequest(
                    "The change names a user who is not registered here.", "unknown_user"
                )
        return change

    async def _devices(self, user_id: bytes) -> tuple[bytes, ...]:
        return tuple(
            d.device_id for d in await self.accounts.cache.devices(user_id) if d.revoked_at is None
        )

    async def change(self, session: Session, group_id: bytes, signed: bytes) -> ChangeOutcome:
        """Store a change (``created``), or recognise a retry of a stored one."""
        change = await self._verify(session, group_id, signed)
        for _ in range(_ATTEMPTS):
            seen = await self.storage.get_group(group_id=group_id)
            users = set(change.members) | (seen.current if seen is not None else set())
            decide = partial(
                decide_change,
                change=change,
                poster=session.user_id,
                read_head=seen.group.head if seen is not None else None,
                devices={user: await self._devices(user) for user in users},
                max_members=self.max_members,
                now=self.clock(),
            )
            try:
                outcome = await self.storage.change_group(group_id, change.seq, decide)
            except Moved:
                continue
            self._by_conversation.drop(outcome.conversation_id)
            return outcome
        raise Conflict(  # pragma: no cover - only under a storm of concurrent changes
            "The group keeps changing; fetch its chain and try again.", "stale_head"
        )

    async def chain(self, session: Session, group_id: bytes) -> list[bytes]:
        """The chain as far as the session's user may read it (404 for anyone else)."""
        view = await self.storage.get_group(group_id=group_id)
        if view is None:
            raise NotFound("No such group.")
        return await self.storage.group_changes(group_id, chain_end(view, session.user_id))

    async def member_directory(
        self, session: Session, group_id: bytes
    ) -> tuple[GroupView, list[tuple[UserRecord, list[DeviceRecord]]]]:
        """Every current member's directory entry, for one of them (404 for anyone else).

        A sender to a group needs every member's identity key and current
        devices; asked one member at a time that is a round trip per member
        (a quarter of a second for 256 over loopback).  The entries are the
        ones ``GET /v1/users/{id}`` gives, so the client checks them the same
        way: the relay is trusted for nothing it could not also say there.
        """
        view = await self.storage.get_group(group_id=group_id)
        if view is None or session.user_id not in view.current:
            raise NotFound("No such group.")
        entries = [await self.accounts.directory(user_id=u) for u in sorted(view.current)]
        return view, entries

    async def membership(self, conversation_id: bytes, *, fresh: bool = False) -> GroupView | None:
        """The group whose conversation this is, as recently read (None: not a group's).

        ``fresh`` reads the database whatever the cache holds (and keeps the answer).
        """
        now = self.monotonic()
        view = None if fresh else self._by_conversation.get(conversation_id, now)
        if view is None:
            view = await self.storage.get_group(conversation_id=conversation_id)
            if view is None:
                return None
            self._by_conversation.put(conversation_id, view, now + self.ttl)
        return view

    def forget(self, conversation_id: bytes) -> None:
        """Drop what the cache holds for a conversation (its group moved under a send)."""
        self._by_conversation.drop(conversation_id)
