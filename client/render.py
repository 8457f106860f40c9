"""What the terminal shows: rich tables and colour on a terminal, plain lines otherwise.

Every listing also has a ``--json`` form (see :func:`print_json`), which is
what scripts should read; the human forms may change wording between
versions, the JSON keys do not.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from e2e_recall import DeviceState, format_fingerprint
from e2e_recall.report import format_time

from .client import Entry
from .receiving import Update
from .reporting import DeviceLine, ReportView, summary
from .store import Contact

__all__ = [
    "entry_json",
    "format_size",
    "print_contacts",
    "print_entries",
    "print_json",
    "print_report",
    "print_update",
    "short",
]

_STATE_STYLE = {
    DeviceState.QUEUED: "yellow",
    DeviceState.SEALED: "cyan",
    DeviceState.OPENED: "bold red",
    DeviceState.NEVER_DELIVERED: "green",
    DeviceState.DELIVERED_SEALED: "green",
    DeviceState.PENDING: "bold red",
    DeviceState.DELETED: "yellow",
    DeviceState.EXPIRED: "green",
}
_STATE_LABEL = {
    DeviceState.QUEUED: "queued",
    DeviceState.SEALED: "delivered, sealed",
    DeviceState.OPENED: "opened",
    DeviceState.NEVER_DELIVERED: "never delivered",
    DeviceState.DELIVERED_SEALED: "delivered but sealed",
    DeviceState.PENDING: "pending",
    DeviceState.DELETED: "deleted",
    DeviceState.EXPIRED: "expired",
}


_PENDING_LABELS = {
    "sending": "queued, not yet at the relay",
    "recalling": "recall queued, not yet confirmed",
    "failed": "not sent",
}


def format_size(size: int) -> str:
    """Bytes as people read them: 0 B, 999 B, 1.0 KiB, 12.3 MiB, 1.0 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def short(message_id: bytes) -> str:
    """The 8-hex-digit id people type (any unique prefix of 4+ digits works)."""
    return message_id.hex()[:8]


def print_json(console: Console, value: Any) -> None:
    console.print_json(json.dumps(value, sort_keys=True)) if console.is_terminal else print(
        json.dumps(value, sort_keys=True)
    )


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.message_id.hex(),
        "contact": entry.peer,
        "group": entry.group,
        "direction": "out" if entry.outgoing else "in",
        "sent_at": entry.sent_at,
        "state": entry.state,
        "text": entry.text,
        "replaces": entry.replaces.hex() if entry.replaces else None,
        "replaced_by": entry.replaced_by.hex() if entry.replaced_by else None,
        "problem": entry.problem,
        "expires_at": entry.expires_at,
        "files": [
            {"name": f.name, "size": f.size, "media_type": f.media_type, "saved_at": f.saved_at}
            for f in entry.files
        ],
    }


def _entry_text(entry: Entry, by_id: dict[bytes, Entry]) -> str:
    """What a conversation shows for one message; never content that was not opened."""
    if entry.state == "recalled":
        if entry.replaced_by is not None:
            correction = by_id.get(entry.replaced_by)
            if correction is not None and correction.text is not None:
                return f"{correction.text}  (corrected)"
            return "(replaced by a correction, still sealed: open " + short(entry.replaced_by) + ")"
        if entry.outgoing:
            return "(you recalled this message)"
        return "(recalled by the sender)"
    if entry.text is not None:
        text = entry.text
        if entry.files:
            names = ", ".join(f"{f.name} ({format_size(f.size)})" for f in entry.files)
            text = (text + "  " if text else "") + f"[files: {names}]"
        if entry.outgoing and entry.state in _PENDING_LABELS:
            text += f"  ({_PENDING_LABELS[entry.state]})"
        return text
    if entry.state == "sealed":
        return "(sealed: open it to read; the sender sees when you do)"
    if entry.state == "expired":
        return "(expired: its timer ran out, and it was deleted from this device)"
    return f"({entry.state})"


def _sender(entry: Entry) -> str:
    return f"{entry.peer} in {entry.group}" if entry.group else entry.peer


def print_entries(console: Console, entries: list[Entry], *, title: str) -> None:
    by_id = {e.message_id: e for e in entries}
    shown = [e for e in entries if not (e.replaces is not None and e.replaces in by_id and e.text)]
    if not shown:
        console.print(f"{title}: nothing.")
        return
    if console.is_terminal:
        table = Table(title=title, show_lines=False)
        for column in ("id", "when", "who", "message"):
            table.add_column(column)
        for e in shown:
            who = f"you → {e.peer}" if e.outgoing else _sender(e)
            table.add_row(
                short(e.message_id), format_time(e.sent_at), who, escape(_entry_text(e, by_id))
            )
        console.print(table)
        return
    console.print(f"{title}:")
    for e in shown:
        who = f"you -> {e.peer}" if e.outgoing else _sender(e)
        console.print(
            f"{short(e.message_id)}  {format_time(e.sent_at)}  {who}: {_entry_text(e, by_id)}",
            markup=False,
            highlight=False,
        )


def print_contacts(console: Console, contacts: list[Contact]) -> None:
    if not contacts:
        console.print("No contacts yet; add one with 'e2e-recall contacts add NAME HANDLE'.")
        return
    rows = []
    for c in contacts:
        if c.changed_key is not None:
            trust = "KEY CHANGED: not accepted"
        elif c.verified_at is not None:
            trust = f"verified {format_time(c.verified_at)}"
        else:
            trust = "pinned, not verified"
        if c.unsolicited:
            trust += " (wrote to you first)"
        rows.append((c.name, c.handle or "-", format_fingerprint(c.user_id)[:19], trust))
    if console.is_terminal:
        table = Table(title="contacts")
        for column in ("name", "handle", "user id", "trust"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(x) for x in row))
        console.print(table)
        return
    for row in rows:
        console.print("  ".join(row), markup=False, highlight=False)


def print_report(console: Console, view: ReportView, peer: str, *, details: bool = False) -> None:
    """The honest report: one line per recipient device, in the core model's words.

    For a group message, unless ``details``: counts per state over every
    device, then one line per member (:func:`_print_members`).
    """
    to = f"group {view.group}" if view.group else peer
    console.print(
        f"Report for message {short(view.message_id)} to {escape(to)}, "
        f"sent {format_time(view.sent_at)}"
        + (f", recalled {format_time(view.recalled_at)}" if view.recalled_at else "")
        + ":",
        highlight=False,
    )
    console.print(escape(summary(view)), highlight=False)
    if view.relay_receipt == "verified":
        console.print("The relay signed a purge receipt; its signature checks out.")
    elif view.relay_receipt == "invalid":
        console.print("[bold red]The relay's purge receipt does NOT verify.[/]")
    if not view.lines:
        console.print("No device has been told about it.")
    elif view.group is not None and not details:
        _print_members(console, view)
        return
    for line in view.lines:
        label = _STATE_LABEL[line.state]
        receipt = {
            "verified": " Device receipt: signature verified.",
            "invalid": " Device receipt: signature INVALID, so deletion is not confirmed.",
            "unverifiable": " Device receipt: cannot be checked (unknown device).",
            "": "",
        }[line.receipt]
        if console.is_terminal:
            style = _STATE_STYLE[line.state]
            console.print(
                f"  {escape(line.person)} · device {line.device}: [{style}]{label}[/]",
                highlight=False,
            )
            console.print(f"      {escape(line.sentence)}{receipt}", highlight=False)
        else:
            console.print(
                f"  {line.person} device {line.device}: {label}. {line.sentence}{receipt}",
                markup=False,
                highlight=False,
            )


def _counted(lines: list[DeviceLine] | tuple[DeviceLine, ...]) -> str:
    """``2 deleted, 1 pending``: how many of ``lines`` are in each state, in table order."""
    counts = [(s, sum(1 for line in lines if line.state is s)) for s in _STATE_LABEL]
    return ", ".join(f"{n} {_STATE_LABEL[s]}" for s, n in counts if n)


def _print_members(console: Console, view: ReportView) -> None:
    """The compact group report: counts over all devices, then one line per person."""
    console.print(f"Devices: {_counted(view.lines)} ({len(view.lines)} in all).", markup=False)
    for person, lines in view.by_person().items():
        who = "your other devices" if person == "you" else person
        devices = f"{len(lines)} device" + ("s" if len(lines) > 1 else "")
        console.print(f"  {who} ({devices}): {_counted(lines)}", markup=False, highlight=False)
    console.print(
        f"Every device, with what each guarantee means: "
        f"e2e-recall report {short(view.message_id)} --details",
        markup=False,
    )


_UPDATE_TEXT = {
    "group": "{detail}",
    "device": "{detail}",
    "message": "New sealed message from {peer} [{id}]: open it with 'e2e-recall open {id}'.",
    "replaced": "{peer} sent a correction [{id}]: open it with 'e2e-recall open {id}'.",
    "recalled": "{peer} recalled message [{id}] ({detail}); it is gone from this device.",
    "withdrawn": "A message from {peer} was recalled before it reached this device.",
    "dropped": "{detail} (from {peer}, [{id}])",
    "report": "The report for your message [{id}] to {peer} changed.",
    "expired": "Message [{id}] with {peer} expired: {detail}",
    "connected": "Connected to {detail}; waiting for messages (Ctrl-C to stop).",
    "disconnected": "Disconnected ({detail}); reconnecting…",
    "caught_up": "",
    "displaced": "",  # said once, as the closing error of the command that stops
}


def print_update(console: Console, update: Update) -> None:
    template = _UPDATE_TEXT.get(update.kind, "")
    if not template:
        return
    text = template.format(peer=update.peer, id=short(update.message_id), detail=update.detail)
    console.print(text, markup=False, highlight=False)


def update_json(update: Update) -> dict[str, Any]:
    return {
        "kind": update.kind,
        "id": update.message_id.hex() or None,
        "contact": update.peer or None,
        "detail": update.detail or None,
    }
