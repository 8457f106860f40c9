"""The crash suite's disappearing messages: from-sent timers that fire while the relay is killed.

Mixed into :class:`crash_harness.CrashRun`.  Some direct sends (no files:
expiry would destroy them, and the blob reckoning would then count them
lost) carry a from-sent timer of 1 to 3 seconds in the signed header, so
most of them come due during the run; the oracle records each one's moment
(``sent_at + expire_after``, by the wall clock the relay process also
keeps).  The killer also aims at those moments, so that a kill lands just
before or just after the timer job's transaction.

While the run goes on, every fetch or open of a timed message is judged
against its moment, with a margin for the time a request takes:

- refused as ``message_expired`` though the answer came back more than
  ``MARGIN_MS`` before the moment: destroyed early (``expired_early``);
- served though the request was made more than ``MARGIN_MS`` after the
  moment: the relay still gave out a copy whose time was up
  (``served_after_expiry``).

At the end, after sleeping until every timer is due plus a margin (the
relay's job catches up at start-up with what came due while it was down),
every acknowledged timed message must be destroyed: its report says
``expired`` (or ``recalled``, when the recall came first), with an
``expired`` line for each current recipient device, and every such device
is refused both the envelope and the key (``resurrected`` otherwise).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import e2e_recall as er

from crash_model import Sent
from driver import RelayRefused

MARGIN_MS = 300  # a request's time on a loaded machine, either side of a moment
SETTLE_S = 1.5  # after the last moment: the timer job's transaction and a restart's catch-up
POLL_S = 15.0  # how long the reckoning waits for a report to show the timer's effect
TIMED_SHARE = 0.2  # of direct sends (without files)


def _now_ms() -> int:
    return int(time.time() * 1000)


class TimerWork:
    """Timed sends, their checks during the run, the killer's aim and the reckoning."""

    # provided by CrashRun (and its Reckoning)
    rng: Any
    config: Any
    findings: Any
    messages: list[Sent]
    until_known: Any
    _try: Any

    def _timer(self) -> int | None:
        """A from-sent timer (ms) for the next direct send, or None."""
        if not self.config.timers or self.rng.random() >= TIMED_SHARE:
            return None
        return self.rng.randint(1000, 3000)

    def _judge_timed(self, sent: Sent, started: int, answer: dict[str, Any] | RelayRefused) -> None:
        """A fetch or open of a timed message, begun at ``started``, answered just now."""
        if sent.expires_at is None:
            return
        name = sent.header.message_id.hex()[:12]
        if isinstance(answer, RelayRefused):
            early = sent.expires_at - _now_ms()
            if answer.code == "message_expired" and early > MARGIN_MS:
                self.findings.expired_early.append(f"{name}: {early} ms before its moment")
            return
        if started > sent.expires_at + MARGIN_MS:
            late = started - sent.expires_at
            self.findings.served_after_expiry.append(f"{name}: asked {late} ms after its moment")
        elif _now_ms() < sent.expires_at - MARGIN_MS:
            self.findings.checked_timed_before += 1

    # -- kills ------------------------------------------------------------------------------
    async def _wait_for_timer_moment(self) -> None:
        """Before a kill: wait for an acknowledged timer to come due, and kill around it."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = _now_ms()
            coming = [
                m.expires_at
                for m in self.messages
                if m.expires_at is not None
                and m.send == "ok"
                and not m.recall
                and now + 50 < m.expires_at < now + 4000
            ]
            if coming:
                moment = self.rng.choice(coming) + self.rng.randint(-100, 100)
                await asyncio.sleep(max(0.0, (moment - _now_ms()) / 1000))
                self.findings.kills_around_timer += 1
                return
            await asyncio.sleep(0.05)

    # -- reckoning --------------------------------------------------------------------------
    async def _await_timers(self) -> None:
        """Sleep until every timer the workers made is due, plus a margin for the job."""
        moments = [m.expires_at for m in self.messages if m.expires_at is not None]
        if moments:
            wait = (max(moments) - _now_ms()) / 1000 + SETTLE_S
            await asyncio.sleep(max(0.0, wait))

    async def _settled_report(self, sent: Sent, report: dict[str, Any]) -> dict[str, Any]:
        """The report once it shows the timer (or a recall); the last one read after POLL_S."""
        path = f"/v1/messages/{sent.header.message_id.hex()}/report"
        stop = time.monotonic() + POLL_S
        while report.get("state") not in ("expired", "recalled") and time.monotonic() < stop:
            await asyncio.sleep(0.2)
            outcome, answer = await self.until_known(sent.sender, "GET", path, None)
            if outcome == "ok":
                assert isinstance(answer, dict)
                report = answer
        return report

    async def _reckon_timed(self, sent: Sent, report: dict[str, Any]) -> None:
        """An acknowledged timed message: destroyed, on every current recipient device."""
        name = sent.header.message_id.hex()[:12]
        report = await self._settled_report(sent, report)
        state = report.get("state")
        if state not in ("expired", "recalled"):
            self.findings.timers_not_fired.append(f"{name}: {state}")
        if sent.recall == "ok" and state not in ("expired", "recalled"):
            self.findings.recalls_not_applied.append(name)
        if sent.recall == "unknown":
            self.findings.resolved_unknown["recall (at the end)"] += 1
        lines = {line["device_id"]: line["state"] for line in report.get("devices", [])}
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        for device, current in enumerate(sent.recipient.devices):
            line = lines.get(current.secrets.device_id)
            if state == "expired" and line != "expired":
                self.findings.timers_not_fired.append(f"{name} device {device}: {line}")
            fetched = await self._try(sent.recipient, "GET", path, None, device)
            opened = await self._try(sent.recipient, "POST", path + "/open", {}, device)
            if isinstance(fetched, dict) or isinstance(opened, dict):
                self.findings.resurrected.append(f"timed {name} device {device}")
            elif state == "recalled":
                self.findings.checked_recalled += 1
            else:
                self.findings.checked_expired += 1

    @staticmethod
    def _timed_header_fields(expire_after: int | None) -> dict[str, Any]:
        """The header fields :meth:`driver.Person.seal` takes for a from-sent timer."""
        if expire_after is None:
            return {}
        return {"expire_after": expire_after, "expire_from": er.ExpireFrom.SENT}
