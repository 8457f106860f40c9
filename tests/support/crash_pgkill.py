"""The crash suite's PostgreSQL kills: SIGKILL the postmaster under load, restart it, time it.

Mixed into :class:`crash_harness.CrashRun`.  Some of the killer's kills
(``CrashConfig.postgres_kills`` of them) SIGKILL PostgreSQL's postmaster
instead of a relay process, as the OOM killer or a power cut would; the
relay processes stay up.  The server stays down for a random outage, then
starts again from the same data directory and recovers from its WAL.

What must hold, besides the reckoning's usual "nothing acknowledged lost,
nothing recalled back":

- during the outage every relay process answers, and a request that needs
  the database gets 503 with an error code and a sentence, never a 500 or
  a dropped connection (``outage_answers_wrong``);
- after the restart each process recovers by itself, without being
  restarted: its pool connects again and ``/healthz`` answers 200 within
  ``RECOVERY_LIMIT`` seconds (``recovery_seconds``, ``not_recovered``);
- a process that answers 5xx anywhere in the run answers 503 (counted in
  ``unavailable``; anything else goes to ``server_errors``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp

from e2e_recall import wire

RECOVERY_LIMIT = 30.0  # seconds after PostgreSQL is back within which every relay must be


class PostgresKiller:
    """PostgreSQL kills (uses CrashRun's fleet, people, findings and rng)."""

    # provided by CrashRun
    rng: Any
    config: Any
    findings: Any
    relay: Any  # the RelayFleet
    people: list[Any]
    _check_integrity: Any

    def _note_5xx(self, status: int, code: object, message: object) -> None:
        """A 5xx a client got: a 503 with a code and a sentence is the relay's honest answer."""
        if status == 503 and isinstance(code, str) and isinstance(message, str) and message:
            self.findings.unavailable[f"{status} {code}"] += 1
        else:
            self.findings.server_errors.append(f"{status} {code} {message!r}")

    async def _kill_postgres(self, number: int) -> None:
        """SIGKILL the postmaster, probe the relays while it is down, restart it, wait for them."""
        server = self.relay.postgres
        assert server is not None
        await asyncio.to_thread(server.kill)
        killed = time.monotonic()
        self.findings.postgres_kills += 1
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await asyncio.sleep(self.rng.uniform(0.2, 0.6))  # clients meet the outage meanwhile
            for process in self.relay.processes:
                await self._probe_outage(http, process.url())
            await asyncio.sleep(self.rng.uniform(0, 1.0))
            await asyncio.to_thread(server.restart)
            back = time.monotonic()
            self.findings.postgres_outages.append(round(back - killed, 2))
            waits = [self._until_healthy(http, process.url()) for process in self.relay.processes]
            recovered = await asyncio.gather(*waits)
        for seconds in recovered:
            if seconds is None:
                self.findings.not_recovered.append(f"after PostgreSQL kill {number + 1}")
            else:
                self.findings.recovery_seconds.append(round(seconds, 2))
        await asyncio.to_thread(self._check_integrity, f"after PostgreSQL kill {number + 1}")

    async def _probe_outage(self, http: aiohttp.ClientSession, url: str) -> None:
        """One request that needs the database, while it is down: it must get a clean 503."""
        person = self.people[0]
        headers = {"Authorization": f"Bearer {person.devices[0].token}"}
        path = f"/v1/messages/{os.urandom(16).hex()}/report"
        try:
            async with http.get(url + path, headers=headers) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.findings.outage_answers_wrong.append(f"{url}: no answer ({type(exc).__name__})")
            return
        try:
            body = wire.decode(raw)
        except Exception:  # an HTML page or a cut body: not the relay's own answer
            body = {}
        code = body.get("error") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if status == 503 and code == "storage" and isinstance(message, str) and message:
            self.findings.outage_answers[f"{status} {code}"] += 1
        else:
            self.findings.outage_answers_wrong.append(f"{url}: {status} {code} {message!r}")

    async def _until_healthy(self, http: aiohttp.ClientSession, url: str) -> float | None:
        """Seconds until ``/healthz`` answers 200 (the relay reached the database again)."""
        started = time.monotonic()
        while time.monotonic() - started < RECOVERY_LIMIT:
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(0.05)
        return None
