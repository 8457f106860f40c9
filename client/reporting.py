"""The sender's report, checked and put into the core model's exact words.

The relay's report is its claim.  Before a line is shown as ``deleted`` the
device's own signed receipt is verified against that device's certificate
(pinned through the contact's identity); a receipt that does not verify is
not believed, and the line says what the relay alone can attest.  The
relay's purge receipt is verified against the relay key pinned at
registration.  The sentences come from :func:`e2e_recall.describe`, so the
client never claims more than the core model allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from e2e_recall import (
    DeviceReport,
    DeviceState,
    describe,
    verify_deletion_receipt,
    verify_purge_receipt,
    wire,
)
from e2e_recall.errors import E2ERecallError
from e2e_recall.report import TRANSITIONS
from e2e_recall.revocation import revocation_digest

from .account import authed
from .contacts import cached_devices
from .core import Core
from .errors import NotFound
from .group_people import cached_member_devices, display_name
from .group_store import by_conversation

__all__ = [
    "TERMINAL_STATES",
    "DeviceLine",
    "ReportView",
    "build_report",
    "fetch_report",
    "is_news",
    "summary",
]

TERMINAL_STATES = frozenset(
    state
    for state, moves in TRANSITIONS.items()
    if all(following is state for following in moves.values())
)
"""States the core model's table never leaves (never delivered, deleted, expired).

``delivered_sealed`` is not among them: a deletion receipt may still come,
and ``report --follow`` waits for it.
"""


@dataclass(frozen=True)
class DeviceLine:
    person: str
    device: str  # the first 8 hex digits of the device id
    state: DeviceState
    sentence: str
    attested_by: tuple[str, ...]
    receipt: str  # "verified", "invalid", "unverifiable" or "" (no receipt)
    files_downloaded: bool | None = None  # None: the message carried no files
    fetched: bool = True  # the device had a copy (so a deletion receipt may still come)


@dataclass(frozen=True)
class ReportView:
    message_id: bytes
    state: str  # live, complete, recalled, expired
    sent_at: int
    recalled_at: int | None
    relay_receipt: str  # "verified", "invalid" or "" (none yet)
    lines: tuple[DeviceLine, ...]
    files: int = 0  # how many files the message carried
    files_bytes: int = 0  # their size at the relay (padded ciphertext)
    files_destroyed: bool = False  # the relay no longer holds them
    group: str | None = None  # the group's local name, for a message to a group

    @property
    def counts(self) -> dict[str, int]:
        """How many devices are in each state (only the states that occur)."""
        found: dict[str, int] = {}
        for line in self.lines:
            found[str(line.state)] = found.get(str(line.state), 0) + 1
        return found

    def by_person(self) -> dict[str, tuple[DeviceLine, ...]]:
        """The lines per person, in report order: a group message's report per member.

        Your own other devices come under "you".
        """
        people: dict[str, list[DeviceLine]] = {}
        for line in self.lines:
            people.setdefault(line.person, []).append(line)
        return {person: tuple(lines) for person, lines in people.items()}

    @property
    def settled(self) -> bool:
        """No line can change any more (every device is accounted for after a recall)."""
        return self.state in ("recalled", "expired") and all(
            line.state in TERMINAL_STATES
            # expired without ever fetching it: the device had nothing to delete or confirm
            or (line.state is DeviceState.EXPIRED and not line.fetched)
            for line in self.lines
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id.hex(),
            "state": self.state,
            "sent_at": self.sent_at,
            "recalled_at": self.recalled_at,
            "relay_receipt": self.relay_receipt or None,
            "group": self.group,
            "counts": self.counts,
            "files": {
                "count": self.files,
                "bytes": self.files_bytes,
                "destroyed": self.files_destroyed,
            },
            "devices": [
                {
                    "person": line.person,
                    "device": line.device,
                    "state": str(line.state),
                    "sentence": line.sentence,
                    "attested_by": list(line.attested_by),
                    "receipt": line.receipt or None,
                    "files_downloaded": line.files_downloaded,
                }
                for line in self.lines
            ],
        }


def _line(core: Core, raw: dict[str, Any], report: dict[str, Any]) -> DeviceLine:
    user, device_id = raw["user"], raw["device_id"]
    state = DeviceState(raw["state"])
    who = core.store.contact_by_user(user)
    person = who.name if who else display_name(core, user)
    receipt = ""
    if raw.get("receipt") is not None:
        receipt = "unverifiable"
        known = cached_devices(core, who) if who else cached_member_devices(core, user)
        certificates = [c for c in known if c.device_id == device_id]
        for certificate in certificates:
            try:
                verify_deletion_receipt(
                    raw["receipt"],
                    certificate,
                    message_id=report["message_id"],
                    conversation_id=report["conversation_id"],
                    revocation=(
                        revocation_digest(report["revocation"])
                        if report.get("revocation")
                        else None
                    ),
                )
                receipt = "verified"
            except E2ERecallError:
                receipt = "invalid"
    if state is DeviceState.DELETED and receipt == "invalid":
        # The relay says the device deleted it, but the device's signature says otherwise.
        if raw.get("expired_at") is not None:
            state = DeviceState.EXPIRED  # what the relay did stands; the deletion does not
        elif raw.get("key_released_at"):
            state = DeviceState.PENDING
        else:
            state = DeviceState.DELIVERED_SEALED
    model = DeviceReport(
        user=user,
        device_id=device_id,
        state=state,
        fetched_at=raw.get("fetched_at"),
        key_released_at=raw.get("key_released_at"),
        recalled_at=raw.get("recalled_at"),
        deleted_at=raw.get("deleted_at"),
        expired_at=raw.get("expired_at"),
    )
    sentence = describe(model)
    files = _files(report)
    downloaded = None
    if files["count"]:
        downloaded = raw.get("downloaded_at") is not None
        sentence += (
            " It had downloaded the attached file(s)."
            if downloaded
            else " It had not downloaded the attached file(s)."
        )
    return DeviceLine(
        person=person,
        device=device_id.hex()[:8],
        state=state,
        sentence=sentence,
        attested_by=tuple(str(a) for a in model.attested_by),
        receipt=receipt,
        files_downloaded=downloaded,
        fetched=raw.get("fetched_at") is not None,
    )


def _files(report: dict[str, Any]) -> dict[str, Any]:
    """The report's file summary; a relay from before attachments sends none."""
    found = report.get("files")
    if not isinstance(found, dict):
        return {"count": 0, "bytes": 0, "destroyed": False}
    return {
        "count": int(found.get("count") or 0),
        "bytes": int(found.get("bytes") or 0),
        "destroyed": bool(found.get("destroyed")),
    }


@cache
def _reachable(start: DeviceState) -> frozenset[DeviceState]:
    """Every state the core model's table can reach from ``start``, ``start`` included."""
    seen = {start}
    frontier = [start]
    while frontier:
        for following in TRANSITIONS[frontier.pop()].values():
            if following not in seen:
                seen.add(following)
                frontier.append(following)
    return frozenset(seen)


_MESSAGE_STAGE = {"live": 0, "complete": 1, "recalled": 2, "expired": 2}


def is_news(pushed: dict[str, Any], held: dict[str, Any] | None) -> bool:
    """Whether a pushed report says anything the one already held does not.

    Pushed reports arrive in the relay's event order, but a report fetched
    directly can be newer than events still queued; since states only move
    forward through the core model's table, a pushed report whose every
    line the held one has already moved past (or equals) is old news, and
    must not overwrite it.
    """
    if held is None:
        return True
    if _MESSAGE_STAGE.get(str(pushed.get("state")), 0) > _MESSAGE_STAGE.get(
        str(held.get("state")), 0
    ):
        return True
    known = {raw["device_id"]: raw for raw in held.get("devices", [])}
    for raw in pushed.get("devices", []):
        mine = known.get(raw["device_id"])
        if mine is None:
            return True
        try:
            newer, older = DeviceState(raw["state"]), DeviceState(mine["state"])
        except ValueError:
            return True
        if newer is not older and newer in _reachable(older):
            return True
        if newer is older and raw.get("receipt") is not None and mine.get("receipt") is None:
            return True
    return False


def build_report(core: Core, report: dict[str, Any]) -> ReportView:
    """Check the evidence in ``report`` and phrase every line."""
    relay_receipt = ""
    if report.get("purge_receipt") is not None:
        try:
            verify_purge_receipt(
                report["purge_receipt"],
                core.relay_key,
                message_id=report["message_id"],
                conversation_id=report["conversation_id"],
                revocation=(
                    revocation_digest(report["revocation"]) if report.get("revocation") else None
                ),
            )
            relay_receipt = "verified"
        except E2ERecallError:
            relay_receipt = "invalid"
    lines = tuple(_line(core, raw, report) for raw in report.get("devices", []))
    group = by_conversation(core.store, report.get("conversation_id"))
    files = _files(report)
    return ReportView(
        message_id=report["message_id"],
        state=str(report.get("state")),
        sent_at=int(report.get("sent_at") or 0),
        recalled_at=report.get("recalled_at"),
        relay_receipt=relay_receipt,
        lines=lines,
        files=files["count"],
        files_bytes=files["bytes"],
        files_destroyed=files["destroyed"],
        group=group.name if group else None,
    )


_STORED_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20)  # as the relay's event frames


async def fetch_report(core: Core, message_id: bytes, *, refresh: bool = True) -> ReportView:
    """The checked report of a message sent from here; ``refresh`` asks the relay first.

    Without ``refresh`` it is the one last pushed and kept; a message that
    never reached the relay has a report with no lines.
    """
    row = core.store.message(message_id)
    if row is None or not row.outgoing:
        raise NotFound("Reports exist only for messages you sent.", "no_report")
    if row.state in ("sending", "failed") or (row.state == "recalled" and row.report is None):
        return ReportView(message_id, row.state, row.sent_at, row.recalled_at, "", ())
    if refresh:
        answer = await authed(core, "GET", f"/v1/messages/{message_id.hex()}/report")
        with core.store.transaction():
            row.report = wire.encode(answer)
            core.store.save_message(row)
    if row.report is None:
        raise NotFound("No report has been received for this message yet.", "no_report")
    report = wire.decode(row.report, limits=_STORED_LIMITS)
    assert isinstance(report, dict)
    return build_report(core, report)


def summary(view: ReportView) -> str:
    """One sentence over all devices, for the top of a report."""
    if view.state == "live":
        return "Not recalled."
    if view.state == "complete":
        return "Not recalled; every device has opened it and the relay no longer holds it."
    opened = [line for line in view.lines if "opened at" in line.sentence.lower()]
    safe = len(view.lines) - len(opened)
    parts = ["Recalled." if view.state == "recalled" else "Expired."]
    if view.files:
        parts.append(
            f"The relay destroyed its {view.files} attached file(s)."
            if view.files_destroyed
            else f"The relay still holds {view.files} attached file(s)."
        )
    if safe:
        parts.append(f"{safe} device(s) could never read it.")
    if opened:
        waiting = sum(1 for line in opened if line.state is DeviceState.PENDING)
        parts.append(
            f"{len(opened)} device(s) had opened it first, so it was possibly already read, "
            "copied or screenshotted"
            + (f"; {waiting} of them not yet confirmed deleted." if waiting else ".")
        )
    return " ".join(parts)
