"""Jepsen-style crash testing of the relay: a mixed load, SIGKILLs at random moments, a reckoning.

The relay runs as a real process.  Workers send (to a person with several
devices), open, recall (some with a replacement) and post deletion receipts,
and record each operation's outcome as ``ok`` (acknowledged), ``failed`` (a
definite refusal) or ``unknown`` (no answer: timed out, connection lost, 5xx).
An unknown operation is retried the way a real client retries: the same
message id and the very same bytes, so a retry can never make a second copy.
A killer task sends SIGKILL at random moments, some of them right after a
recall was acknowledged (while the relay truncates its WAL) and some while the
purge job runs (it is set to run every second), checks the database with
``e2e-recall-relay check`` while the relay is down, and starts it again.

At the end, with the relay up and quiet, every record is read back through
the API and checked against what the workers saw:

- an acknowledged send must still exist (its report answers) and, unless it
  was recalled or opened by every device, its envelope must come back byte
  for byte;
- an acknowledged recall must be applied; no recalled message may have its
  ciphertext or a wrap returned by any route;
- every device's event stream holds at most one notice per message (no
  duplicate), and exactly one for a message that is still there;
- every unknown operation is resolved to applied or not applied.

With ``blobs`` (the default) the workload also uploads attachments (some in
several PATCHes, some trickled so a kill lands mid-body), binds them in
sends, downloads them and recalls messages that carry them, and the killer
also aims at a streaming upload, at a recall of a message with files while
it runs, and right after one was acknowledged (before its files are
unlinked); see tests/support/crash_blobs.py for what is then checked.

With ``groups`` (two by default) workers also change groups' membership,
send to groups and recall group messages, and the killer also aims at a
membership change in flight; see tests/support/crash_groups.py.

With ``timers`` some direct sends carry a timer of 1 to 3 s, from sent or
from opened, and the killer also aims at their moments and at opens that
start them (tests/support/crash_timers.py); with ``revoke`` one person's
last device is revoked half-way through, the killer aiming one kill at that
request (tests/support/crash_revoke.py); with ``linking`` devices are
linked to extra people through link slots, the killer aiming at the steps
(tests/support/crash_linking.py); with ``rotation`` each person's first
device rotates its wrapping key every few seconds and every send is judged
against the key rule (tests/support/crash_rotation.py).

A send answered with a refusal must have stored nothing (at the end its
report must not answer), and a recall answered with a refusal must not have
been applied (``refused_but_stored``).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
from crash_blobs import BlobWork
from crash_fleet import FleetTarget, RelayFleet, log_problems
from crash_groups import GroupWork
from crash_killer import Killer
from crash_link_register import LinkRegistry
from crash_linking import LinkWork
from crash_pgkill import PostgresKiller
from crash_revoke import RevokeWork
from crash_rotation import RotationWork
from crash_timers import TimerWork
from crash_transport import Transport

import e2e_recall as er

from crash_model import CrashConfig, Findings, Sent, Upload
from crash_reckoning import Reckoning
from driver import Person, RelayRefused
from relay_process import relay_cli, relay_id

NEVER_OPENED_SHARE = 0.3  # of from-opened messages: never opened nor recalled: stay sealed


class CrashRun(
    Transport,
    Reckoning,
    BlobWork,
    GroupWork,
    TimerWork,
    RevokeWork,
    LinkWork,
    LinkRegistry,
    RotationWork,
    PostgresKiller,
    Killer,
):
    """One run of the suite against one relay data directory."""

    def __init__(self, work: Path, config: CrashConfig) -> None:
        self.work = work
        self.config = config
        self.rng = random.Random(config.seed)
        self.findings = Findings()
        self.messages: list[Sent] = []
        self.people: list[Person] = []
        self.relay = RelayFleet(
            work,
            postgres=config.postgres,
            relays=config.relays,
            E2E_RECALL_RELAY_PURGE_INTERVAL="1s",
            E2E_RECALL_RELAY_SCRUB_INTERVAL="1s",
            E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
            E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",
            E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY="0",
        )
        self.done = 0
        self.reckoning = False  # refusals while reading back are expected, not counted
        self.up = asyncio.Event()
        self.recall_acked = asyncio.Event()
        self.uploads: list[Upload] = []
        self.upload_streaming = asyncio.Event()
        self.blob_recall_sent = asyncio.Event()
        self.blob_recall_acked = asyncio.Event()
        self.destroyed: set[bytes] = set()
        self.timed_open_sent = asyncio.Event()
        self._setup_revocation()

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> Findings:
        try:
            return await self._run()
        finally:
            self.relay.stop()  # the relays, and the PostgreSQL server if there is one

    async def _run(self) -> Findings:
        started = time.monotonic()
        self.relay.start()
        self.up.set()
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            # each request goes to one of the relay processes: a rng of its own, so the
            # workload's choices are the same whatever the number of processes
            routing = random.Random(self.config.seed + 1)
            relay = FleetTarget(self.relay, await relay_id(http, self.relay.url()), routing)
            await self._setup_people(relay, http)
            await self._setup_groups()
            self._setup_rotation()
            await self._setup_linking(http)
            workers = [asyncio.create_task(self._worker(i)) for i in range(self.config.workers)]
            killer = asyncio.create_task(self._killer())
            rotator = asyncio.create_task(self._rotator())
            await asyncio.gather(*workers)
            self.workers_done = True
            await rotator  # its last rotations outlive the reckoning
            # The killer may still be waiting for a moment to aim at (a recall, an upload,
            # a group change) that the last operations no longer bring: its waits time out
            # and it uses the kills it has left, so every run has exactly its kills.
            try:
                await asyncio.wait_for(killer, 120)
            except TimeoutError:
                self.findings.unresolved.append("the killer did not finish its kills")
            if not self.relay.running:
                self.relay.restart_dead()
                self.findings.restarts += 1
            self.reckoning = True
            await self._await_timers()
            await self._reckon()
            if self.config.blobs:
                await self._reckon_blobs()
            await self._reckon_groups()
            await self._reckon_revoked()
            await self._reckon_links()
            await self._reckon_rotation()
        self.relay.kill_all()
        self._check_integrity("final")
        self.findings.log_problems += log_problems(self.relay.logs())
        self.findings.seconds = time.monotonic() - started
        return self.findings

    async def _setup_people(self, relay: FleetTarget, http: aiohttp.ClientSession) -> None:
        for index in range(self.config.people):
            person = Person(f"p{index}", relay, http)  # type: ignore[arg-type]
            for _ in range(self.config.devices_per_person):
                await person.add_device()
            self.people.append(person)

    def _check_integrity(self, when: str) -> None:
        checked = relay_cli(self.work, "check", *self.relay.database_args())
        if checked.returncode != 0 or checked.stdout.strip().splitlines()[-1:] != ["ok"]:
            self.findings.integrity_failures.append(f"{when}: {checked.stdout} {checked.stderr}")

    async def _worker(self, index: int) -> None:
        while self.done < self.config.operations:
            await self._revoke_point()
            self.done += 1
            self.in_flight += 1
            try:
                await self._step()
            finally:
                self.in_flight -= 1

    async def _step(self) -> None:
        """One operation chosen from the worker's roll (a send when the one chosen had none)."""
        roll = self.rng.random()
        if self.config.blobs and roll < 0.3:  # a fifth of the sends' share goes to files
            acted = await (self._upload_step() if roll < 0.18 else self._download_step())
        elif self.config.groups and roll < 0.4:  # part of the sends' share goes to groups
            acted = await self._group_step()
        elif roll < 0.43:
            acted = await self._refetch_opened()
        elif roll < 0.45:
            acted = await self._link_step()
        elif roll < 0.70:
            acted = await self._open()
        elif roll < 0.85:
            acted = await self._recall(with_replacement=self.rng.random() < 0.3)
        else:
            acted = await self._receipt()
        if not acted:  # nothing to open, recall or acknowledge yet: send instead
            await self._send()

    def _pick(self, wanted: Any) -> Sent | None:
        candidates = [m for m in self.messages if not m.busy and wanted(m)]
        if not candidates:
            return None
        chosen = self.rng.choice(candidates)
        chosen.busy = True
        return chosen

    def _record(self, kind: str, outcome: str) -> None:
        self.findings.operations[f"{kind} {outcome}"] += 1

    # -- operations -------------------------------------------------------------------------
    async def _prepare(
        self,
        sender: Person,
        recipient: Person,
        replaces: bytes | None,
        blobs: list[Upload] | None = None,
        timer: tuple[int, bool] | None = None,
    ) -> Sent:
        """A message ready to send; ``timer``: (expire_after, counted from opening)."""
        text = f"{sender.name}->{recipient.name} {os.urandom(12).hex()}"
        header, sealed = sender.seal(
            recipient, text, replaces=replaces, **self._timed_header_fields(timer)
        )
        wraps = sender.wraps_to(recipient, header, sealed.message_key)
        if replaces is None:
            self._probe_wraps(recipient, header, sealed.message_key, wraps)
        blob_ids = [u.blob_id for u in blobs or []]
        body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": blob_ids}
        sent = Sent(sender, recipient, header, body, text, blobs=list(blobs or []))
        if timer is not None:
            sent.timer, sent.from_opened = timer
            sent.expires_at = None if sent.from_opened else header.sent_at + sent.timer
            sent.never_open = sent.from_opened and self.rng.random() < NEVER_OPENED_SHARE
        return sent

    async def _send(self) -> None:
        sender, recipient = self.rng.sample(self.people, 2)
        timer = self._timer()  # a timed send carries no files: expiry would destroy them
        blobs = self._ready_blobs(sender) if self.config.blobs and timer is None else []
        sent = await self._prepare(sender, recipient, None, blobs, timer)
        for upload in blobs:
            upload.message = sent
        sent.busy = True
        self.messages.append(sent)
        started = sender.relay.clock.now
        outcome, answer = await self.until_known(sender, "POST", "/v1/messages", sent.body)
        sent.send = outcome
        self._judge_wraps(sent.body["wraps"], started, outcome, answer, "send")
        if outcome == "failed":
            for upload in blobs:
                upload.message = None  # not bound: free for another send
        self._record("send with files" if blobs else "send", outcome)
        sent.busy = False

    async def _open(self) -> bool:
        sent = self._pick(
            lambda m: (
                m.send == "ok"
                and not m.recall
                and not m.never_open
                and len(m.opened) < len(m.recipient.devices)
            )
        )
        if sent is None:
            return False
        device = self.rng.choice(
            [i for i in range(len(sent.recipient.devices)) if i not in sent.opened]
        )
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        started = sent.sender.relay.clock.now
        outcome, answer = await self.until_known(sent.recipient, "GET", path, None, device)
        self._judge_timed(sent, started, answer, device)
        if outcome == "ok":
            assert isinstance(answer, dict)
            if answer["envelope"] != sent.body["envelope"]:
                self.findings.corrupted.append(f"fetch {path}")
            started = sent.sender.relay.clock.now
            if sent.from_opened:
                self.timed_open_sent.set()
            try:
                outcome, answer = await self.until_known(
                    sent.recipient, "POST", path + "/open", {}, device
                )
            finally:
                self.timed_open_sent.clear()
            if (
                sent.from_opened
                and isinstance(answer, RelayRefused)
                and answer.code == "message_expired"
                and answer.after_unknown
            ):
                # an attempt that got no answer released the key, and its timer ran out before
                # the retry: the relay rightly counts the copy opened then, and expired now
                sent.open_window[device] = (started, sent.sender.relay.clock.now)
                sent.opened.add(device)
            self._judge_timed(sent, started, answer, device)
            if outcome == "unknown":
                sent.open_unknown.add(device)
            if outcome == "ok":
                assert isinstance(answer, dict)
                if sent.from_opened:
                    sent.open_window[device] = (started, sent.sender.relay.clock.now)
                    await self._refetch(sent, device)  # well before its moment: served
                secrets = sent.recipient.devices[device].secrets
                key = er.unwrap_message_key(
                    answer["wrap"],
                    self._private_key(sent.recipient.devices[device], answer.get("key_id")),
                    message_id=sent.header.message_id,
                    conversation_id=sent.header.conversation_id,
                    device_id=secrets.device_id,
                )
                verified = er.open_envelope(sent.body["envelope"], sent.sender.identity.public_key)
                if verified.decrypt(key).text != sent.text:
                    self.findings.corrupted.append(f"open {path}")
                sent.opened.add(device)
        self._record("open", outcome)
        sent.busy = False
        return True

    async def _recall(self, *, with_replacement: bool) -> bool:
        with_files = self.config.blobs and self.rng.random() < 0.3
        # most timed messages are left to their timers, so that timers fire under kills too
        spare_timed = self.rng.random() < 0.8

        def recallable(m: Sent) -> bool:
            spared = (spare_timed and m.timer is not None) or m.never_open
            return m.send == "ok" and not m.recall and m.replacement is None and not spared

        sent = self._pick(
            lambda m: recallable(m) and (bool(m.blobs) or not with_files)
        ) or self._pick(recallable)
        if sent is None:
            return False
        replacement = None
        if with_replacement and sent.timer is None:  # none is stored once it expired
            replacement = await self._prepare(sent.sender, sent.recipient, sent.header.message_id)
        revocation = sent.sender.revocation(
            sent.header, replacement.header.message_id if replacement else None
        )
        sent.recall_body = {
            "revocation": revocation.signed,
            "replacement": replacement.body if replacement else None,
        }
        path = f"/v1/messages/{sent.header.message_id.hex()}/recall"
        if sent.blobs:
            self.blob_recall_sent.set()
        outcome, _ = await self.until_known(sent.sender, "POST", path, sent.recall_body)
        sent.recall = outcome
        if sent.blobs and outcome == "ok":
            self.destroyed |= {u.blob_id for u in sent.blobs}
            self.blob_recall_acked.set()
        if replacement is not None and outcome != "failed":
            replacement.send = outcome
            sent.replacement = replacement
            self.messages.append(replacement)
        if outcome == "ok":
            self.recall_acked.set()
        self._record("recall+replace" if replacement else "recall", outcome)
        sent.busy = False
        return True

    async def _receipt(self) -> bool:
        sent = self._pick(  # not for a timed one: the timer may have destroyed it first
            lambda m: (
                m.recall == "ok" and m.timer is None and len(m.receipts) < len(m.recipient.devices)
            )
        )
        if sent is None:
            return False
        device = self.rng.choice(
            [i for i in range(len(sent.recipient.devices)) if i not in sent.receipts]
        )
        assert sent.recall_body is not None
        message_id, receipt = sent.recipient.receipt_for(
            sent.sender, sent.recall_body["revocation"], device
        )
        path = f"/v1/messages/{message_id.hex()}/receipt"
        outcome, _ = await self.until_known(
            sent.recipient, "POST", path, {"receipt": receipt}, device
        )
        if outcome == "ok":
            sent.receipts.add(device)
        self._record("receipt", outcome)
        sent.busy = False
        return True


async def crash_suite(work: Path, config: CrashConfig) -> Findings:
    """Run the suite in ``work`` (the relay's data directory and logs live there)."""
    return await CrashRun(work, config).run()
