"""The work behind each ``e2e-recall`` command; cli.py only parses arguments.

Commands that talk to the relay first send whatever waits in the outbox and
fetch what waits at the relay (``sync``), so a listing is never stale and a
message queued while the relay was down goes out on the next command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from e2e_recall import format_fingerprint

from .client import Client
from .device_commands import print_device_notes
from .errors import RecallNotAccepted, RelayUnreachable, SessionReplaced, UsageProblem
from .expire_commands import run_expire, send_timer
from .expiring import describe_timer, timer_json
from .group_commands import run_group
from .live import TAKEN_OVER
from .paths import resolve_profile_dir
from .progress_bars import transfer_progress
from .render import (
    entry_json,
    format_size,
    print_contacts,
    print_entries,
    print_json,
    print_report,
    print_update,
    short,
    update_json,
)
from .reporting import ReportView
from .rotation import override_rotate_every

__all__ = ["parse_duration", "run_command"]

PASSPHRASE_ENV = "E2E_RECALL_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``1h``, ``30d``, ``2w`` in milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageProblem(
            f"{text!r} is not a duration; write it like 90s, 15m, 1h, 30d or 2w.", "bad_duration"
        )
    return int(match[1]) * _UNITS[match[2]]


def _passphrase(args: argparse.Namespace, *, new: bool = False) -> str:
    if args.passphrase_file:
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageProblem(
                f"Cannot read the passphrase file {args.passphrase_file}: {exc}.",
                "bad_passphrase_file",
            ) from None
        return text.rstrip("\r\n")
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise UsageProblem(
            "No passphrase: type it at a terminal, or give --passphrase-file FILE or "
            f"{PASSPHRASE_ENV}.",
            "no_passphrase",
        )
    first = getpass.getpass("Passphrase: ")
    if new and getpass.getpass("Passphrase again: ") != first:
        raise UsageProblem(
            "The two passphrases differ; nothing was created.", "passphrase_mismatch"
        )
    return first


@contextlib.contextmanager
def _waiting(console: Console, what: str) -> Iterator[None]:
    """A spinner on a terminal; nothing when output is piped."""
    if console.is_terminal:
        with console.status(what):
            yield
    else:
        yield


async def run_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.command == "bench":
        from .bench import run_bench

        return run_bench(args.runs, args.suite, as_json=args.json, out=out, err=err)
    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(out, pause=args.pause)
    root = resolve_profile_dir(getattr(args, "profile", None))
    if args.command == "device" and args.action == "join":
        from .device_commands import run_join

        timeout = parse_duration(args.timeout)
        return await run_join(root, _passphrase(args, new=True), args, out, err, timeout)
    if args.command == "init":
        client = Client.create(
            root, _passphrase(args, new=True), suite=args.suite, strength=args.kdf
        )
        try:
            ids = client.whoami()
            out.print(f"Created a new identity in {root}.")
            out.print(f"Your user id: {ids['fingerprint']}")
            out.print("Next: e2e-recall register URL --handle NAME")
        finally:
            await client.close()
        return 0
    client = Client.open(root, _passphrase(args))
    rotate_every = getattr(args, "rotate_every", None)
    if rotate_every:
        override_rotate_every(client.core, parse_duration(rotate_every))
    try:
        return await _dispatch(client, args, out, err)
    finally:
        await client.close()


async def _sync(client: Client, out: Console, *, quiet: bool = False) -> None:
    with _waiting(out, "Talking to the relay…"):
        updates = await client.sync()
    if not quiet:
        for update in updates:
            print_update(out, update)


async def _dispatch(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    command = args.command
    as_json = getattr(args, "json", False)
    if command == "register":
        with _waiting(out, "Registering…"):
            await client.register(args.url, args.handle)
        ids = client.whoami()
        out.print(f"Registered with {ids['relay']} as {args.handle or ids['fingerprint']}.")
        return 0
    if command == "whoami":
        ids = client.whoami()
        if as_json:
            print_json(out, ids)
        else:
            for key in ("fingerprint", "handle", "device_id", "wrap_suite", "relay", "profile"):
                out.print(f"{key.replace('_', ' ')}: {ids[key] or '-'}", markup=False)
        return 0
    if command == "contacts":
        return await _contacts(client, args, out)
    if command == "group":
        return await run_group(client, args, out, err)
    if command == "device":
        from .device_commands import run_device

        timeout = parse_duration(getattr(args, "timeout", None) or "10m")
        return await run_device(client, args, out, timeout)
    if command == "send":
        return await _send(client, args, out, err)
    if command == "expire":
        return run_expire(client, args, out)
    if command in ("inbox", "sync"):
        if command == "sync":
            with _waiting(out, "Talking to the relay…"):
                updates = await client.sync()
            if as_json:
                print_json(
                    out,
                    {"updates": [update_json(u) for u in updates], "queued": client.outbox_size()},
                )
            else:
                for update in updates:
                    print_update(out, update)
                out.print(f"Up to date. {client.outbox_size()} item(s) still queued.")
            return 0
        await _offline_tolerant_sync(client, out, err, quiet=as_json)
        entries = client.inbox()
        if as_json:
            print_json(out, [entry_json(e) for e in entries])
        else:
            print_entries(out, entries, title="sealed messages")
        return 0
    if command in ("open", "read"):
        await _sync(client, out, quiet=True)
        row = client.find(args.message)
        downloads = Path(args.downloads).expanduser() if args.downloads else None
        with transfer_progress(err, "Downloading", enabled=not as_json) as progress:
            client.core.progress = progress
            entry = await client.open_message(row.message_id, downloads)
        if as_json:
            print_json(out, entry_json(entry))
        else:
            out.print(f"From {entry.peer}, {short(entry.message_id)}:", markup=False)
            if entry.text:
                out.print(entry.text, markup=False)
            for saved in entry.files:
                out.print(
                    f"Saved {saved.name} ({format_size(saved.size)}) as {saved.saved_at}",
                    markup=False,
                )
        return 0
    if command == "recall":
        return await _recall(client, args, out, err)
    if command == "report":
        return await _report(client, args, out)
    if command == "watch":
        return await _watch(client, args, out)
    if command == "history":
        await _offline_tolerant_sync(client, out, err, quiet=as_json)
        entries = client.history(args.name)
        if as_json:
            print_json(out, [entry_json(e) for e in entries])
        else:
            title = f"conversation with {args.name}"
            timer = client.conversation_timer(args.name)
            if timer is not None:
                title += f" (new messages disappear {describe_timer(timer)})"
            print_entries(out, entries, title=title)
            print_device_notes(client, args.name, out)
        return 0
    if command == "delete":
        row = client.find(args.message)
        client.delete_for_me(row.message_id)
        out.print(f"Deleted {short(row.message_id)} from this device only; others keep theirs.")
        return 0
    raise UsageProblem(f"Unknown command {command!r}.", "bad_command")


async def _offline_tolerant_sync(
    client: Client, out: Console, err: Console, *, quiet: bool
) -> None:
    """Listings still work from the local store when the relay is down, with a warning."""
    try:
        await _sync(client, out, quiet=quiet)
    except RelayUnreachable as exc:
        err.print(f"warning: {exc.sentence} Showing what this device already has.", markup=False)


async def _contacts(client: Client, args: argparse.Namespace, out: Console) -> int:
    action = args.action
    if action == "add":
        with _waiting(out, "Looking them up…"):
            contact = await client.add_contact(args.name, args.who)
        out.print(f"Added {contact.name}; their identity key is pinned.", markup=False)
        out.print(f"User id: {format_fingerprint(contact.user_id)}")
        out.print(
            f"Compare safety numbers with 'e2e-recall contacts verify {contact.name}'.",
            markup=False,
        )
        return 0
    if action == "list":
        contacts = client.contacts()
        if args.json:
            print_json(
                out,
                [
                    {
                        "name": c.name,
                        "handle": c.handle,
                        "user_id": c.user_id.hex(),
                        "verified": c.verified_at is not None,
                        "key_changed": c.changed_key is not None,
                        "expire": timer_json(client.conversation_timer(c.name)),
                    }
                    for c in contacts
                ],
            )
        else:
            print_contacts(out, contacts)
        return 0
    if action == "verify":
        contact = client.contact(args.name)
        out.print(f"Safety number with {contact.name}:", markup=False)
        out.print(f"  {client.safety_number(args.name)}")
        out.print(
            "Compare it with theirs in person or on a call. If it matches, run this again "
            "with --confirm."
        )
        if args.confirm:
            client.mark_verified(args.name)
            out.print(f"{contact.name} is now marked as verified.", markup=False)
        return 0
    if action == "accept":
        contact = client.accept_key(args.name)
        out.print(
            f"Accepted {contact.name}'s new identity key. It is not verified: compare "
            f"safety numbers with 'e2e-recall contacts verify {contact.name}'.",
            markup=False,
        )
        return 0
    if action == "remove":
        client.remove_contact(args.name)
        out.print(f"Removed {args.name}; your conversation history stays.", markup=False)
        return 0
    raise UsageProblem(f"Unknown contacts action {action!r}.", "bad_command")


async def _send(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    files = [Path(f).expanduser() for f in args.file or ()]
    if args.text and args.text != ["-"]:
        text = " ".join(args.text)
    else:
        text = "" if files and not args.text else sys.stdin.read()
    sealed_window = parse_duration(args.recall_window)
    opened_window = parse_duration(args.opened_window)
    timer = send_timer(args)
    waiting = _waiting(out, "Sending…") if not files else contextlib.nullcontext()
    with waiting, transfer_progress(err, "Uploading", enabled=not args.json) as progress:
        client.core.progress = progress
        outcome = await client.send(
            args.name,
            text.strip("\n"),
            sealed_window=sealed_window,
            opened_window=opened_window,
            files=files,
            timer=timer,
        )
    result: dict[str, Any] = {
        "id": outcome.message_id.hex(),
        "queued": outcome.queued,
        "problem": outcome.problem,
    }
    if args.json:
        print_json(out, result)
    elif outcome.queued:
        out.print(
            f"Queued {short(outcome.message_id)}: {outcome.problem} It will be sent "
            "with the same id the next time e2e-recall reaches the relay "
            "(or run 'e2e-recall sync').",
            markup=False,
        )
    elif outcome.problem:
        out.print(f"Not sent: {outcome.problem}", markup=False)
    else:
        out.print(
            f"Sent {short(outcome.message_id)} to {args.name}. It stays sealed until they "
            "open it; recall it with 'e2e-recall recall "
            f"{short(outcome.message_id)}'.",
            markup=False,
        )
    if outcome.queued:
        return RelayUnreachable.exit_code
    return 1 if outcome.problem else 0


async def _recall(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    row = client.find(args.message)
    peer = client.entry(row).peer
    try:
        with _waiting(out, "Recalling…"):
            outcome = await client.recall(row.message_id, args.replace)
    except RecallNotAccepted as exc:
        err.print(f"Recall refused: {exc.sentence}", markup=False)
        err.print(
            f"What you can still do: send a correction ('e2e-recall send {peer} ...'), or ask "
            f"{peer} directly to delete it. The message stays as it was.",
            markup=False,
        )
        return exc.exit_code
    except RelayUnreachable as exc:
        err.print(
            f"The recall did not reach the relay: {exc.sentence} It is kept signed and "
            "will be retried on the next command (or run 'e2e-recall sync'); until the "
            "relay confirms it, nothing is recalled.",
            markup=False,
        )
        return exc.exit_code
    view = await client.report(row.message_id, refresh=False)
    if args.json:  # one shape, whether or not the message had left this device
        print_json(
            out,
            {
                **view.to_json(),
                "already_recalled": outcome.already_recalled,
                "replacement_id": outcome.replacement_id.hex() if outcome.replacement_id else None,
                "local_only": outcome.local_only,
                "expired": outcome.expired,
            },
        )
        return 0
    if outcome.local_only:
        out.print("Recalled before it left this device: no one received it.")
        return 0
    if outcome.expired:
        out.print("Nothing to recall: its timer had already run out and it was destroyed.")
    if outcome.already_recalled:
        out.print("It was already recalled; here is the report as it stands.")
    if outcome.replacement_id:
        out.print(f"Your correction {short(outcome.replacement_id)} went out in the same request.")
    print_report(out, view, peer)
    return 0


async def _report(client: Client, args: argparse.Namespace, out: Console) -> int:
    row = client.find(args.message)
    peer = client.entry(row).peer
    with _waiting(out, "Asking the relay…"):
        view = await client.report(row.message_id)
    if args.json:
        print_json(out, view.to_json())
    else:
        print_report(out, view, peer, details=args.details)
    if not args.follow:
        return 0
    stop = asyncio.Event()
    if args.timeout:
        asyncio.get_running_loop().call_later(args.timeout, stop.set)
    changes = client.follow_report(row.message_id, stop, since=view)
    async with contextlib.aclosing(changes):
        async for change in changes:
            if isinstance(change, ReportView):
                if args.json:
                    print_json(out, change.to_json())
                else:
                    out.rule()
                    print_report(out, change, peer, details=args.details)
            elif change.kind == "displaced":
                raise _taken_over()
            elif not args.json:
                print_update(out, change)
    return 0


def _taken_over() -> SessionReplaced:
    return SessionReplaced(
        f"Stopped: {TAKEN_OVER}, and the relay keeps only one per device.", "session_replaced"
    )


async def _watch(client: Client, args: argparse.Namespace, out: Console) -> int:
    stop = asyncio.Event()
    if args.timeout:
        asyncio.get_running_loop().call_later(args.timeout, stop.set)
    updates = client.watch(stop)
    async with contextlib.aclosing(updates):
        async for update in updates:
            if args.json:
                if update.kind != "caught_up":
                    print(json.dumps(update_json(update), sort_keys=True), flush=True)
            else:
                print_update(out, update)
            if update.kind == "displaced":
                raise _taken_over()
    return 0
