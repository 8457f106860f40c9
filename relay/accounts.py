"""Accounts: registration, login, sessions and the directory.

Plain code over the storage protocol, with the time passed in through a
clock: tests drive it without HTTP.  Tokens are 32 random bytes; only their
SHA-256 is stored, so a copy of the database does not let anyone log in,
and the stored hash is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from e2e_recall.auth import CHALLENGE_LEN, verify_login, verify_registration
from e2e_recall.device import DeviceCertificate, verify_device_certificate
from e2e_recall.device_admin import peek_approver, verify_device_approval
from e2e_recall.errors import ProtocolError
from e2e_recall.identity import fingerprint
from e2e_recall.signing import SigningKey, VerifyKey

from .directory import DirectoryCache, LruCache
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    from_protocol_error,
)
from .storage.base import DeviceRecord, SessionRecord, Storage, UserRecord

__all__ = ["CHALLENGE_TTL_MS", "TOKEN_BYTES", "Accounts", "Session"]

TOKEN_BYTES = 32
CHALLENGE_TTL_MS = 5 * 60 * 1000
_HANDLE = re.compile(r"[a-z0-9][a-z0-9_.-]{2,31}")


@dataclass(frozen=True, slots=True)
class Session:
    """Who a request acts as: one user, through one of their devices."""

    user_id: bytes
    device_id: bytes
    token_hash: bytes
    expires_at: int


def _token_hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def encode_token(token: bytes) -> str:
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_token(text: str) -> bytes | None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        return None


SESSION_CACHE_SECONDS = 2.0


class Accounts:
    """The relay's account rules."""

    def __init__(
        self,
        storage: Storage,
        relay_key: SigningKey,
        clock: Callable[[], int],
        session_ttl_ms: int,
        rng: Callable[[int], bytes] = os.urandom,
        max_pending_challenges: int = 100_000,
    ) -> None:
        self.storage = storage
        self.max_pending_challenges = max_pending_challenges
        self.relay_id = fingerprint(relay_key.public_key)
        self.clock = clock
        self.session_ttl_ms = session_ttl_ms
        self.rng = rng
        self._certificates: dict[bytes, DeviceCertificate] = {}
        self.cache = DirectoryCache(storage)
        # Sessions looked up by their token's hash, for a moment: a client's burst of
        # requests reads its session once.  A logout here drops it at once; one in
        # another relay process is seen within SESSION_CACHE_SECONDS.
        self._sessions: LruCache[bytes, Session] = LruCache(100_000)

    async def challenge(self) -> tuple[bytes, int]:
        """A fresh challenge, unless too many are outstanding (each one is a stored row)."""
        challenge = self.rng(CHALLENGE_LEN)
        expires_at = self.clock() + CHALLENGE_TTL_MS
        if not await self.storage.put_challenge(challenge, expires_at, self.max_pending_challenges):
            raise ServiceUnavailable(
                "The relay has too many logins in progress; try again in a minute.",
                "busy",
                retry_after=60,
            )
        return challenge, expires_at

    async def _take(self, challenge: bytes) -> None:
        if len(challenge) != CHALLENGE_LEN or not await self.storage.take_challenge(
            challenge, self.clock()
        ):
            raise Unauthorized(
                "The challenge is unknown, used or expired; ask for a new one.", "bad_challenge"
            )

    async def register(
        self,
        identity_key: bytes,
        certificate: bytes,
        challenge: bytes,
        identity_signature: bytes,
        device_signature: bytes,
        handle: str | None,
        approval: bytes | None = None,
    ) -> DeviceRecord:
        """Register a device (and its user, if new) after proof of possession.

        A user's first device needs nothing more; every later one needs the
        approval of a current device (:meth:`_check_approval`), so a device
        that was revoked -- and still holds the identity key -- cannot add any.
        """
        if handle is not None and not _HANDLE.fullmatch(handle):
            raise BadRequest(
                "A handle is 3 to 32 lowercase letters, digits, '.', '_' or '-'.", "bad_handle"
            )
        now = self.clock()
        try:
            identity = VerifyKey(identity_key)
            cert = verify_registration(
                identity,
                certificate,
                relay=self.relay_id,
                challenge=challenge,
                identity_signature=identity_signature,
                device_signature=device_signature,
                now=now,
            )
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        await self._check_approval(cert.user, cert.device_id, certificate, approval, now)
        await self._take(challenge)
        user = UserRecord(cert.user, identity_key, handle, now)
        existing = await self.storage.get_user(user_id=cert.user)
        if existing is not None and handle is not None and existing.handle != handle:
            raise Conflict(
                "This user is already registered with another handle.", "handle_mismatch"
            )
        device = DeviceRecord(cert.device_id, cert.user, certificate, cert.signing_key.raw, now)
        await self.storage.add_device(user, device)
        self.cache.forget(cert.user, (cert.device_id,))
        self._certificates[cert.device_id] = cert
        return device

    async def _check_approval(
        self, user_id: bytes, device_id: bytes, certificate: bytes, approval: bytes | None, now: int
    ) -> None:
        devices = await self.storage.get_devices(user_id)
        for device in devices:
            if device.device_id == device_id and device.revoked_at is not None:
                raise Forbidden(
                    "This device was revoked; a revoked device can never be registered again.",
                    "device_revoked",
                )
        if not devices or any(d.device_id == device_id for d in devices):
            return  # the first device; or a retry of one registered (device_exists follows)
        if approval is None:
            raise Forbidden(
                "This user already has a device: link the new one from it "
                "('e2e-recall device link'), which approves it.",
                "approval_required",
            )
        refusal = Forbidden(
            "The approval is not from a current device of this user, or does not verify.",
            "bad_approval",
        )
        try:
            approver = next(d for d in devices if d.device_id == peek_approver(approval))
            if approver.revoked_at is not None or not (
                await self.certificate(approver)
            ).is_valid_at(now):
                raise refusal
            verify_device_approval(
                approval,
                VerifyKey(approver.signing_key),
                relay=self.relay_id,
                certificate=certificate,
            )
        except (StopIteration, ProtocolError):
            raise refusal from None

    async def certificate(self, device: DeviceRecord) -> DeviceCertificate:
        """The device's verified certificate (verified once, then cached)."""
        cached = self._certificates.get(device.device_id)
        if cached is not None and cached.signed == device.certificate:
            return cached  # a rotation (relay/keys) changes the bytes, and so the entry
        identity = await self.cache.identity(device.user_id)
        if identity is None:
            raise NotFound("No such device.")
        # Accepted before (registration or rotation): its dates are judged where it is used.
        cert = verify_device_certificate(device.certificate, identity, now=None)
        self._certificates[device.device_id] = cert
        return cert

    async def login(self, device_id: bytes, challenge: bytes, signature: bytes) -> tuple[str, int]:
        """Check a device's answer to a challenge; return a new token and its expiry."""
        device = await self.storage.get_device(device_id)
        if device is None:
            raise Unauthorized("Login failed.", "login_failed")
        cert = await self.certificate(device)
        try:
            verify_login(
                cert, signature, relay=self.relay_id, device_id=device_id, challenge=challenge
            )
        except ProtocolError:
            raise Unauthorized("Login failed.", "login_failed") from None
        if device.revoked_at is not None:  # said only to the holder of the device's key
            raise Unauthorized(
                "This device was revoked; it can no longer log in.",
                "device_revoked",
                data={"revoked_at": device.revoked_at},
            )
        await self._take(challenge)
        token = self.rng(TOKEN_BYTES)
        now = self.clock()
        expires_at = now + self.session_ttl_ms
        await self.storage.put_session(
            SessionRecord(_token_hash(token), device.user_id, device_id, now, expires_at)
        )
        return encode_token(token), expires_at

    async def authenticate(self, header: str | None) -> Session:
        """The session for an ``Authorization: Bearer`` header, or 401."""
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("Log in first: this needs a session token.", "no_token")
        token = decode_token(header[len("Bearer ") :].strip())
        if token is None:
            raise Unauthorized("The session token is malformed.", "bad_token")
        wanted = _token_hash(token)
        now = time.monotonic()
        session = self._sessions.get(wanted, now)
        if session is None:
            stored = await self.storage.get_session(wanted)
            if stored is None:
                raise Unauthorized("The session token is unknown or logged out.", "bad_token")
            session = Session(
                stored.user_id, stored.device_id, stored.token_hash, stored.expires_at
            )
            self._sessions.put(wanted, session, now + SESSION_CACHE_SECONDS)
        if not hmac.compare_digest(session.token_hash, wanted):
            raise Unauthorized("The session token is unknown or logged out.", "bad_token")
        if session.expires_at <= self.clock():
            raise Unauthorized("The session has expired; log in again.", "expired_token")
        device = await self.cache.device(session.device_id)
        if device is None or device.revoked_at is not None:
            raise Unauthorized("This device is no longer registered.", "bad_token")
        return session

    def forget_device(self, user_id: bytes, device_id: bytes) -> None:
        """A device was revoked here: no cached directory entry or session may show it."""
        self.cache.forget(user_id, (device_id,))
        self._certificates.pop(device_id, None)
        self._sessions.drop_where(lambda session: session.device_id == device_id)

    def drop_device_sessions(self, device_id: bytes) -> None:
        """Another process revoked this device: forget what is cached of it here."""
        self._certificates.pop(device_id, None)
        self._sessions.drop_where(lambda session: session.device_id == device_id)

    def forget_cached(self) -> None:
        """Another process's changes may have gone unheard: read devices and sessions afresh."""
        self.cache.forget_all()
        self._sessions.clear()

    def drop_session(self, token_hash: bytes) -> None:
        """Another process ended this session: it stops working here at once."""
        self._sessions.drop(token_hash)

    async def logout(self, session: Session) -> None:
        self._sessions.drop(session.token_hash)
        await self.storage.delete_session(session.token_hash)

    async def directory(
        self, user_id: bytes | None = None, handle: str | None = None
    ) -> tuple[UserRecord, list[DeviceRecord]]:
        """A user's identity key and current device certificates."""
        user = await self.storage.get_user(user_id=user_id, handle=handle)
        if user is None:
            raise NotFound("No such user.")
        return user, await self.current_devices(user.user_id)

    async def current_devices(self, user_id: bytes) -> list[DeviceRecord]:
        """The user's devices whose certificates are valid now (not revoked, not expired)."""
        now = self.clock()
        current = []
        for device in await self.cache.devices(user_id):
            if device.revoked_at is None and (await self.certificate(device)).is_valid_at(now):
                current.append(device)
        return current
