"""The crash suite's killer: SIGKILLs spread over the run, some aimed at chosen moments.

Mixed into :class:`crash_harness.CrashRun`.  Each kill waits for its share
of the operations to be done, then, by a roll, for a moment worth aiming at
(an upload streaming, a recall with files in flight or just acknowledged, a
membership change in flight, a timer coming due or an open that starts one,
a link slot's step or a linked device's registration, a certificate upload,
a recall's WAL truncation); one kill, half-way through, is kept for the device
revocation's request.  While the relay is down it checks the database with
``e2e-recall-relay check``, and then starts it again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any


class Killer:
    """The killer task (uses CrashRun's relay, config, findings and the mixins' moments)."""

    # provided by CrashRun and its mixins
    rng: Any
    config: Any
    findings: Any
    relay: Any
    done: int
    up: asyncio.Event
    resumed: asyncio.Event  # cleared while the workers pause for the revocation
    recall_acked: asyncio.Event
    group_change_sent: asyncio.Event
    destroyed: set[bytes]
    _check_integrity: Any
    _after_start: Any
    _wait_for_blob_moment: Any
    _wait_for_timer_moment: Any
    _wait_for_revocation_moment: Any
    _wait_for_link_moment: Any
    _wait_for_rotation_moment: Any
    _kill_postgres: Any

    async def _until_another_acknowledges(self) -> None:
        """With several relay processes, stay down until another one acknowledged something.

        Otherwise whether any client failed over while one was down is up to
        the scheduler (the integrity check that runs first takes milliseconds),
        and a short run could pass without ever trying the failover.
        """
        if len(getattr(self.relay, "processes", ())) < 2:
            return
        before, deadline = self.findings.acked_while_one_down, time.monotonic() + 5

        def waiting() -> bool:
            # not while the workers wait for the revocation (which waits for this killer)
            # or have finished: then nothing would come
            working = self.resumed.is_set() and self.done < self.config.operations
            return working and self.findings.acked_while_one_down == before

        while waiting() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _killer(self) -> None:
        """SIGKILL at random moments until the quota of kills is used, spread over the run."""
        gap = self.config.operations / max(self.config.kills, 1)
        # which kills are of PostgreSQL: spread evenly, none the first (people must exist)
        every = self.config.kills / max(self.config.postgres_kills, 1)
        postgres_kills = {int((n + 0.5) * every) for n in range(self.config.postgres_kills)}
        for number in range(self.config.kills):
            target = (number + self.rng.uniform(0.3, 0.9)) * gap
            aimed = self.config.revoke and number == self.config.kills // 2
            while self.done < target and not aimed:
                await asyncio.sleep(0.01)
            roll = self.rng.random()
            if aimed:  # the revocation, half-way through the run
                await self._wait_for_revocation_moment()
            elif self.config.blobs and roll < 0.45:  # mid-upload, mid-recall, before the unlink
                await self._wait_for_blob_moment(roll * 0.6 / 0.45)
            elif self.config.groups and roll < 0.53:  # while a membership change is in flight
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.group_change_sent.wait(), 5)
                    await asyncio.sleep(self.rng.uniform(0, 0.005))
                    self.findings.kills_mid_group_change += int(self.group_change_sent.is_set())
            elif self.config.timers and roll < 0.66:  # a timer's moment, a from-opened open
                await self._wait_for_timer_moment()
            elif self.config.linking and roll < 0.77:  # a link slot's step or a registration
                await self._wait_for_link_moment()
            elif self.config.rotation and roll < 0.87:  # a certificate upload in flight
                await self._wait_for_rotation_moment()
            elif self.rng.random() < 0.4:  # right after a recall: during its WAL truncation
                self.recall_acked.clear()
                try:
                    await asyncio.wait_for(self.recall_acked.wait(), 5)
                    await asyncio.sleep(self.rng.uniform(0, 0.01))
                    self.findings.kills_after_recall += 1
                except TimeoutError:
                    pass
            if number in postgres_kills:
                self.findings.kills += 1
                await self._kill_postgres(number)
                continue
            self.up.clear()
            destroyed = set(self.destroyed)  # recalls acknowledged before the kill
            await asyncio.to_thread(self.relay.kill_one, self.rng)  # SIGKILL
            self.findings.kills += 1
            await asyncio.to_thread(self._check_integrity, f"after kill {number + 1}")
            await self._until_another_acknowledges()
            await asyncio.sleep(self.rng.uniform(0, 0.3))  # clients hit a dead port meanwhile
            await asyncio.to_thread(self.relay.restart_dead)
            self.findings.restarts += 1
            if self.config.blobs:
                self._after_start(destroyed, f"after kill {number + 1}")
            self.up.set()
