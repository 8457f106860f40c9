"""The crash suite's linked registrations, and what is checked of linking at the end.

Mixed into :class:`crash_harness.CrashRun` beside :class:`crash_linking.LinkWork`
(which runs the exchanges; see its module for the method).  A registration
takes a fresh challenge on every attempt, so it is not retried as the same
bytes: an attempt that got no answer and a later ``device_exists`` means the
first was applied.  The reckoning is described in crash_linking.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crash_linking import DAY_MS, LinkRun

import e2e_recall as er
from e2e_recall.auth import sign_registration
from e2e_recall.device_admin import sign_device_approval
from e2e_recall.rotation import issue_expiring_certificate

from driver import Device, Person, RelayRefused

_REFUSED = (401, 403, 404)


def _now_ms() -> int:
    return int(time.time() * 1000)


class LinkRegistry:
    """Registering linked devices, and the linking reckoning."""

    # provided by CrashRun (and its mixins)
    rng: Any
    findings: Any
    people: list[Person]
    linkers: list[Person]
    link_runs: list[LinkRun]
    link_step_sent: asyncio.Event
    revoked: Any
    until_known: Any
    call: Any
    _record: Any
    _try: Any
    _revoked_login: Any

    @staticmethod
    def _certificate(person: Person, secrets: er.DeviceSecrets) -> bytes:
        return issue_expiring_certificate(
            person.identity,
            secrets.device_id,
            secrets.signing_key.public_key,
            secrets.wrap_key.public_key,
            created_at=_now_ms(),
            lifetime=DAY_MS,
        ).signed

    async def _register(
        self,
        person: Person,
        secrets: er.DeviceSecrets,
        certificate: bytes,
        approval: bytes | None,
        kind: str = "link-register",
    ) -> tuple[str, Any]:
        """Register a device, a new challenge for each attempt, until the relay answers."""
        from crash_transport import Unknown  # the harness imports this module

        stop = time.monotonic() + 60
        unknowns = 0
        self.link_step_sent.set()
        try:
            while True:
                try:
                    got = await self.call(person, "POST", "/v1/challenge", None, token="")
                    id_sig, dev_sig = sign_registration(
                        person.identity,
                        secrets.signing_key,
                        relay=person.relay.relay_id,
                        challenge=got["challenge"],
                        certificate=certificate,
                    )
                    body = {
                        "identity_key": person.identity.public_key.raw,
                        "certificate": certificate,
                        "challenge": got["challenge"],
                        "identity_signature": id_sig,
                        "device_signature": dev_sig,
                        "handle": None,
                        "approval": approval,
                    }
                    await self.call(person, "POST", "/v1/register", body, token="")
                    outcome, result = "ok", None
                    break
                except RelayRefused as refused:
                    if refused.code == "device_exists" and unknowns:
                        outcome, result = "ok", None
                    else:
                        outcome, result = "failed", refused
                    break
                except Unknown:
                    unknowns += 1
                    if time.monotonic() > stop:
                        outcome, result = "unknown", None
                        break
                    await asyncio.sleep(0.05 + self.rng.random() * 0.2)
        finally:
            self.link_step_sent.clear()
        self._record(kind, outcome)
        return outcome, result

    # -- reckoning ------------------------------------------------------------------------------
    async def _reckon_links(self) -> None:
        for person in self.linkers:
            await self._reckon_linker(person)
        await self._revoked_approval()

    async def _absent(
        self, person: Person, secrets: er.DeviceSecrets, listed: Any, why: str
    ) -> None:
        status = await self._revoked_login(person, Device(secrets, b""))
        if secrets.device_id in listed or status not in _REFUSED:
            self.findings.unapproved_devices.append(f"{why}: listed or logs in ({status})")
        else:
            self.findings.checked_unlinked_refused += 1

    async def _reckon_linker(self, person: Person) -> None:
        outcome, answer = await self.until_known(person, "GET", "/v1/devices", None)
        if outcome != "ok":
            self.findings.linked_missing.append(f"{person.name}: GET /v1/devices {answer}")
            return
        listed = {d["device_id"]: d["certificate"] for d in answer["devices"]}
        outcome, found = await self.until_known(
            self.people[0], "GET", f"/v1/users/{person.user_id.hex()}", None
        )
        directory = set(found["devices"]) if outcome == "ok" else set()
        known = {person.devices[0].secrets.device_id}
        for run in (r for r in self.link_runs if r.person is person):
            name = run.link_id.hex()[:12]
            device_id = run.secrets.device_id
            if run.registered == "unknown":
                run.registered = "ok" if device_id in listed else "failed"
                self.findings.resolved_unknown["link registration (at the end)"] += 1
            if run.registered == "ok":
                known.add(device_id)
                login = await self._revoked_login(person, Device(run.secrets, run.certificate))
                if listed.get(device_id) != run.certificate or run.certificate not in directory:
                    self.findings.linked_missing.append(f"{name}: not listed with its certificate")
                elif login != 200:
                    self.findings.linked_missing.append(f"{name}: cannot log in ({login})")
                else:
                    self.findings.checked_linked_devices += 1
            else:
                await self._absent(
                    person, run.secrets, listed, f"{name} ({run.stopped or 'unregistered'})"
                )
            if run.impostor is not None:
                await self._absent(person, run.impostor, listed, f"{name}'s impostor")
            await self._reckon_slot(run)
        for device_id in set(listed) - known:
            self.findings.unapproved_devices.append(f"{person.name}: {device_id.hex()[:8]} listed")

    async def _reckon_slot(self, run: LinkRun) -> None:
        name = run.link_id.hex()[:12]
        if run.taken in ("ok", "lost"):
            read = await self._try(run.person, "GET", run.path, None, 0)
            take = await self.until_known(
                run.person, "GET", run.path + "/answer", None, 0, token=""
            )
            took = take[1]
            if isinstance(read, dict) or not isinstance(took, RelayRefused) or took.status != 404:
                self.findings.link_slots_reused.append(f"{name}: its slot outlived its take")
            else:
                self.findings.checked_slots_spent += 1
        elif run.requested == "ok" and _now_ms() < run.expires_at - 2000:
            read = await self._try(run.person, "GET", run.path, None, 0)
            if not isinstance(read, dict) or read.get("request") != run.request:
                self.findings.link_lost.append(f"{name}: its untaken slot lost its request")

    async def _revoked_approval(self) -> None:
        """The revoked device's approval of a new device is refused (it still holds keys)."""
        if self.revoked is None:
            return
        person, device, _ = self.revoked
        secrets = er.DeviceSecrets.generate()
        certificate = self._certificate(person, secrets)
        approval = sign_device_approval(
            device.secrets.signing_key,
            relay=person.relay.relay_id,
            approver=device.secrets.device_id,
            certificate=certificate,
        )
        outcome, _ = await self._register(person, secrets, certificate, approval, "link-impostor")
        if outcome == "ok":
            self.findings.unapproved_devices.append("approved by the revoked device")
        else:
            await self._absent(person, secrets, {}, "approved by the revoked device")
