"""The crash suite's reckoning: read everything back and compare it with what clients saw.

Run once at the end, with the relay up and no load.  Every check that finds
nothing wrong also counts what it looked at, so a run that checked nothing
cannot pass for one that found nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from crash_model import Sent
from driver import Person, RelayRefused

if TYPE_CHECKING:
    pass


class Reckoning:
    """Mixed into :class:`crash_harness.CrashRun`; uses its people, messages and transport."""

    async def _reckon(self) -> None:
        for sent in self.messages:
            await self._reckon_message(sent)
        for person in self.people:
            for device in range(len(person.devices)):
                await self._reckon_events(person, device)

    async def _report(self, sent: Sent) -> dict[str, Any] | None:
        path = f"/v1/messages/{sent.header.message_id.hex()}/report"
        outcome, answer = await self.until_known(sent.sender, "GET", path, None)
        if outcome == "ok":
            assert isinstance(answer, dict)
            return answer
        return None

    async def _reckon_message(self, sent: Sent) -> None:
        name = sent.header.message_id.hex()[:12]
        report = await self._report(sent)
        if sent.send == "unknown":
            sent.send = "ok" if report is not None else "failed"
            self.findings.resolved_unknown["send (at the end)"] += 1
        if sent.send == "failed" and report is not None:
            refusal = f"{name}: refused, yet its report answers ({report.get('state')})"
            self.findings.refused_but_stored.append(refusal)
        if sent.recall == "failed" and report is not None and report.get("state") == "recalled":
            self.findings.refused_but_stored.append(f"{name}: recall refused, yet applied")
        if sent.send != "ok":
            return
        if report is None:
            self.findings.lost.append(name)
            return
        if sent.timer is not None:  # destroyed by its timer, or by a recall before it
            await self._reckon_timed(sent, report)
            return
        recalled = report.get("state") == "recalled"
        if sent.recall == "ok" and not recalled:
            self.findings.recalls_not_applied.append(name)
        if sent.recall == "unknown":
            self.findings.resolved_unknown["recall (at the end)"] += 1
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        for device in range(len(sent.recipient.devices)):
            fetched = await self._try(sent.recipient, "GET", path, None, device)
            opened = await self._try(sent.recipient, "POST", path + "/open", {}, device)
            if recalled:
                if isinstance(fetched, dict) or isinstance(opened, dict):
                    self.findings.resurrected.append(f"{name} device {device}")
                else:
                    self.findings.checked_recalled += 1
                continue
            if device in sent.opened:
                continue  # the relay may already have let go of what this device opened
            if not isinstance(fetched, dict):
                self.findings.lost.append(f"{name} device {device}: {fetched}")
            elif fetched.get("envelope") != sent.body["envelope"]:
                self.findings.corrupted.append(f"{name} device {device}")
            else:
                self.findings.checked_present += 1

    async def _try(
        self, person: Person, method: str, path: str, body: dict[str, Any] | None, device: int
    ) -> dict[str, Any] | str:
        outcome, answer = await self.until_known(person, method, path, body, device)
        if outcome == "ok":
            assert isinstance(answer, dict)
            return answer
        if isinstance(answer, RelayRefused):
            return f"{answer.status} {answer.code}"
        return outcome

    async def _reckon_events(self, person: Person, device: int) -> None:
        notices: Counter[bytes] = Counter()
        after = 0
        while True:
            outcome, answer = await self.until_known(
                person, "GET", f"/v1/sync?after={after}&limit=1024", None, device
            )
            if outcome != "ok":
                self.findings.unresolved.append(f"sync of {person.name}/{device}: {answer}")
                return
            assert isinstance(answer, dict)
            for event in answer["events"]:
                after = max(after, event["seq"])
                if event["kind"] == "message":
                    notices[event["message_id"]] += 1
            if not answer.get("more"):
                break
        self.findings.checked_notices += 1
        for message_id, count in notices.items():
            if count > 1:
                self.findings.duplicates.append(f"{message_id.hex()[:12]} x{count}")
        for sent in self.messages:
            still_there = (
                sent.recipient is person
                and sent.send == "ok"
                and not sent.recall
                and sent.timer is None
            )
            if still_there and notices[sent.header.message_id] != 1:
                self.findings.missed_notices.append(
                    f"{sent.header.message_id.hex()[:12]} on {person.name}/{device}"
                )
