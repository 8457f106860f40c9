"""A small protocol client for the bench, on ``e2e_recall`` and aiohttp only.

The relay package may not import the client package (or the tests), so the
bench speaks the relay API (docs/relay-api.md) itself: registration with
proof of possession of both keys, login, sealed sends with one HPKE wrap per
recipient device, fetch, open, signed recalls and signed deletion receipts.
It does what a client must do on the hot path and nothing a client would
only do for its user (no directory look-ups: every key here was made by the
bench, so it is known; no local database).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.auth import sign_login, sign_registration
from e2e_recall.device_admin import sign_device_approval

from .errors import BenchFailed

__all__ = [
    "BenchDevice",
    "BenchUser",
    "PreparedSend",
    "RelayClient",
    "RelayRefused",
    "now_ms",
    "seal_send",
    "sign_recall",
    "sign_receipt",
]

MSGPACK = "application/msgpack"
ANSWER_LIMITS = wire.Limits(max_size=1 << 22, max_bin=1 << 21, max_array=1 << 16)
SEALED_WINDOW_MS = 7 * 86_400_000
OPENED_WINDOW_MS = 3_600_000


def now_ms() -> int:
    """Wall-clock milliseconds: what the relay's clock is compared with."""
    return int(time.time() * 1000)


class RelayRefused(Exception):
    """The relay answered 4xx or 5xx; ``code`` is its stable error code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


@dataclass(eq=False)
class BenchDevice:
    """One registered device: its private keys, its certificate and its session."""

    owner: BenchUser
    secrets: er.DeviceSecrets
    certificate: bytes
    token: str = ""
    url: str = ""  # the relay process this device talks to ("": the client's own URL)

    @property
    def device_id(self) -> bytes:
        return self.secrets.device_id

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(eq=False)
class BenchUser:
    """One registered user: an identity key and its devices."""

    index: int
    identity: er.SigningKey
    devices: list[BenchDevice] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.user_id = er.fingerprint(self.identity.public_key)


@dataclass(frozen=True, eq=False)
class PreparedSend:
    """A message sealed, signed and wrapped, with its request body already encoded."""

    message_id: bytes
    conversation_id: bytes
    sender: BenchDevice
    recipients: tuple[BenchDevice, ...]
    body: dict[str, Any]
    request: bytes
    expires_at: int | None = None  # wall clock ms when its timer destroys it (None: no timer)


def seal_send(
    sender: BenchDevice,
    recipients: tuple[BenchDevice, ...],
    text: str,
    expire_ms: int = 0,
    conversation: bytes | None = None,
) -> PreparedSend:
    """What a client does to send: a fresh key, encrypt and sign, one wrap per device.

    With ``expire_ms`` the header carries a timer of that long from sending.
    The conversation is the direct one with the one other user among the
    recipients, unless ``conversation`` (a group's) is given.
    """
    user = sender.owner
    if conversation is None:
        others = {device.owner.user_id for device in recipients} - {user.user_id}
        conversation = er.direct_conversation_id(user.user_id, others.pop())
    now = now_ms()
    header = er.Header(
        message_id=os.urandom(16),
        conversation_id=conversation,
        sender=user.user_id,
        sender_device=sender.device_id,
        sent_at=now,
        recall_sealed_until=now + SEALED_WINDOW_MS,
        recall_opened_until=now + OPENED_WINDOW_MS,
        expire_after=expire_ms or None,
        expire_from=er.ExpireFrom.SENT if expire_ms else None,
    )
    sealed = er.seal_message(header, er.Body(text), user.identity)
    wraps = [
        {
            "device_id": device.device_id,
            "wrap": er.wrap_message_key(
                sealed.message_key,
                device.secrets.wrap_key.public_key,
                message_id=header.message_id,
                conversation_id=conversation,
                device_id=device.device_id,
            ),
            "key_id": device.secrets.wrap_key.public_key.key_id,
        }
        for device in recipients
    ]
    body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
    expires_at = now + expire_ms if expire_ms else None
    return PreparedSend(
        header.message_id, conversation, sender, recipients, body, wire.encode(body), expires_at
    )


def sign_recall(sent: PreparedSend) -> bytes:
    """The sender's signed revocation of ``sent``, issued now; the recall request body."""
    revocation = er.sign_revocation(
        sent.sender.owner.identity,
        message_id=sent.message_id,
        conversation_id=sent.conversation_id,
        issued_at=now_ms(),
    )
    return wire.encode({"revocation": revocation.signed, "replacement": None})


def sign_receipt(
    device: BenchDevice, sender: BenchUser, revocation: bytes, opened_at: int | None
) -> tuple[bytes, bytes]:
    """What a recipient device does with a revocation: verify it, delete, sign a receipt.

    Returns the message id and the receipt request body.  The verification is
    the device's own (a relay cannot forge a recall), so it is part of the
    propagation the bench measures.
    """
    checked = er.verify_revocation(revocation, sender.identity.public_key)
    receipt = er.sign_deletion_receipt(
        device.secrets.signing_key,
        user=device.owner.user_id,
        device_id=device.device_id,
        message_id=checked.message_id,
        conversation_id=checked.conversation_id,
        deleted_at=now_ms(),
        opened_at=opened_at,
        revocation=checked.digest,
    )
    return checked.message_id, wire.encode({"receipt": receipt.signed})


class RelayClient:
    """The relay's HTTP API, as the bench calls it: requests in, decoded answers out."""

    def __init__(self, http: aiohttp.ClientSession, url: str, relay_id: bytes) -> None:
        self.http = http
        self.url = url
        self.relay_id = relay_id

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str) -> RelayClient:
        """Read the relay's key from its well-known document: registrations are bound to it."""
        try:
            async with http.get(url + "/.well-known/e2e-recall") as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchFailed(f"The relay at {url} does not answer ({_reason(exc)}).") from None
        try:
            answer = wire.decode(data, limits=ANSWER_LIMITS) if status == 200 else {}
            relay_id = er.fingerprint(er.VerifyKey(answer["relay_key"]))
        except (er.E2ERecallError, KeyError, TypeError):
            raise BenchFailed(
                f"{url} does not look like an e2e-recall relay (its /.well-known/e2e-recall "
                f"answered {status} without a relay key)."
            ) from None
        return cls(http, url, relay_id)

    async def call(
        self, method: str, path: str, body: bytes | None = None, device: BenchDevice | None = None
    ) -> Any:
        """One request; a refusal raises :class:`RelayRefused` with the relay's code.

        It goes to the acting device's own relay process when it has one, so
        that with several processes each device is served by one of them.
        """
        return await self.call_at(
            device.url if device is not None and device.url else self.url,
            method,
            path,
            body,
            device,
        )

    async def call_at(
        self,
        url: str,
        method: str,
        path: str,
        body: bytes | None = None,
        device: BenchDevice | None = None,
    ) -> Any:
        """:meth:`call` at the relay process ``url``."""
        headers = dict(device.authorization) if device is not None else {}
        if body is not None:
            headers["Content-Type"] = MSGPACK
        async with self.http.request(method, url + path, data=body, headers=headers) as response:
            data = await response.read()
            status = response.status
        if status >= 400:
            raise RelayRefused(status, _error_code(status, data))
        try:
            return wire.decode(data, limits=ANSWER_LIMITS)
        except er.E2ERecallError:
            raise RelayRefused(status, "undecodable_answer") from None

    async def register_user(
        self, index: int, devices: int, urls: tuple[str, ...] = (), number: int = 0
    ) -> BenchUser:
        """A new identity with ``devices`` devices, each registered and logged in.

        With ``urls`` (several relay processes), device ``d`` of the run's user
        ``number`` talks to process ``(number + d) % len(urls)`` from its
        registration on: users take the processes in turn, and so do one
        user's devices, so messages and recalls cross between processes.
        """
        user = BenchUser(index, er.SigningKey.generate())
        for d in range(devices):
            url = urls[(number + d) % len(urls)] if urls else self.url
            secrets = er.DeviceSecrets.generate()
            certificate = er.issue_device_certificate(
                user.identity,
                secrets.device_id,
                secrets.signing_key.public_key,
                secrets.wrap_key.public_key,
                created_at=now_ms(),
            ).signed
            challenge = (await self.call_at(url, "POST", "/v1/challenge"))["challenge"]
            identity_signature, device_signature = sign_registration(
                user.identity,
                secrets.signing_key,
                relay=self.relay_id,
                challenge=challenge,
                certificate=certificate,
            )
            body = {
                "identity_key": user.identity.public_key.raw,
                "certificate": certificate,
                "challenge": challenge,
                "identity_signature": identity_signature,
                "device_signature": device_signature,
                "handle": None,
                # After the first, each device is approved by the first (protocol.md 17.4).
                "approval": sign_device_approval(
                    user.devices[0].secrets.signing_key,
                    relay=self.relay_id,
                    approver=user.devices[0].secrets.device_id,
                    certificate=certificate,
                )
                if user.devices
                else None,
            }
            await self.call_at(url, "POST", "/v1/register", wire.encode(body))
            device = BenchDevice(user, secrets, certificate, url=url if urls else "")
            await self.login(device)
            user.devices.append(device)
        return user

    async def login(self, device: BenchDevice) -> None:
        url = device.url or self.url
        challenge = (await self.call_at(url, "POST", "/v1/challenge"))["challenge"]
        signature = sign_login(
            device.secrets.signing_key,
            relay=self.relay_id,
            device_id=device.device_id,
            challenge=challenge,
        )
        body = {"device_id": device.device_id, "challenge": challenge, "signature": signature}
        answer = await self.call_at(url, "POST", "/v1/login", wire.encode(body))
        device.token = answer["token"]

    async def fetch(self, device: BenchDevice, message_id: bytes) -> None:
        await self.call("GET", f"/v1/messages/{message_id.hex()}", device=device)

    async def open(self, device: BenchDevice, message_id: bytes) -> None:
        await self.call("POST", f"/v1/messages/{message_id.hex()}/open", _EMPTY, device)

    async def recall(self, sent: PreparedSend, request: bytes) -> None:
        await self.call(
            "POST", f"/v1/messages/{sent.message_id.hex()}/recall", request, sent.sender
        )

    async def receipt(self, device: BenchDevice, message_id: bytes, request: bytes) -> None:
        await self.call("POST", f"/v1/messages/{message_id.hex()}/receipt", request, device)

    def websocket_url(self, device: BenchDevice | None = None) -> str:
        """The events socket of ``device``'s relay process (or the client's)."""
        url = device.url if device is not None and device.url else self.url
        return url.replace("http", "ws", 1) + "/v1/ws?cursor=0"


_EMPTY = wire.encode({})


def _error_code(status: int, data: bytes) -> str:
    """The relay's error code, or ``http_STATUS`` for an answer that is not the relay's."""
    try:
        answer = wire.decode(data, limits=ANSWER_LIMITS)
    except er.E2ERecallError:
        return f"http_{status}"
    code = answer.get("error") if isinstance(answer, dict) else None
    return code if isinstance(code, str) else f"http_{status}"


def _reason(exc: BaseException) -> str:
    """A transport failure in a few words, for a sentence."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__


def transport_code(exc: BaseException) -> str:
    """An error code for a failure below HTTP (no answer from the relay at all)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_failed"
    return type(exc).__name__
