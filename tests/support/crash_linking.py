"""The crash suite's device linking: link slots and linked registrations under SIGKILL.

Mixed into :class:`crash_harness.CrashRun`.  A few extra people (the
*linkers*, who take no other part) each start with one device; workers link
new devices to them through the relay's link slot, the whole exchange of
protocol section 17 with the core's sealing: the old device opens a slot
(``POST /v1/links``), the new one puts its sealed request (anonymous), the
old one reads and checks it, certifies the new keys and puts the sealed
answer with its approval, the new one takes the answer (anonymous; taking
deletes the slot), checks that it certifies exactly its keys, and registers
with the approval.  Each step is retried (the very same bytes) until the
relay answers, while the killer aims kills at the steps in flight; a
refusal after an unanswered attempt that says the attempt was applied
(``link_exists``, ``link_used``, ``device_exists``) counts as applied.  Some
exchanges stop half-way (the new device "crashes" after its request or
after taking the answer); some are joined by a second request, a second
answer or a second take, which must be refused; some by an impostor that
registers a device of its own with the approval made for another
certificate, or with none, which must be refused too.

At the end, with the relay up and quiet, for each linker:

- every device whose registration was acknowledged is listed by ``GET
  /v1/devices`` and by the directory with exactly its certificate, and logs
  in; one whose registration stayed unknown is resolved from that list;
- no other device is listed: none whose exchange stopped half-way, no
  impostor, and none of them can log in (``unapproved_devices``);
- every slot whose answer was taken is gone (read and take answer 404), and
  an untaken slot that has not expired still holds exactly its request.

A take whose answer was lost with a killed relay deleted the slot: the new
device cannot take it again and must start over.  That is the protocol's
rule (the sealed identity key leaves the relay at once); the run counts it
(``link_answers_lost_in_flight``) and checks that nothing of it was left.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

import e2e_recall as er
from e2e_recall.link_code import link_keys, new_link_secret
from e2e_recall.linking import (
    LinkRequest,
    open_link_answer,
    open_link_request,
    seal_link_answer,
    seal_link_request,
)
from e2e_recall.rotation import issue_expiring_certificate

from driver import Device, Person, RelayRefused

LINK_LIFE_MS = 60_000  # a slot's expiry after it is opened
MAX_OPEN = 3  # the relay's limit of open slots per user (relay/devices/service.py)
DAY_MS = 24 * 60 * 60 * 1000
_REFUSED = (401, 403, 404)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class LinkRun:
    """One link exchange as the two devices know it."""

    person: Person
    link_id: bytes
    link_key: bytes
    secrets: er.DeviceSecrets  # the new device's
    request: bytes  # its sealed request
    expires_at: int
    created: str = ""
    requested: str = ""
    answered: str = ""
    taken: str = ""  # "", ok, failed, unknown, lost (taken by an attempt never answered)
    registered: str = ""
    certificate: bytes = b""
    approval: bytes = b""
    answer: bytes = b""  # the old device's sealed answer
    stopped: str = ""  # where the new device gave up, if it did
    impostor: er.DeviceSecrets | None = None

    @property
    def path(self) -> str:
        return f"/v1/links/{self.link_id.hex()}"


class LinkWork:
    """Link exchanges, their aimed kills and their reckoning."""

    # provided by CrashRun (and its mixins)
    rng: Any
    config: Any
    findings: Any
    people: list[Person]
    revoked: Any
    until_known: Any
    call: Any
    _record: Any
    _try: Any
    _revoked_login: Any
    _register: Any
    _certificate: Any

    async def _setup_linking(self, http: aiohttp.ClientSession) -> None:
        self.linkers: list[Person] = []
        self.link_runs: list[LinkRun] = []
        self.linking_now: set[str] = set()
        self.link_step_sent = asyncio.Event()
        if not self.config.linking:
            return
        for index in range(self.config.linkers):
            person = Person(f"l{index}", self.people[0].relay, http)
            await person.add_device()
            self.linkers.append(person)

    def _open_slots(self, person: Person) -> int:
        """Slots of this person the relay may still count as open (expired ones aside)."""
        now = _now_ms()
        return sum(
            1
            for run in self.link_runs
            if run.person is person
            and run.created in ("ok", "unknown")
            and run.taken not in ("ok", "lost")
            and run.expires_at > now - 2000
        )

    async def _link_step(self) -> bool:
        free = [
            p
            for p in self.linkers
            if p.name not in self.linking_now and self._open_slots(p) < MAX_OPEN
        ]
        if not free:
            return False
        person = self.rng.choice(free)
        self.linking_now.add(person.name)
        try:
            await self._link(person)
        finally:
            self.linking_now.discard(person.name)
        return True

    async def _link_call(
        self,
        step: str,
        person: Person,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        anonymous: bool = False,
        applied: str = "",
    ) -> tuple[str, Any]:
        """One step, retried until known; "already done" after a lost answer counts as done."""
        self.link_step_sent.set()
        try:
            outcome, answer = await self.until_known(
                person, method, path, body, 0, token="" if anonymous else None
            )
        finally:
            self.link_step_sent.clear()
        if (
            outcome == "failed"
            and applied
            and isinstance(answer, RelayRefused)
            and answer.code == applied
            and answer.after_unknown
        ):
            self.findings.resolved_unknown[f"link {step} (already applied)"] += 1
            outcome = "ok"
        self._record(f"link-{step}", outcome)
        return outcome, answer

    def _refused_step(self, run: LinkRun, step: str, answer: Any) -> None:
        self.findings.link_steps_refused.append(f"{run.link_id.hex()[:12]} {step}: {answer}")

    async def _second_use(
        self, run: LinkRun, what: str, method: str, path: str, body: Any, expect: str
    ) -> None:
        """Someone else uses the slot again: it must be refused (``expect``: the code or 404)."""
        outcome, answer = await self.until_known(run.person, method, path, body, 0, token="")
        name = f"{run.link_id.hex()[:12]}: a second {what}"
        if outcome == "ok":
            self.findings.link_slots_reused.append(f"{name} was accepted")
        elif isinstance(answer, RelayRefused) and answer.status != 0:
            got = "404" if answer.status == 404 else answer.code
            if got == expect:
                self.findings.checked_slot_reuse_refused += 1
            else:
                self.findings.link_lost.append(f"{name} was answered {answer.status} {got}")

    async def _link(self, person: Person) -> None:
        keys = link_keys(new_link_secret())
        new = er.DeviceSecrets.generate()
        request = seal_link_request(
            link_id=keys.link_id,
            link_key=keys.link_key,
            device_id=new.device_id,
            signing_key=new.signing_key,
            wrap_key=new.wrap_key.public_key,
        )
        run = LinkRun(person, keys.link_id, keys.link_key, new, request, _now_ms() + LINK_LIFE_MS)
        self.link_runs.append(run)
        body = {"link_id": run.link_id, "expires_at": run.expires_at}
        run.created, answer = await self._link_call(
            "create", person, "POST", "/v1/links", body, applied="link_exists"
        )
        if run.created != "ok":
            if run.created == "failed":
                self._refused_step(run, "create", answer)
            return
        run.requested, answer = await self._link_call(
            "request",
            person,
            "PUT",
            run.path + "/request",
            {"sealed": request},
            anonymous=True,
            applied="link_used",  # and the read below shows whose request it holds
        )
        if run.requested != "ok":
            if run.requested == "failed":
                self._refused_step(run, "request", answer)
            return
        if self.rng.random() < 0.3:
            other = {"sealed": os.urandom(len(request))}
            await self._second_use(run, "request", "PUT", run.path + "/request", other, "link_used")
        if self.rng.random() < 0.1:
            run.stopped = "after its request"
            return
        if not await self._answer(run):
            return
        await self._take_and_register(run)

    async def _answer(self, run: LinkRun) -> bool:
        """The old device reads and checks the request, then answers; True once answered."""
        person, new = run.person, run.secrets
        outcome, answer = await self._link_call("read", person, "GET", run.path, None)
        name = run.link_id.hex()[:12]
        if outcome != "ok":
            if outcome == "failed":
                self.findings.link_lost.append(f"{name}: read after its request: {answer}")
            return False
        if answer.get("request") != run.request:
            self.findings.link_lost.append(f"{name}: the slot holds another request or none")
            return False
        checked = open_link_request(answer["request"], link_id=run.link_id, link_key=run.link_key)
        if checked.device_id != new.device_id:
            self.findings.link_lost.append(f"{name}: the request names another device")
            return False
        run.certificate = issue_expiring_certificate(
            person.identity,
            checked.device_id,
            checked.signing_key,
            checked.wrap_key,
            created_at=_now_ms(),
            lifetime=DAY_MS,
        ).signed
        run.approval = person.approval(run.certificate)
        sealed = seal_link_answer(
            link_id=run.link_id,
            link_key=run.link_key,
            identity=person.identity,
            certificate=run.certificate,
            approval=run.approval,
            relay_url=person.relay.url,
            handle=None,
            contacts=[],
            groups=[],
        )
        run.answer = sealed
        run.answered, answer = await self._link_call(
            "answer", person, "PUT", run.path + "/answer", {"sealed": sealed}, applied="link_used"
        )
        if run.answered != "ok":
            if run.answered == "failed":
                self._refused_step(run, "answer", answer)
            return False
        if self.rng.random() < 0.3:  # the old device answers again (another user cannot)
            other = {"sealed": os.urandom(len(sealed))}
            outcome, answer = await self.until_known(person, "PUT", run.path + "/answer", other)
            if outcome == "ok":
                self.findings.link_slots_reused.append(f"{name}: a second answer was accepted")
            elif isinstance(answer, RelayRefused) and answer.code == "link_used":
                self.findings.checked_slot_reuse_refused += 1
            elif outcome == "failed":
                self.findings.link_lost.append(f"{name}: a second answer was answered {answer}")
        return True

    async def _take_and_register(self, run: LinkRun) -> None:
        person, new = run.person, run.secrets
        name = run.link_id.hex()[:12]
        outcome, answer = await self._link_call(
            "take", person, "GET", run.path + "/answer", None, anonymous=True
        )
        if outcome == "failed" and isinstance(answer, RelayRefused) and answer.status == 404:
            if answer.after_unknown:  # an attempt that got no answer took it
                run.taken = "lost"
                self.findings.link_answers_lost_in_flight += 1
            else:
                run.taken = "failed"
                self.findings.link_lost.append(f"{name}: its acknowledged answer is gone")
            return
        run.taken = outcome
        if outcome != "ok":
            if outcome == "failed":
                self._refused_step(run, "take", answer)
            return
        if answer.get("answer") != run.answer:
            self.findings.link_lost.append(f"{name}: took another answer or none")
            return
        expected = LinkRequest(
            new.device_id, new.signing_key.public_key, new.wrap_key.public_key, None
        )
        opened = open_link_answer(
            answer["answer"],
            link_id=run.link_id,
            link_key=run.link_key,
            expected=expected,
            now=_now_ms(),
        )
        if self.rng.random() < 0.5:
            await self._second_use(run, "take", "GET", run.path + "/answer", None, "404")
        if self.rng.random() < 0.1:
            run.stopped = "after taking its answer"
            return
        if self.rng.random() < 0.2:  # an impostor's device, with this approval or none
            run.impostor = er.DeviceSecrets.generate()
            approval = run.approval if self.rng.random() < 0.5 else None
            fake = self._certificate(person, run.impostor)
            outcome, refusal = await self._register(
                person, run.impostor, fake, approval, "link-impostor"
            )
            if outcome == "ok":
                self.findings.unapproved_devices.append(f"{name}: an impostor registered")
        run.registered, refusal = await self._register(
            person, new, opened.certificate.signed, opened.approval
        )
        if run.registered == "failed":
            self._refused_step(run, "register", refusal)
        elif run.registered == "ok":
            device = Device(new, opened.certificate.signed)
            if await self._revoked_login(person, device) == 200:
                self.findings.links_completed += 1
            else:
                self.findings.linked_missing.append(f"{name}: registered, cannot log in")

    async def _wait_for_link_moment(self) -> None:
        """Before a kill: wait for a link step (or a linked registration) in flight."""
        try:
            await asyncio.wait_for(self.link_step_sent.wait(), 5)
        except TimeoutError:
            return
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        self.findings.kills_mid_link += int(self.link_step_sent.is_set())
