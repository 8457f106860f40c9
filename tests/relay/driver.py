"""A real relay on 127.0.0.1 and a small client built on the core library (test driver).

The relay is the real application (``create_app``) served by aiohttp on a
loopback port with a real SQLite file in a temporary directory, or a real
PostgreSQL database (the ``database_options`` fixture); the only thing
tests control is its clock.  :class:`Person` speaks the relay's HTTP
and WebSocket API the way a client does, using only ``e2e_recall``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import stored_rows
from aiohttp import web

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.auth import sign_login, sign_registration
from e2e_recall.device_admin import sign_device_approval
from e2e_recall.identity import fingerprint
from relay.app import create_app
from relay.config import load_config
from relay.services import SERVICES, Services
from relay.storage.base import Storage

MSGPACK = "application/msgpack"
T0 = 1_800_000_000_000
MINUTE = 60_000


class Clock:
    """The relay's clock, moved by the test."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class Relay:
    url: str
    data_dir: Path
    clock: Clock
    app: web.Application
    runner: web.AppRunner

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def key(self) -> er.VerifyKey:
        return self.services.relay_key.public_key

    @property
    def relay_id(self) -> bytes:
        return fingerprint(self.key)

    def database_files(self) -> list[Path]:
        return [p for p in self.data_dir.iterdir() if p.name.startswith("relay.db")]

    @property
    def database(self) -> str | Path:
        """The relay's database: its SQLite file, or its PostgreSQL URL."""
        config = self.services.config
        return config.database if config.uses_postgres else config.database_path

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the relay's own database (``?`` placeholders)."""
        return await stored_rows.query(self.database, sql, *params)

    async def count(self, sql: str, *params: Any) -> int:
        return await stored_rows.count(self.database, sql, *params)

    async def database_contents(self) -> bytes:
        """What the database holds (:func:`stored_rows.contents`), to search for secrets."""
        return await stored_rows.contents(self.database)

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement on the relay's database behind its back; the rows it returns.

        For tests that look at (or damage) what is stored.  Written with
        ``?`` placeholders; on PostgreSQL they become ``$1..$n``.  Its own
        connection, committed at once, so the relay sees it as another
        process's write.
        """
        config = self.services.config
        if not config.uses_postgres:
            with contextlib.closing(sqlite3.connect(config.database_path)) as conn, conn:
                return [tuple(row) for row in conn.execute(statement, args)]
        parts = statement.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        conn = await asyncpg.connect(config.database)
        try:
            return [tuple(row) for row in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()


async def start_relay(
    tmp: Path, clock: Clock, storage: Storage | None = None, **options: Any
) -> Relay:
    """The relay on a free loopback port.

    Every person in a test connects from 127.0.0.1, so the per-address limit
    on logins is off unless a test sets it; the limits suite tests it.  A
    message every device opened is completed at once (``open_grace`` 0)
    unless a test sets a grace; test_open_grace.py tests it.
    """
    defaults = {"purge_interval": "1h", "address_requests_per_minute": 0, "open_grace": 0}
    config = load_config(env={}, flags={"data_dir": str(tmp), "port": 0, **defaults, **options})
    app = create_app(config, clock=clock, storage=storage)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Relay(f"http://127.0.0.1:{port}", tmp, clock, app, runner)


class RelayRefused(Exception):
    after_unknown = False  # set by a retrying caller: an earlier attempt got no answer

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.code = body.get("error")
        self.message = body.get("message")
        self.body = body


@dataclass
class Device:
    secrets: er.DeviceSecrets
    certificate: bytes
    token: str | None = None
    cursor: int = 0


@dataclass
class Person:
    """One user with one or more devices, talking to the relay like a client."""

    name: str
    relay: Relay
    http: aiohttp.ClientSession
    identity: er.SigningKey = field(default_factory=er.SigningKey.generate)
    devices: list[Device] = field(default_factory=list)

    @property
    def user_id(self) -> bytes:
        return fingerprint(self.identity.public_key)

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        device: int = 0,
        token: str | None = None,
    ) -> dict[str, Any]:
        headers = {}
        use = token if token is not None else (self.devices[device].token if self.devices else None)
        if use:
            headers["Authorization"] = f"Bearer {use}"
        data = None
        if body is not None:
            headers["Content-Type"] = MSGPACK
            data = wire.encode(body)
        async with self.http.request(
            method, self.relay.url + path, data=data, headers=headers
        ) as response:
            payload = wire.decode(
                await response.read(), limits=wire.Limits(max_size=1 << 22, max_bin=1 << 21)
            )
            if response.status >= 400:
                raise RelayRefused(response.status, payload)
            return payload  # type: ignore[no-any-return]

    def approval(self, certificate: bytes, by: int = 0) -> bytes:
        """Device ``by``'s approval of a new certificate (section 17.4)."""
        approver = self.devices[by].secrets
        return sign_device_approval(
            approver.signing_key,
            relay=self.relay.relay_id,
            approver=approver.device_id,
            certificate=certificate,
        )

    async def add_device(
        self,
        suite: er.WrapSuite = er.WrapSuite.X25519,
        handle: str | None = None,
        approval: bytes | None = None,
        lifetime: int | None = None,
    ) -> Device:
        """Register another device; after the first, approved by device 0 unless given."""
        secrets = er.DeviceSecrets.generate(suite)
        now = self.relay.clock.now
        cert = er.issue_device_certificate(
            self.identity,
            secrets.device_id,
            secrets.signing_key.public_key,
            secrets.wrap_key.public_key,
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        ).signed
        challenge = (await self.call("POST", "/v1/challenge", token=""))["challenge"]
        id_sig, dev_sig = sign_registration(
            self.identity,
            secrets.signing_key,
            relay=self.relay.relay_id,
            challenge=challenge,
            certificate=cert,
        )
        await self.call(
            "POST",
            "/v1/register",
            {
                "identity_key": self.identity.public_key.raw,
                "certificate": cert,
                "challenge": challenge,
                "identity_signature": id_sig,
                "device_signature": dev_sig,
                "handle": handle,
                "approval": approval
                if approval is not None or not self.devices
                else self.approval(cert),
            },
            token="",
        )
        device = Device(secrets, cert)
        self.devices.append(device)
        await self.login(len(self.devices) - 1)
        return device

    async def login(self, index: int = 0) -> str:
        device = self.devices[index]
        challenge = (await self.call("POST", "/v1/challenge", token=""))["challenge"]
        signature = sign_login(
            device.secrets.signing_key,
            relay=self.relay.relay_id,
            device_id=device.secrets.device_id,
            challenge=challenge,
        )
        answer = await self.call(
            "POST",
            "/v1/login",
            {
                "device_id": device.secrets.device_id,
                "challenge": challenge,
                "signature": signature,
            },
            token="",
        )
        device.token = answer["token"]
        return device.token

    async def lookup(self, other: Person) -> list[er.DeviceCertificate]:
        answer = await self.call("GET", f"/v1/users/{other.user_id.hex()}")
        identity = er.VerifyKey(answer["identity_key"])
        assert identity == other.identity.public_key  # pinned: the test knows the real key
        return [
            er.verify_device_certificate(c, identity, now=self.relay.clock.now)
            for c in answer["devices"]
        ]

    def seal(
        self,
        to: Person,
        text: str,
        *,
        sealed_window: int = 7 * 24 * 60 * MINUTE,
        opened_window: int = 60 * MINUTE,
        replaces: bytes | None = None,
        expire_after: int | None = None,
        expire_from: er.ExpireFrom | None = None,
        message_id: bytes | None = None,
        device: int = 0,
    ) -> tuple[er.Header, er.SealedMessage]:
        now = self.relay.clock.now
        header = er.Header(
            message_id=message_id or os.urandom(16),
            conversation_id=er.direct_conversation_id(self.user_id, to.user_id),
            sender=self.user_id,
            sender_device=self.devices[device].secrets.device_id,
            sent_at=now,
            recall_sealed_until=now + sealed_window,
            recall_opened_until=now + opened_window,
            kind=er.MessageKind.REPLACEMENT if replaces else er.MessageKind.TEXT,
            replaces=replaces,
            expire_after=expire_after,
            expire_from=expire_from,
        )
        return header, er.seal_message(header, er.Body(text), self.identity)

    def wraps_to(self, to: Person, header: er.Header, key: bytes) -> list[dict[str, bytes]]:
        """Wraps for every device ``to`` has, from what the test knows (no directory lookup)."""
        return [
            {
                "device_id": device.secrets.device_id,
                "wrap": er.wrap_message_key(
                    key,
                    device.secrets.wrap_key.public_key,
                    message_id=header.message_id,
                    conversation_id=header.conversation_id,
                    device_id=device.secrets.device_id,
                ),
                "key_id": device.secrets.wrap_key.public_key.key_id,
            }
            for device in to.devices
        ]

    async def wraps_for(self, to: Person, header: er.Header, key: bytes) -> list[dict[str, bytes]]:
        return [
            {
                "device_id": cert.device_id,
                "wrap": er.wrap_message_key(
                    key,
                    cert.wrap_key,
                    message_id=header.message_id,
                    conversation_id=header.conversation_id,
                    device_id=cert.device_id,
                ),
                "key_id": cert.wrap_key.key_id,
            }
            for cert in await self.lookup(to)
        ]

    async def send(self, to: Person, text: str, **options: Any) -> er.Header:
        header, sealed = self.seal(to, text, **options)
        wraps = await self.wraps_for(to, header, sealed.message_key)
        await self.call(
            "POST",
            "/v1/messages",
            {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
            device=options.get("device", 0),
        )
        return header

    async def read(self, sender: Person, message_id: bytes, device: int = 0) -> str:
        """Fetch, open and decrypt: what a recipient's client does when the user opens it."""
        envelope = (await self.call("GET", f"/v1/messages/{message_id.hex()}", device=device))[
            "envelope"
        ]
        verified = er.open_envelope(envelope, sender.identity.public_key)
        wrap = (
            await self.call("POST", f"/v1/messages/{message_id.hex()}/open", {}, device=device)
        )["wrap"]
        secrets = self.devices[device].secrets
        key = er.unwrap_message_key(
            wrap,
            secrets.wrap_key,
            message_id=message_id,
            conversation_id=verified.header.conversation_id,
            device_id=secrets.device_id,
        )
        return verified.decrypt(key).text

    def revocation(self, header: er.Header, replacement_id: bytes | None = None) -> er.Revocation:
        return er.sign_revocation(
            self.identity,
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            issued_at=self.relay.clock.now,
            replacement_id=replacement_id,
        )

    async def recall(
        self,
        header: er.Header,
        replacement: dict[str, Any] | None = None,
        replacement_id: bytes | None = None,
    ) -> dict[str, Any]:
        revocation = self.revocation(header, replacement_id)
        return await self.call(
            "POST",
            f"/v1/messages/{header.message_id.hex()}/recall",
            {"revocation": revocation.signed, "replacement": replacement},
        )

    def websocket(self, device: int = 0, cursor: int | None = None) -> Any:
        """Open the device's websocket, resuming after ``cursor`` (default: its own)."""
        dev = self.devices[device]
        after = dev.cursor if cursor is None else cursor
        url = self.relay.url.replace("http", "ws", 1) + f"/v1/ws?cursor={after}"
        return self.http.ws_connect(url, headers={"Authorization": f"Bearer {dev.token}"})

    async def report(self, message_id: bytes) -> dict[str, Any]:
        return await self.call("GET", f"/v1/messages/{message_id.hex()}/report")

    async def sync(self, device: int = 0) -> list[dict[str, Any]]:
        dev = self.devices[device]
        answer = await self.call("GET", f"/v1/sync?after={dev.cursor}", device=device)
        events = answer["events"]
        if events:
            dev.cursor = events[-1]["seq"]
        return [{**e, "payload": wire.decode(e["payload"])} for e in events]

    def receipt_for(
        self, sender: Person, revocation: bytes, device: int = 0, opened_at: int | None = None
    ) -> tuple[bytes, bytes]:
        """Verify ``sender``'s revocation and sign this device's deletion receipt for it.

        Returns the message id and the signed receipt.
        """
        checked = er.verify_revocation(revocation, sender.identity.public_key)
        secrets = self.devices[device].secrets
        receipt = er.sign_deletion_receipt(
            secrets.signing_key,
            user=self.user_id,
            device_id=secrets.device_id,
            message_id=checked.message_id,
            conversation_id=checked.conversation_id,
            deleted_at=self.relay.clock.now,
            opened_at=opened_at,
            revocation=checked.digest,
        )
        return checked.message_id, receipt.signed

    async def delete_and_receipt(
        self, sender: Person, revocation: bytes, device: int = 0, opened_at: int | None = None
    ) -> dict[str, Any]:
        """What a recipient client does with a revocation: verify, delete, sign a receipt."""
        message_id, receipt = self.receipt_for(sender, revocation, device, opened_at)
        return await self.call(
            "POST", f"/v1/messages/{message_id.hex()}/receipt", {"receipt": receipt}, device=device
        )


def states(report: dict[str, Any]) -> list[str]:
    return [line["state"] for line in report["devices"]]


async def settle() -> None:
    """Let the relay's writer and pushers run."""
    await asyncio.sleep(0.05)
