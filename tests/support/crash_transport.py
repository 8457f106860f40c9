"""The crash suite's transport: one request, and an operation retried until the relay answers.

Mixed into :class:`crash_harness.CrashRun`.  An answer is ``ok``, a definite
refusal (4xx), or ``Unknown`` (no answer, a timeout, a 5xx): the operation
may or may not have happened, and is retried with the very same bytes, as a
real client retries.  A 5xx is also shown to the PostgreSQL mixin, which
counts it and flags anything but a clean 503.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

import e2e_recall as er

from driver import Person, RelayRefused

__all__ = ["Transport", "Unknown"]


class Unknown(Exception):
    """No answer we can trust: the operation may or may not have happened."""


def _route(path: str) -> str:
    """A path without its ids, for counting (``/v1/messages/{id}/open``)."""
    return "/".join("{id}" if len(part) == 32 else part for part in path.split("?")[0].split("/"))


class Transport:
    """``call``, ``until_known`` and ``_relogin`` (uses CrashRun's config, findings and rng)."""

    # provided by CrashRun and its mixins
    rng: Any
    config: Any
    findings: Any
    relay: Any
    reckoning: bool
    _note_5xx: Any

    async def call(
        self,
        person: Person,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        device: int = 0,
        token: str | None = None,
    ) -> dict[str, Any]:
        """One request; ``Unknown`` when the answer cannot be trusted either way."""
        try:
            return await asyncio.wait_for(
                person.call(method, path, body, device=device, token=token),
                self.config.request_timeout,
            )
        except RelayRefused as refused:
            if refused.status >= 500:
                self._note_5xx(refused.status, refused.code, refused.message)
                raise Unknown(f"{refused.status} {refused.code}") from None
            raise
        except (TimeoutError, aiohttp.ClientError, OSError, er.errors.E2ERecallError) as exc:
            raise Unknown(type(exc).__name__) from None

    async def until_known(
        self,
        person: Person,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        device: int = 0,
        *,
        deadline: float = 60.0,
        token: str | None = None,
    ) -> tuple[str, dict[str, Any] | RelayRefused]:
        """Retry an operation (same bytes) until the relay answers; its outcome and answer.

        A refusal after an attempt that got no answer says so (``after_unknown``):
        the first attempt may have been applied, and the refusal be about that.
        """
        stop = time.monotonic() + deadline
        unknowns = 0
        while True:
            try:
                answer = await self.call(person, method, path, body, device, token)
                outcome = "ok"
                result: dict[str, Any] | RelayRefused = answer
                if not self.relay.running:  # another relay process answered meanwhile
                    self.findings.acked_while_one_down += 1
                break
            except RelayRefused as refused:
                if refused.status == 401 and token is None:  # a session lost: log in again
                    await self._relogin(person, device)
                    continue
                refused.after_unknown = unknowns > 0
                outcome, result = "failed", refused
                if not self.reckoning:
                    retried = " after an unknown attempt" if unknowns else ""
                    self.findings.refusals[f"{method} {_route(path)}: {refused.code}{retried}"] += 1
                break
            except Unknown:
                unknowns += 1
                if time.monotonic() > stop:
                    return "unknown", RelayRefused(0, {"error": "unknown"})
                await asyncio.sleep(0.05 + self.rng.random() * 0.2)
        if unknowns:
            self.findings.resolved_unknown[method + " " + path.split("/")[-1]] += 1
        return outcome, result

    async def _relogin(self, person: Person, device: int) -> None:
        while True:
            try:
                await asyncio.wait_for(person.login(device), self.config.request_timeout)
                return
            except (RelayRefused, TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)
