"""Wrapping-key rotation at the relay: accept a rotated certificate, check a wrap's key.

A device uploads a new certificate for itself (``POST
/v1/devices/self/certificate``); it is checked with the core rule
(:func:`e2e_recall.rotation.check_rotation`) against the user's identity and
the current certificate, and in one transaction becomes current while the
one it replaces is kept for as long as its key still accepts wraps.  Each
wrap of a send names the key it was made to; :meth:`WrapKeys.usable` is the
set a send is checked against, so a wrap to a key past its time is refused
(``409 stale_key``) and the sender refreshes the directory.
``GET /v1/devices/self/keys`` tells the device how many wraps wait per key
id, which is what it needs to know before deleting an old private key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from e2e_recall.device import DeviceCertificate, verify_device_certificate
from e2e_recall.domains import MAX_CLOCK_SKEW_MS
from e2e_recall.errors import ProtocolError, RotationRefused
from e2e_recall.rotation import check_rotation, usable_until
from e2e_recall.wrapping import WrapSuite, wrap_length

from ..accounts import Accounts, Session
from ..directory import LruCache
from ..errors import BadRequest, Conflict, NotFound, from_protocol_error
from ..storage.base import DeviceRecord, Storage
from ..storage.wrap_key_records import WrapKeyRecord

__all__ = ["RotationOutcome", "UsableKey", "WrapKeys", "check_wrap_key"]

_CONFLICTS = {"not_later"}  # a newer certificate is already current: refresh, do not resend
_SENTENCES = {
    "other_user": "The certificate is for another user.",
    "other_device": "The certificate is for another device than this session's.",
    "signing_key_changed": "A rotated certificate must keep the device's signing key.",
    "same_wrap_key": "A rotated certificate must bring a new wrapping key.",
    "not_later": "The certificate is not newer than the device's current one.",
    "no_expiry": "A rotated certificate must have an expiry.",
    "lifetime_too_long": "The certificate lives longer than this relay allows.",
}


@dataclass(frozen=True, slots=True)
class UsableKey:
    """A key of a device that accepts wraps now: its suite and whether it is current."""

    suite: WrapSuite
    current: bool


@dataclass(frozen=True, slots=True)
class RotationOutcome:
    created: bool
    key_id: bytes
    expires_at: int | None


class WrapKeys:
    """The rotation rule and the key check of every wrap."""

    def __init__(
        self,
        storage: Storage,
        accounts: Accounts,
        clock: Callable[[], int],
        max_lifetime: int,
    ) -> None:
        self.storage = storage
        self.accounts = accounts
        self.clock = clock
        self.max_lifetime = max_lifetime
        # Superseded certificates as verified, by their bytes (they never change).
        self._verified: LruCache[bytes, DeviceCertificate] = LruCache(100_000)

    async def _own_device(self, session: Session) -> DeviceRecord:
        device = await self.storage.get_device(session.device_id)
        if device is None or device.revoked_at is not None:
            raise NotFound("No such device.")
        return device

    async def rotate(self, session: Session, certificate: bytes) -> RotationOutcome:
        """Make ``certificate`` the session device's current one (idempotent on the same bytes)."""
        device = await self._own_device(session)
        if device.certificate == certificate:
            cert = await self.accounts.certificate(device)
            return RotationOutcome(False, cert.wrap_key.key_id, cert.expires_at)
        identity = await self.accounts.cache.identity(session.user_id)
        if identity is None:
            raise NotFound("No such user.")
        current = await self.accounts.certificate(device)
        now = self.clock()
        try:
            new = check_rotation(
                current, certificate, identity, now=now, max_lifetime=self.max_lifetime
            )
        except RotationRefused as exc:
            cls = Conflict if exc.reason in _CONFLICTS else BadRequest
            raise cls(_SENTENCES.get(exc.reason, exc.sentence), exc.reason) from None
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        previous = WrapKeyRecord(
            device_id=device.device_id,
            key_id=current.wrap_key.key_id,
            certificate=device.certificate,
            created_at=current.created_at,
            usable_until=usable_until(current, new),
            superseded_at=now,
        )
        created = await self.storage.rotate_certificate(
            device.device_id, device.certificate, certificate, previous
        )
        self.accounts.cache.forget(session.user_id, (device.device_id,))
        return RotationOutcome(created, new.wrap_key.key_id, new.expires_at)

    async def check_wrap(self, device: DeviceRecord, key_id: bytes, wrap: bytes) -> None:
        """Refuse a wrap whose key does not accept wraps now (409) or of the wrong length (400).

        The current key, the usual case, is checked from the cached
        certificate alone; only a wrap to another key reads the stored ones.
        """
        current = await self.accounts.certificate(device)
        if current.wrap_key.key_id == key_id and current.is_valid_at(self.clock()):
            check_wrap_key(
                {key_id: UsableKey(current.wrap_key.suite, True)}, key_id, wrap, wrap_length
            )
            return
        usable = await self.usable(device)
        if key_id not in usable:
            usable = await self._usable_fresh(device, usable)
        check_wrap_key(usable, key_id, wrap, wrap_length)

    async def _usable_fresh(
        self, device: DeviceRecord, cached: dict[bytes, UsableKey]
    ) -> dict[bytes, UsableKey]:
        """The usable keys from the stored device, before refusing a wrap as ``stale_key``.

        The device came from the directory cache.  Another relay process that
        accepted a rotation tells this one to forget the entry, with its
        commit, but the notification takes a moment to arrive (and a process
        whose LISTEN connection dropped hears it only as "listen again");
        meanwhile the entry names the previous certificate, and a wrap to the
        new key was refused (the PostgreSQL crash suite found it, when the
        signal was still sent after the commit).  A refusal is rare, so it is
        decided on the stored row.
        """
        fresh = await self.storage.get_device(device.device_id)
        if fresh is None or fresh.certificate == device.certificate:
            return cached
        self.accounts.cache.forget(device.user_id, (device.device_id,))
        return await self.usable(fresh)

    async def usable(self, device: DeviceRecord) -> dict[bytes, UsableKey]:
        """The device's keys that accept wraps now, by key id (protocol section 5.1)."""
        now = self.clock()
        keys: dict[bytes, UsableKey] = {}
        current = await self.accounts.certificate(device)
        if current.is_valid_at(now):
            keys[current.wrap_key.key_id] = UsableKey(current.wrap_key.suite, True)
        for row in await self.storage.previous_keys(device.device_id, now):
            old = await self._stored(device, row.certificate)
            if old is not None and old.created_at <= now + MAX_CLOCK_SKEW_MS:
                keys.setdefault(old.wrap_key.key_id, UsableKey(old.wrap_key.suite, False))
        return keys

    async def _stored(self, device: DeviceRecord, data: bytes) -> DeviceCertificate | None:
        found = self._verified.get(data, 0.0)
        if found is not None:
            return found
        identity = await self.accounts.cache.identity(device.user_id)
        if identity is None:
            return None
        cert = verify_device_certificate(data, identity, now=None)
        self._verified.put(data, cert, float("inf"))
        return cert

    async def status(self, session: Session) -> dict[str, Any]:
        """The device's keys that accept wraps and the wraps pending per key id."""
        device = await self._own_device(session)
        usable = await self.usable(device)
        pending = await self.storage.pending_by_key(device.device_id)
        return {
            "keys": [
                {"key_id": key_id, "current": key.current, "pending": pending.get(key_id, 0)}
                for key_id, key in usable.items()
            ],
            "pending": [
                {"key_id": key_id, "count": count}
                for key_id, count in sorted(pending.items(), key=lambda kv: kv[0] or b"")
            ],
        }


def check_wrap_key(
    usable: dict[bytes, UsableKey], key_id: bytes, wrap: bytes, lengths: Callable[[WrapSuite], int]
) -> None:
    """Refuse a wrap to a key that does not accept wraps now, or of its suite's wrong length."""
    key = usable.get(key_id)
    if key is None:
        raise Conflict(
            "A wrap is made to a key that is unknown or no longer accepts wraps; "
            "refresh the directory.",
            "stale_key",
        )
    if len(wrap) != lengths(key.suite):
        raise BadRequest("A wrap has the wrong length for its device's key.", "bad_wrap")
