"""The crash suite's disappearing messages: timers that fire while the relay is killed.

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

Two in five timed sends count from opening instead, and three in ten of
those are never opened by the workers.  The relay starts each
device's timer when it releases that device's wrap, somewhere between the
moment the open was first asked and its answer, which the oracle records;
the killer also aims at opens of such messages in flight, and at the
per-device moments.  Workers also fetch opened copies again, judged against
``open + expire_after`` with the same margin.  A copy never opened must
never expire: refused as expired on a fetch or an open before it was opened
is ``unopened_expired``.  At the end every opened copy is destroyed (line
``expired``, fetch and open refused) and every copy never opened is still
sealed (its line not ``expired``) and served byte for byte.
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
FROM_OPENED_SHARE = 0.4  # of timed sends


def _now_ms() -> int:
    return int(time.time() * 1000)


class TimerWork:
    """Timed sends, their checks during the run, the killer's aim and the reckoning."""

    # provided by CrashRun (and its Reckoning)
    rng: Any
    config: Any
    findings: Any
    messages: list[Sent]
    timed_open_sent: asyncio.Event
    until_known: Any
    _try: Any
    _record: Any

    def _timer(self) -> tuple[int, bool] | None:
        """A timer for the next direct send (ms, and whether from opening), or None."""
        if not self.config.timers or self.rng.random() >= TIMED_SHARE:
            return None
        return self.rng.randint(1000, 3000), self.rng.random() < FROM_OPENED_SHARE

    def _judge_timed(
        self, sent: Sent, started: int, answer: dict[str, Any] | RelayRefused, device: int
    ) -> None:
        """A fetch or open of a timed message, begun at ``started``, answered just now."""
        if sent.from_opened:
            self._judge_from_opened(sent, started, answer, device)
            return
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

    def _judge_from_opened(
        self, sent: Sent, started: int, answer: dict[str, Any] | RelayRefused, device: int
    ) -> None:
        """Before its open a copy never expires; after it, it does at open + expire_after."""
        assert sent.timer is not None
        name = sent.header.message_id.hex()[:12]
        window = sent.open_window.get(device)
        expired = isinstance(answer, RelayRefused) and answer.code == "message_expired"
        if window is None:
            if expired and device not in sent.open_unknown:
                self.findings.unopened_expired.append(f"{name} device {device}: before its open")
            return
        first, answered = window
        if expired and _now_ms() < first + sent.timer - MARGIN_MS:
            early = first + sent.timer - _now_ms()
            self.findings.expired_early.append(f"{name} device {device}: {early} ms early")
        elif not isinstance(answer, RelayRefused) and started > answered + sent.timer + MARGIN_MS:
            late = started - answered - sent.timer
            self.findings.served_after_expiry.append(f"{name} device {device}: {late} ms late")
        else:
            self.findings.checked_opened_refetched += 1

    async def _refetch_opened(self) -> bool:
        """Fetch an opened from-opened copy again (before or after its moment), and judge it."""
        chosen = [
            m
            for m in self.messages
            if m.from_opened and m.send == "ok" and not m.recall and m.open_window and not m.busy
        ]
        if not chosen:
            return False
        sent = self.rng.choice(chosen)
        device = self.rng.choice(sorted(sent.open_window))
        if device >= len(sent.recipient.devices):
            return False  # revoked since
        sent.busy = True
        await self._refetch(sent, device)
        sent.busy = False
        return True

    async def _refetch(self, sent: Sent, device: int) -> None:
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        started = _now_ms()
        outcome, answer = await self.until_known(sent.recipient, "GET", path, None, device)
        if outcome != "unknown":
            self._judge_from_opened(sent, started, answer, device)
        self._record("refetch-opened", outcome)

    def _moments(self, now: int) -> list[int]:
        """The timer moments to come of acknowledged, unrecalled messages (per device if opened)."""
        moments = []
        for m in self.messages:
            if m.send != "ok" or m.recall or m.timer is None:
                continue
            if m.expires_at is not None:
                moments.append(m.expires_at)
            moments += [answered + m.timer for _, answered in m.open_window.values()]
        return [t for t in moments if now + 50 < t < now + 4000]

    # -- kills ------------------------------------------------------------------------------
    async def _wait_for_timer_moment(self) -> None:
        """Before a kill: wait for a timer to come due (or a from-opened open), kill around it."""
        if self.rng.random() < 0.4:
            try:
                await asyncio.wait_for(self.timed_open_sent.wait(), 5)
            except TimeoutError:
                return
            await asyncio.sleep(self.rng.uniform(0, 0.004))
            self.findings.kills_mid_timed_open += int(self.timed_open_sent.is_set())
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            coming = self._moments(_now_ms())
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
        for m in self.messages:
            if m.timer is not None:
                moments += [answered + m.timer for _, answered in m.open_window.values()]
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
        if sent.from_opened:
            await self._reckon_from_opened(sent, report)
            return
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

    async def _reckon_from_opened(self, sent: Sent, report: dict[str, Any]) -> None:
        """Opened copies destroyed, copies never opened sealed and served (unless recalled)."""
        name = sent.header.message_id.hex()[:12]
        path = f"/v1/messages/{sent.header.message_id.hex()}"
        devices = sent.recipient.devices
        opened = {d for d in sent.open_window if d < len(devices)}
        ids = {devices[d].secrets.device_id for d in opened}
        stop = time.monotonic() + POLL_S
        while report.get("state") != "recalled" and time.monotonic() < stop:
            lines = {line["device_id"]: line["state"] for line in report.get("devices", [])}
            if all(lines.get(i) == "expired" for i in ids):
                break
            await asyncio.sleep(0.2)
            outcome, answer = await self.until_known(sent.sender, "GET", path + "/report", None)
            if outcome == "ok":
                assert isinstance(answer, dict)
                report = answer
        recalled = report.get("state") == "recalled"
        # a recall after every copy expired is accepted and changes nothing (protocol 8.2, 2a)
        if sent.recall == "ok" and report.get("state") not in ("recalled", "expired"):
            self.findings.recalls_not_applied.append(name)
        if sent.recall == "unknown":
            self.findings.resolved_unknown["recall (at the end)"] += 1
        lines = {line["device_id"]: line["state"] for line in report.get("devices", [])}
        for device, current in enumerate(devices):
            line = lines.get(current.secrets.device_id)
            where = f"{name} device {device}"
            if device in sent.open_unknown and device not in opened:
                continue  # whether the relay released its key is not known
            fetched = await self._try(sent.recipient, "GET", path, None, device)
            if recalled:
                if isinstance(fetched, dict):
                    self.findings.resurrected.append(f"timed {where}")
                else:
                    self.findings.checked_recalled += 1
            elif device in opened:
                got = await self._try(sent.recipient, "POST", path + "/open", {}, device)
                if line != "expired":
                    self.findings.timers_not_fired.append(f"{where}: {line}")
                if isinstance(fetched, dict) or isinstance(got, dict):
                    self.findings.resurrected.append(f"timed {where}")
                else:
                    self.findings.checked_expired += 1
            elif line == "expired" or not isinstance(fetched, dict):
                self.findings.unopened_expired.append(f"{where}: {line}, {fetched}")
            elif fetched.get("envelope") != sent.body["envelope"]:
                self.findings.corrupted.append(where)
            else:
                self.findings.checked_sealed_unopened += 1

    @staticmethod
    def _timed_header_fields(timer: tuple[int, bool] | None) -> dict[str, Any]:
        """The header fields :meth:`driver.Person.seal` takes for a timer."""
        if timer is None:
            return {}
        expire_after, from_opened = timer
        start = er.ExpireFrom.OPENED if from_opened else er.ExpireFrom.SENT
        return {"expire_after": expire_after, "expire_from": start}
