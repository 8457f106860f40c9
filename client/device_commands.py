"""``e2e-recall device ...``: link a new device, join from one, list and revoke devices.

``link`` runs on a device already set up: it shows a one-time code, waits
for the new device's request, certifies it and answers
(:mod:`client.pending_link`).  ``join`` runs on the new computer with a
fresh profile: it sends the request, waits for the answer and sets the
profile up (identity, contacts, groups), registers and syncs.  History is
not copied: messages sent before the link stay on the devices that had them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from e2e_recall.report import format_time

from .client import Client
from .device_notes import notes_for
from .errors import UsageProblem
from .key_commands import KEY_ACTIONS, add_key_actions, run_keys
from .linking import short_device
from .render import print_json

__all__ = ["add_device_parser", "print_device_notes", "run_device", "run_join"]


def add_device_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    device = sub.add_parser(
        "device", parents=[common], help="link, list and revoke devices; rotate their keys"
    )
    dsub = device.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = dsub.add_parser(name, parents=[common], help=text)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    link = action("link", "show a one-time code to link a new device to you")
    link.add_argument(
        "--timeout", default="10m", metavar="DURATION", help="how long the code works (max 10m)"
    )
    join_ = action(
        "join",
        "make this new profile one of your devices, with the code 'device link' shows "
        "(history is not copied)",
    )
    join_.add_argument("code", help="the code shown by 'e2e-recall device link'")
    join_.add_argument("url", metavar="RELAY_URL", help="the relay URL 'device link' printed")
    join_.add_argument("--suite", choices=("x25519", "xwing"), default="x25519")
    join_.add_argument(
        "--kdf", choices=("interactive", "moderate", "sensitive"), default="moderate"
    )
    join_.add_argument("--name", metavar="NAME", help="a name for this device")
    join_.add_argument("--timeout", default="10m", metavar="DURATION")
    action("list", "your devices; this one is marked")
    revoke = action("revoke", "revoke one of your other devices (by the start of its id)")
    revoke.add_argument("device", help="at least 4 hex digits of its id, as 'device list' shows")
    add_key_actions(dsub, common)


def _line(out: Console, value: dict[str, Any]) -> None:
    """One JSON object per line, flushed: a script reads the code before the link ends."""
    out.file.write(json.dumps(value, sort_keys=True) + "\n")
    out.file.flush()


async def run_join(
    root: Path,
    passphrase: str,
    args: argparse.Namespace,
    out: Console,
    err: Console,
    timeout_ms: int,
) -> int:
    def sent(device_id: bytes) -> None:
        err.print(
            f"Asked to join as device {short_device(device_id)}; your other device shows the "
            "same id. Waiting for it…",
            markup=False,
        )

    client, problems = await Client.join(
        root,
        passphrase,
        args.code,
        args.url,
        suite=args.suite,
        strength=args.kdf,
        timeout_ms=timeout_ms,
        device_name=args.name,
        on_sent=sent,
    )
    try:
        await client.sync()
        ids = client.whoami()
        result = {
            "user_id": ids["user_id"],
            "device_id": ids["device_id"],
            "relay": ids["relay"],
            "contacts": len(client.contacts()),
            "groups": sum(1 for group in client.groups() if group.member),
            "problems": problems,
        }
        if args.json:
            _line(out, result)
        else:
            out.print(f"This computer is now your device {short_device(client.device_id)}.")
            out.print(
                f"It knows {result['contacts']} contact(s) and {result['groups']} group(s); "
                "earlier messages stay on your other devices.",
            )
            for problem in problems:
                out.print(f"warning: {problem}", markup=False)
    finally:
        await client.close()
    return 0


def print_device_notes(client: Client, name: str, out: Console) -> None:
    """Under a conversation's history: the contact's device changes this device noticed."""
    who = client.core.store.contact_by_name(name)
    if who is None:
        return
    for at, text in notes_for(client.core, who.user_id):
        out.print(f"{format_time(at)}  {text}", markup=False)


async def run_device(
    client: Client, args: argparse.Namespace, out: Console, timeout_ms: int
) -> int:
    if args.action == "link":
        return await _link(client, args, out, timeout_ms)
    if args.action in KEY_ACTIONS:
        return await run_keys(client, args, out)
    if args.action == "list":
        devices = await client.devices()
        if args.json:
            print_json(out, [d.to_json() for d in devices])
        else:
            for d in devices:
                flags = " (this device)" if d.this_device else ""
                if d.revoked_at is not None:
                    flags += f" revoked on {format_time(d.revoked_at)}"
                out.print(
                    f"{short_device(d.device_id)}  linked {format_time(d.created_at)}{flags}",
                    markup=False,
                )
        return 0
    if args.action == "revoke":
        return await _revoke(client, args, out)
    raise UsageProblem(f"Unknown device action {args.action!r}.", "bad_command")


async def _revoke(client: Client, args: argparse.Namespace, out: Console) -> int:
    done = await client.revoke_device(args.device)
    name = short_device(done.device_id)
    if args.json:
        print_json(out, done.to_json())
    elif done.already_revoked:
        out.print(f"Device {name} was already revoked.")
    else:
        out.print(
            f"Revoked device {name}: it can no longer log in, nothing more is wrapped to "
            f"it, and {done.wraps_destroyed} message key(s) waiting for it were destroyed "
            "(it will never read those). Your contacts' devices see the change."
        )
    return 0


async def _link(client: Client, args: argparse.Namespace, out: Console, timeout_ms: int) -> int:
    await client.sync()  # so the answer carries the contacts and groups as they are now
    link = await client.link_device(timeout_ms)
    if args.json:
        _line(out, {"code": link.code, "relay": link.relay_url, "expires_at": link.expires_at})
    else:
        out.print("On the new device, run:", markup=False)
        out.print(f"  e2e-recall device join {link.code} {link.relay_url}", markup=False)
        out.print(
            "Only type this code on a device of your own: it gives that device your identity.",
            markup=False,
        )

    def asked(device_id: bytes) -> None:
        if not args.json:
            out.print(
                f"Device {short_device(device_id)} asked to join; it should show the same id.",
                markup=False,
            )

    done = await link.joined(on_request=asked)
    name = short_device(done.device_id)
    if args.json:
        _line(
            out, {"linked": name, "device_id": done.device_id.hex(), "registered": done.registered}
        )
    elif done.registered:
        out.print(f"Linked device {name}.", markup=False)
    else:
        out.print(
            f"Device {name} got its answer but has not registered with the relay yet.",
            markup=False,
        )
    return 0 if done.registered else 1
