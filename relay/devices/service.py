"""The rules for link slots and device revocation.

* A slot is opened by a logged-in device for at most ``LINK_TTL_MS``, at most
  ``MAX_OPEN_LINKS`` per user at once.  Its id is derived from a 128-bit
  secret, so knowing it is the capability to put the request (no session:
  the new device has none) and to fetch the answer, once; the answer is put
  and the request read only by the slot's own user.
* A revocation is signed by the identity for this relay, names the device
  in the address, is dated within the clock skew, and comes from a session
  of *another* current device of the same user (a device cannot revoke
  itself; it can log out).  The device is then withdrawn in one
  transaction, its live connections closed, and every cache that could
  still show it forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e_recall import wire
from e2e_recall.device_admin import verify_device_revocation
from e2e_recall.domains import MAX_CLOCK_SKEW_MS
from e2e_recall.errors import ProtocolError
from e2e_recall.linking import MAX_ANSWER, MAX_REQUEST

from ..accounts import Accounts, Session
from ..errors import BadRequest, NotFound, PayloadTooLarge, from_protocol_error
from ..hub import Hub
from ..storage.base import EventKind, NewEvent, Storage
from ..storage.device_records import LinkRecord, RevokeOutcome

__all__ = ["LINK_TTL_MS", "MAX_OPEN_LINKS", "Devices"]

LINK_TTL_MS = 10 * 60 * 1000
MAX_OPEN_LINKS = 3


class Devices:
    def __init__(
        self, storage: Storage, accounts: Accounts, hub: Hub, clock: Callable[[], int]
    ) -> None:
        self.storage = storage
        self.accounts = accounts
        self.hub = hub
        self.clock = clock

    # links ----------------------------------------------------------------------------------
    async def open_link(self, session: Session, link_id: bytes, expires_at: int) -> LinkRecord:
        now = self.clock()
        if not now < expires_at <= now + LINK_TTL_MS + MAX_CLOCK_SKEW_MS:
            raise BadRequest(
                "A link must expire in the future and within 10 minutes.", "bad_expiry"
            )
        link = LinkRecord(link_id, session.user_id, session.device_id, None, None, now, expires_at)
        await self.storage.create_link(link, MAX_OPEN_LINKS)
        return link

    async def put_request(self, link_id: bytes, sealed: bytes) -> None:
        if len(sealed) > MAX_REQUEST:
            raise PayloadTooLarge(f"A link request is at most {MAX_REQUEST} bytes.", "too_large")
        link = await self.storage.get_link(link_id, self.clock())
        if link is None:
            raise NotFound("No such link, or it expired.")
        event = NewEvent(link.device_id, EventKind.LINK, link_id, wire.encode({"link_id": link_id}))
        await self.storage.put_link_request(link_id, sealed, event)

    async def read_link(self, session: Session, link_id: bytes) -> LinkRecord:
        link = await self.storage.get_link(link_id, self.clock())
        if link is None or link.user_id != session.user_id:
            raise NotFound("No such link, or it expired.")
        return link

    async def put_answer(self, session: Session, link_id: bytes, sealed: bytes) -> None:
        if len(sealed) > MAX_ANSWER:
            raise PayloadTooLarge(f"A link answer is at most {MAX_ANSWER} bytes.", "too_large")
        await self.storage.put_link_answer(link_id, session.user_id, sealed)

    async def take_answer(self, link_id: bytes) -> tuple[bytes | None, int]:
        """The answer (deleting the slot), or None while there is none; 404 if no slot."""
        now = self.clock()
        link = await self.storage.get_link(link_id, now)
        found, answer = await self.storage.take_link_answer(link_id, now)
        if not found or link is None:
            raise NotFound("No such link, or it expired, or its answer was already taken.")
        return answer, link.expires_at

    # devices --------------------------------------------------------------------------------
    async def list_devices(self, session: Session) -> list[dict[str, Any]]:
        return [
            {
                "device_id": d.device_id,
                "created_at": d.created_at,
                "revoked_at": d.revoked_at,
                "certificate": d.certificate,
            }
            for d in await self.storage.get_devices(session.user_id)
        ]

    async def revoke(self, session: Session, device_id: bytes, signed: bytes) -> RevokeOutcome:
        identity = await self.accounts.cache.identity(session.user_id)
        if identity is None:  # pragma: no cover - the session's user is registered
            raise NotFound("No such device.")
        try:
            revocation = verify_device_revocation(signed, identity, relay=self.accounts.relay_id)
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        if revocation.device_id != device_id:
            raise BadRequest(
                "The revocation names another device than the address.", "other_device"
            )
        if device_id == session.device_id:
            raise BadRequest(
                "A device cannot revoke itself; revoke it from another of your devices, "
                "or log out.",
                "revoke_self",
            )
        now = self.clock()
        if abs(revocation.revoked_at - now) > MAX_CLOCK_SKEW_MS:
            raise BadRequest(
                "The revocation is dated too far from the relay's time; check the clock.",
                "clock_skew",
            )
        devices = await self.storage.get_devices(session.user_id)
        if not any(d.device_id == device_id for d in devices):
            raise NotFound("No such device.")
        others = [d.device_id for d in devices if d.revoked_at is None and d.device_id != device_id]
        payload = wire.encode({"device_id": device_id, "revoked_at": revocation.revoked_at})
        events = [NewEvent(other, EventKind.DEVICE, device_id, payload) for other in others]
        outcome = await self.storage.revoke_device(device_id, revocation.revoked_at, events)
        self.accounts.forget_device(session.user_id, device_id)
        await self.hub.close_device(device_id)
        return outcome
