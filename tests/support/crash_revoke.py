"""The crash suite's device revocation: one device withdrawn mid-run, perhaps under a kill.

Mixed into :class:`crash_harness.CrashRun`.  When half the operations are
done, the workers pause (each finishes the operation it is in, so no send is
left half-way wrapped to the device about to go), and one person's last
device (the second, with the default two) is revoked by their first device:
``POST /v1/devices/{id}/revoke`` with a revocation signed by the identity
key, retried (the very same bytes) until the relay answers, while the
killer aims one of its kills at that request.  A retry of a revocation that
was applied answers ``already_revoked`` and is as good as the first.

Once it is acknowledged the device leaves the person's list of devices, so
later sends (direct and group) wrap to current devices only, and every
check that walks a recipient's devices skips it.  At the end, with the
relay up and quiet:

- the revoked device cannot log in, and with the session it had it is
  refused every message that was ever sent to its person (fetch and open);
- the directory no longer lists it, and a send that wraps to it is refused
  (``400 unknown_device``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

import e2e_recall as er
from e2e_recall.auth import sign_login
from e2e_recall.device_admin import sign_device_revocation

from crash_model import Sent
from driver import Device, Person, RelayRefused


class RevokeWork:
    """The pause, the revocation, and what is checked of the revoked device."""

    # provided by CrashRun (and its Reckoning, GroupWork)
    rng: Any
    config: Any
    findings: Any
    people: list[Person]
    messages: list[Sent]
    group_messages: list[Any]
    done: int
    until_known: Any
    _record: Any

    def _setup_revocation(self) -> None:
        self.in_flight = 0
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.revoke_sent = asyncio.Event()
        self.revoke_aim = asyncio.Event()  # the killer waits for the request, ready to kill
        self.revoke_over = asyncio.Event()
        self.revocation_started = False
        self.revoked: tuple[Person, Device, int] | None = None  # person, device, its old index

    async def _revoke_point(self) -> None:
        """Called by a worker before each operation: wait out a pause, or be the one to revoke."""
        await self.resumed.wait()
        if not self.config.revoke or self.revocation_started:
            return
        if self.done < self.config.operations // 2:
            return
        self.revocation_started = True
        self.resumed.clear()
        while self.in_flight:  # the others finish what they are doing
            await asyncio.sleep(0.01)
        try:
            await self._revoke_device()
        finally:
            self.resumed.set()

    async def _revoke_device(self) -> None:
        person = self.rng.choice([p for p in self.people if len(p.devices) >= 2])
        index = len(person.devices) - 1
        device = person.devices[index]
        revocation = sign_device_revocation(
            person.identity,
            device_id=device.secrets.device_id,
            revoked_at=person.relay.clock.now,
            relay=person.relay.relay_id,
        ).signed
        path = f"/v1/devices/{device.secrets.device_id.hex()}/revoke"
        if self.config.kills:  # the killer keeps one kill for this request
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.revoke_aim.wait(), 60)
        self.revoke_sent.set()
        try:
            outcome, answer = await self.until_known(
                person, "POST", path, {"revocation": revocation}, 0, deadline=120.0
            )
        finally:
            self.revoke_sent.clear()
            self.revoke_over.set()
        self._record("revoke", outcome)
        if outcome != "ok":
            self.findings.revocations_refused.append(f"{person.name}/{index}: {answer}")
            return
        del person.devices[index]
        self.revoked = (person, device, index)
        for sent in self.messages:
            if sent.recipient is person:
                sent.opened.discard(index)
                sent.receipts.discard(index)

    async def _wait_for_revocation_moment(self) -> None:
        """Before the kill aimed at the revocation: wait until its request is out."""
        self.revoke_aim.set()
        sent = asyncio.ensure_future(self.revoke_sent.wait())
        over = asyncio.ensure_future(self.revoke_over.wait())
        await asyncio.wait([sent, over], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        sent.cancel()
        over.cancel()
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        self.findings.kills_mid_revocation += int(self.revoke_sent.is_set())

    # -- reckoning --------------------------------------------------------------------------
    async def _reckon_revoked(self) -> None:
        if self.revoked is None:
            if self.config.revoke:
                self.findings.revocations_refused.append("no revocation was made")
            return
        person, device, index = self.revoked
        name = f"{person.name}/{index}"
        if await self._revoked_login(person, device) != 401:
            self.findings.revoked_served.append(f"{name}: logged in")
        ids = [m.header.message_id for m in self.messages if m.recipient is person]
        ids += [g.header.message_id for g in self.group_messages if person in g.recipients]
        for message_id in ids:
            path = f"/v1/messages/{message_id.hex()}"
            fetched = await self._as_revoked(person, device, "GET", path, None)
            opened = await self._as_revoked(person, device, "POST", path + "/open", {})
            if fetched == 200 or opened == 200:
                self.findings.revoked_served.append(f"{name}: {message_id.hex()[:12]}")
            else:
                self.findings.checked_revoked_refusals += 1
        await self._reckon_directory(person, device)

    async def _reckon_directory(self, person: Person, device: Device) -> None:
        """The directory leaves it out, and a wrap addressed to it is refused."""
        sender = next(p for p in self.people if p is not person)
        outcome, answer = await self.until_known(
            sender, "GET", f"/v1/users/{person.user_id.hex()}", None
        )
        revoked_id = device.secrets.device_id
        if outcome == "ok":
            assert isinstance(answer, dict)
            key, now = person.identity.public_key, sender.relay.clock.now
            listed = [er.verify_device_certificate(c, key, now=now) for c in answer["devices"]]
            if any(cert.device_id == revoked_id for cert in listed):
                self.findings.revoked_served.append("still listed in the directory")
            else:
                self.findings.checked_revoked_refusals += 1
        header, sealed = sender.seal(person, f"to a revoked device {os.urandom(4).hex()}")
        wraps = sender.wraps_to(person, header, sealed.message_key)
        wraps.append(
            {
                "device_id": revoked_id,
                "wrap": er.wrap_message_key(
                    sealed.message_key,
                    device.secrets.wrap_key.public_key,
                    message_id=header.message_id,
                    conversation_id=header.conversation_id,
                    device_id=revoked_id,
                ),
                "key_id": device.secrets.wrap_key.public_key.key_id,
            }
        )
        body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        outcome, answer = await self.until_known(sender, "POST", "/v1/messages", body)
        if outcome == "ok":
            self.findings.revoked_served.append("a send wrapped to it was accepted")
        elif isinstance(answer, RelayRefused) and answer.code == "unknown_device":
            self.findings.checked_revoked_refusals += 1
        else:
            self.findings.unresolved.append(f"send wrapped to the revoked device: {answer}")

    async def _as_revoked(
        self, person: Person, device: Device, method: str, path: str, body: dict[str, Any] | None
    ) -> int:
        """The status a request from the revoked device, with its old session, gets."""
        return await self._retried(
            lambda: person.call(method, path, body, token=device.token or "x")
        )

    async def _revoked_login(self, person: Person, device: Device) -> int:
        """Log the revoked device in the way :meth:`driver.Person.login` does; the status."""

        async def attempt() -> dict[str, Any]:
            challenge = (await person.call("POST", "/v1/challenge", token=""))["challenge"]
            signature = sign_login(
                device.secrets.signing_key,
                relay=person.relay.relay_id,
                device_id=device.secrets.device_id,
                challenge=challenge,
            )
            body = {
                "device_id": device.secrets.device_id,
                "challenge": challenge,
                "signature": signature,
            }
            return await person.call("POST", "/v1/login", body, token="")

        return await self._retried(attempt)

    async def _retried(self, request: Callable[[], Awaitable[Any]]) -> int:
        """The status of a request, asked again while there is no trustworthy answer."""
        stop = time.monotonic() + 60
        while True:
            status = await self._revoked_status(request())
            if status != 0 or time.monotonic() > stop:
                return status
            await asyncio.sleep(0.2)

    async def _revoked_status(self, request: Any) -> int:
        """200, a 4xx status, or 0 for no trustworthy answer (the request is not retried)."""
        try:
            await asyncio.wait_for(request, self.config.request_timeout)
            return 200
        except RelayRefused as refused:
            return refused.status if refused.status < 500 else 0
        except (TimeoutError, aiohttp.ClientError, OSError, er.errors.E2ERecallError):
            return 0
