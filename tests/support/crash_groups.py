"""The crash suite's groups: membership changes, group sends and recalls under SIGKILL.

Mixed into :class:`crash_harness.CrashRun`.  A few groups are made at the
start, each with an admin; workers add and remove members, send to the
group (wrapped to every device of every current member, the sender's other
devices included) and recall group messages.  Changes and sends of one
group take turns (a lock), so the oracle always knows its membership; a
change whose outcome stays unknown past the deadline freezes its group and
is resolved from the chain at the end.  A retried change is the very same
bytes, which the relay must recognise as the change it stored.

At the end, with the relay up and quiet:

- each group's chain, read back, is byte for byte the acknowledged changes
  in order (plus, at most, the one left unknown), and replays through the
  core to the membership the oracle holds;
- every acknowledged group message still has a report naming exactly the
  members it was wrapped to; unless recalled, every device of each of them
  fetches the envelope byte for byte; a recalled one is refused on every
  device; and no one who was not a member when it was sent can fetch it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from group_driver import Group, seal_to_group, wraps_to_people

import e2e_recall as er
from e2e_recall import GroupAction, SignedGroupChange, replay_group

from driver import Person

_GONE = (404, 410)


@dataclass
class GroupSent:
    """One group message as its sender knows it."""

    sender: Person
    group: GroupRun
    header: er.Header
    body: dict[str, Any]
    recipients: list[Person]  # the members it was wrapped to (the sender too, for other devices)
    reached: set[bytes] = field(default_factory=set)  # users with a device it was wrapped to
    send: str = "pending"
    recall: str = ""
    busy: bool = False


@dataclass
class GroupRun:
    """One group: the driver's chain of acknowledged changes, and what the oracle knows."""

    group: Group
    admin: Person
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    unknown: SignedGroupChange | None = None  # a change never answered: the group is frozen


class GroupWork:
    """Group operations and their reckoning (uses CrashRun's people, transport and findings)."""

    # provided by CrashRun (and its Reckoning: until_known, _try, _record)
    rng: Any
    config: Any
    findings: Any
    people: list[Person]
    until_known: Any
    _try: Any
    _record: Any
    _judge_wraps: Any

    async def _setup_groups(self) -> None:
        self.groups: list[GroupRun] = []
        self.group_messages: list[GroupSent] = []
        self.group_change_sent = asyncio.Event()
        for index in range(self.config.groups):
            admin = self.people[index % len(self.people)]
            others = [p for p in self.people if p is not admin][: max(2, len(self.people) // 2)]
            group = Group(members=[])
            run = GroupRun(group, admin)
            outcome = await self._post_change(
                run, group.sign(admin, GroupAction.CREATE, [admin, *others])
            )
            assert outcome == "ok", outcome  # no kill has happened yet
            self.groups.append(run)

    async def _group_step(self) -> bool:
        """A change, a send or a recall in a group; False if there was nothing to do."""
        roll = self.rng.random()
        if roll < 0.25:
            return await self._group_change()
        if roll < 0.75:
            return await self._group_send()
        return await self._group_recall()

    def _free_group(self) -> GroupRun | None:
        free = [g for g in self.groups if not g.lock.locked() and g.unknown is None]
        return self.rng.choice(free) if free else None

    async def _post_change(self, run: GroupRun, signed: SignedGroupChange) -> str:
        path = f"{run.group.path}/changes"
        self.group_change_sent.set()
        try:
            outcome, _ = await self.until_known(run.admin, "POST", path, {"change": signed.signed})
        finally:
            self.group_change_sent.clear()
        if outcome == "ok":
            run.group.changes.append(signed)
            named = [p for p in self.people if p.user_id in signed.change.members]
            if signed.change.action in (GroupAction.CREATE, GroupAction.ADD):
                run.group.members += [p for p in named if p not in run.group.members]
            else:
                run.group.members = [p for p in run.group.members if p not in named]
        elif outcome == "unknown":
            run.unknown = signed
        else:
            change = signed.change
            self.findings.group_changes_refused.append(f"{change.action} seq {change.seq}")
        self._record("group-change", outcome)
        return outcome

    async def _group_change(self) -> bool:
        run = self._free_group()
        if run is None:
            return False
        async with run.lock:
            members = run.group.members
            outside = [p for p in self.people if p not in members]
            removable = [p for p in members if p is not run.admin]
            if outside and (len(removable) < 2 or self.rng.random() < 0.5):
                signed = run.group.sign(run.admin, GroupAction.ADD, [self.rng.choice(outside)])
            else:
                signed = run.group.sign(run.admin, GroupAction.REMOVE, [self.rng.choice(removable)])
            await self._post_change(run, signed)
        return True

    async def _group_send(self) -> bool:
        run = self._free_group()
        if run is None:
            return False
        async with run.lock:
            sender = self.rng.choice(run.group.members)
            header, sealed = seal_to_group(sender, run.group, f"to the group {self.rng.random()}")
            recipients = list(run.group.members)
            wraps = wraps_to_people(sender, recipients, header, sealed.message_key)
            body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
            reached = {p.user_id for p in recipients if p is not sender or len(p.devices) > 1}
            sent = GroupSent(sender, run, header, body, recipients, reached)
            self.group_messages.append(sent)
            sent.busy = True
            started = sender.relay.clock.now
            outcome, answer = await self.until_known(sender, "POST", "/v1/messages", body)
            sent.send = outcome
            ruled = self._judge_wraps(wraps, started, outcome, answer, "group send")
            if outcome == "failed" and not ruled:  # a key past its time is the rule's refusal
                self.findings.group_sends_refused.append(str(answer))
            self._record("group-send", outcome)
            sent.busy = False
        return True

    async def _group_recall(self) -> bool:
        candidates = [
            m for m in self.group_messages if m.send == "ok" and not m.recall and not m.busy
        ]
        if not candidates:
            return False
        sent = self.rng.choice(candidates)
        sent.busy = True
        revocation = sent.sender.revocation(sent.header)
        path = f"/v1/messages/{sent.header.message_id.hex()}/recall"
        body = {"revocation": revocation.signed, "replacement": None}
        sent.recall, _ = await self.until_known(sent.sender, "POST", path, body)
        self._record("group-recall", sent.recall)
        sent.busy = False
        return True

    # -- reckoning ------------------------------------------------------------------------------
    async def _reckon_groups(self) -> None:
        keys = {p.user_id: p.identity.public_key for p in self.people}
        for run in self.groups:
            await self._reckon_chain(run, keys)
        for sent in self.group_messages:
            await self._reckon_group_message(sent)

    async def _reckon_chain(self, run: GroupRun, keys: dict[bytes, er.VerifyKey]) -> None:
        outcome, answer = await self.until_known(run.admin, "GET", run.group.path, None)
        name = run.group.group_id.hex()[:12]
        if outcome != "ok":
            self.findings.group_chains_wrong.append(f"{name}: {answer}")
            return
        assert isinstance(answer, dict)
        chain = list(answer["changes"])
        acked = [c.signed for c in run.group.changes]
        if run.unknown is not None and chain == [*acked, run.unknown.signed]:
            self.findings.resolved_unknown["group change (at the end)"] += 1
            acked.append(run.unknown.signed)
        if chain != acked:
            wrong = f"{name}: {len(chain)} changes, {len(acked)} acknowledged"
            self.findings.group_chains_wrong.append(wrong)
            return
        state = replay_group(chain, keys.get, group_id=run.group.group_id)
        expected = {p.user_id for p in run.group.members}
        if run.unknown is None and set(state.members) != expected:
            self.findings.group_chains_wrong.append(f"{name}: members differ from the oracle")
            return
        self.findings.checked_group_chains += 1

    async def _reckon_group_message(self, sent: GroupSent) -> None:
        name = sent.header.message_id.hex()[:12]
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        outcome, report = await self.until_known(sent.sender, "GET", path + "/report", None)
        if sent.send == "unknown":
            sent.send = "ok" if outcome == "ok" else "failed"
            self.findings.resolved_unknown["group send (at the end)"] += 1
        if sent.send != "ok":
            return
        if outcome != "ok":
            self.findings.lost.append(f"group {name}")
            return
        assert isinstance(report, dict)
        reached = {d["user"] for d in report["devices"]}
        if reached != sent.reached:  # a device revoked since is still named on its report
            self.findings.group_reports_wrong.append(name)
        recalled = report["state"] == "recalled"
        if sent.recall == "failed" and recalled:
            self.findings.refused_but_stored.append(f"group {name}: recall refused, yet applied")
        if sent.recall == "ok" and not recalled:
            self.findings.recalls_not_applied.append(f"group {name}")
        sending = sent.sender.devices[0].secrets.device_id
        for person in self.people:
            for index, device in enumerate(person.devices):
                if device.secrets.device_id == sending:
                    continue
                got = await self._try(person, "GET", path, None, index)
                if person not in sent.recipients:
                    if isinstance(got, dict):
                        self.findings.group_outsiders_served.append(f"{name} {person.name}")
                    else:
                        self.findings.checked_group_outsiders += 1
                elif recalled:
                    if isinstance(got, dict):
                        self.findings.resurrected.append(f"group {name} {person.name}/{index}")
                    else:
                        self.findings.checked_recalled += 1
                elif not isinstance(got, dict):
                    self.findings.lost.append(f"group {name} {person.name}/{index}: {got}")
                elif got.get("envelope") != sent.body["envelope"]:
                    self.findings.corrupted.append(f"group {name} {person.name}/{index}")
                else:
                    self.findings.checked_group_present += 1
