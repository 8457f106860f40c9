"""What the crash suite knows: its settings, its record of each message, and its findings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import e2e_recall as er

from driver import Person


@dataclass
class Sent:
    """One message as the workers know it: the oracle's record."""

    sender: Person
    recipient: Person
    header: er.Header
    body: dict[str, Any]  # the exact request, re-sent as is on a retry
    text: str
    send: str = "pending"  # ok, failed, unknown
    recall: str = ""  # "", ok, failed, unknown
    recall_body: dict[str, Any] | None = None
    replacement: Sent | None = None
    opened: set[int] = field(default_factory=set)  # recipient device indexes that got the key
    receipts: set[int] = field(default_factory=set)
    busy: bool = False


@dataclass
class CrashConfig:
    operations: int = 400
    kills: int = 3
    people: int = 4
    devices_per_person: int = 2
    workers: int = 8
    seed: int = 1
    request_timeout: float = 5.0


@dataclass
class Findings:
    """The reckoning; every count but ``operations`` and ``kills`` must be zero."""

    operations: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_after_recall: int = 0
    restarts: int = 0
    lost: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    recalls_not_applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    missed_notices: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    integrity_failures: list[str] = field(default_factory=list)
    resolved_unknown: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # route and code of each 4xx
    checked_present: int = 0  # acknowledged messages whose envelope came back byte for byte
    checked_recalled: int = 0  # recalled messages no route would give back
    checked_notices: int = 0
    seconds: float = 0.0

    def problems(self) -> dict[str, list[str]]:
        return {
            name: values
            for name, values in (
                ("lost", self.lost),
                ("corrupted", self.corrupted),
                ("resurrected", self.resurrected),
                ("recalls_not_applied", self.recalls_not_applied),
                ("duplicates", self.duplicates),
                ("missed_notices", self.missed_notices),
                ("unresolved", self.unresolved),
                ("integrity_failures", self.integrity_failures),
            )
            if values
        }

    def table(self) -> list[tuple[str, str]]:
        done = sum(self.operations.values())
        rows = [
            ("operations", str(done)),
            *[(f"  {kind}", str(count)) for kind, count in sorted(self.operations.items())],
            ("kills (SIGKILL)", str(self.kills)),
            ("  right after a recall", str(self.kills_after_recall)),
            ("restarts", str(self.restarts)),
            ("unknown outcomes resolved", str(sum(self.resolved_unknown.values()))),
            ("messages checked present at the end", str(self.checked_present)),
            ("recalled messages checked unreadable", str(self.checked_recalled)),
            ("device event streams checked", str(self.checked_notices)),
            ("acknowledged messages lost", str(len(self.lost))),
            ("envelopes changed", str(len(self.corrupted))),
            ("recalled messages readable (resurrected)", str(len(self.resurrected))),
            ("acknowledged recalls not applied", str(len(self.recalls_not_applied))),
            ("duplicate notices", str(len(self.duplicates))),
            ("missed notices", str(len(self.missed_notices))),
            ("unknown operations unresolved", str(len(self.unresolved))),
            ("integrity_check failures", str(len(self.integrity_failures))),
            ("seconds", f"{self.seconds:.1f}"),
        ]
        return rows
