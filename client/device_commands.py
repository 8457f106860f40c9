"""``e2e-recall device ...``: link a new device, join from one, list and revoke devices.

``link`` runs on a device already set up: it shows a one-time code, waits for
the new device's request (pushed over the WebSocket, with polling as the
fallback), certifies it and answers.  ``join`` runs on the new computer with
a fresh profile: it sends the request, waits for the answer and sets the
profile up (identity, contacts, groups), registers and syncs.  History is
not copied: messages sent before the link stay on the devices that had them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from e2e_recall import verify_device_certificate
from e2e_recall.auth import relay_fingerprint
from e2e_recall.device_admin import sign_device_revocation
from e2e_recall.errors import E2ERecallError
from e2e_recall.report import format_time

from . import account
from .client import Client
from .core import Core
from .device_notes import notes_for
from .errors import ClientError, NotFound, UsageProblem
from .key_commands import KEY_ACTIONS, add_key_actions, run_keys
from .linking import LinkFailed, LinkOffer, join, short_device
from .render import print_json

__all__ = ["add_device_parser", "print_device_notes", "run_device", "run_join"]

_WAKE_SECONDS = 2.0  # between polls when no link event arrives


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

    core, problems = await join(
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
    client = Client(core)
    try:
        await client.sync()
        ids = client.whoami()
        result = {
            "user_id": ids["user_id"],
            "device_id": ids["device_id"],
            "relay": ids["relay"],
            "contacts": len(client.contacts()),
            "groups": len(list_group_ids(core)),
            "problems": problems,
        }
        if args.json:
            _line(out, result)
        else:
            out.print(f"This computer is now your device {short_device(core.device_id)}.")
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


def list_group_ids(core: Core) -> list[bytes]:
    from .group_store import list_groups

    return [g.group_id for g in list_groups(core.store) if g.member]


async def run_device(
    client: Client, args: argparse.Namespace, out: Console, timeout_ms: int
) -> int:
    if args.action == "link":
        return await _link(client, args, out, timeout_ms)
    if args.action in KEY_ACTIONS:
        return await run_keys(client, args, out)
    if args.action == "list":
        devices = await _devices(client.core)
        if args.json:
            print_json(out, devices)
        else:
            for d in devices:
                flags = " (this device)" if d["this_device"] else ""
                if d["revoked_at"] is not None:
                    flags += f" revoked on {format_time(d['revoked_at'])}"
                out.print(
                    f"{d['device_id'][:8]}  linked {format_time(d['created_at'])}{flags}",
                    markup=False,
                )
        return 0
    if args.action == "revoke":
        return await _revoke(client, args, out)
    raise UsageProblem(f"Unknown device action {args.action!r}.", "bad_command")


async def _devices(core: Core) -> list[dict[str, Any]]:
    answer = await account.authed(core, "GET", "/v1/devices")
    identity = core.keys.identity.public_key
    listed = []
    for d in answer.get("devices") or ():
        try:  # the relay's listing, checked: only certificates our identity signed
            cert = verify_device_certificate(d["certificate"], identity, now=d["created_at"])
        except (E2ERecallError, KeyError, TypeError):
            continue
        listed.append(
            {
                "device_id": cert.device_id.hex(),
                "created_at": d["created_at"],
                "revoked_at": d.get("revoked_at"),
                "this_device": cert.device_id == core.device_id,
                "wrap_suite": cert.wrap_key.suite.name.lower(),
            }
        )
    return listed


async def _revoke(client: Client, args: argparse.Namespace, out: Console) -> int:
    core = client.core
    prefix = args.device.strip().lower()
    if len(prefix) < 4 or len(prefix) > 32 or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageProblem(f"{args.device!r} is not a device id (4 to 32 hex digits).", "bad_id")
    found = [d for d in await _devices(core) if d["device_id"].startswith(prefix)]
    if not found:
        raise NotFound(f"None of your devices has an id starting {prefix}.", "no_device")
    if len(found) > 1:
        raise UsageProblem(f"{prefix} matches several devices; type more digits.", "ambiguous")
    (target,) = found
    if target["this_device"]:
        raise UsageProblem(
            "That is this device; revoke it from another of your devices.", "revoke_self"
        )
    device_id = bytes.fromhex(target["device_id"])
    revocation = sign_device_revocation(
        core.keys.identity,
        device_id=device_id,
        revoked_at=core.clock(),
        relay=relay_fingerprint(core.relay_key),
    )
    answer = await account.authed(
        core, "POST", f"/v1/devices/{device_id.hex()}/revoke", {"revocation": revocation.signed}
    )
    result = {
        "device_id": device_id.hex(),
        "revoked_at": answer["revoked_at"],
        "already_revoked": bool(answer["already_revoked"]),
        "wraps_destroyed": answer["wraps_destroyed"],
    }
    if args.json:
        print_json(out, result)
    elif result["already_revoked"]:
        out.print(f"Device {short_device(device_id)} was already revoked.")
    else:
        out.print(
            f"Revoked device {short_device(device_id)}: it can no longer log in, nothing more "
            f"is wrapped to it, and {result['wraps_destroyed']} message key(s) waiting for it "
            "were destroyed (it will never read those). Your contacts' devices see the change."
        )
    return 0


async def _wait_for_request(client: Client, offer: LinkOffer) -> Any:
    """The checked request: each ``link`` event wakes the wait, polling covers the rest."""
    wake, stop = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        with contextlib.suppress(ClientError):
            async with contextlib.aclosing(client.watch(stop)) as updates:
                async for update in updates:
                    if update.kind == "link" and update.message_id == offer.keys.link_id:
                        wake.set()
                    elif update.kind == "displaced":
                        return

    listener = asyncio.create_task(listen())
    try:
        while client.core.clock() < offer.expires_at:
            request = await offer.poll_request()
            if request is not None:
                return request
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), _WAKE_SECONDS)
            wake.clear()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, ClientError):
            await asyncio.wait_for(listener, 5)
    raise LinkFailed("No new device used the code in time; run 'device link' again.", "timeout")


async def _link(client: Client, args: argparse.Namespace, out: Console, timeout_ms: int) -> int:
    core = client.core
    await client.sync()
    offer = await LinkOffer.open(core, min(timeout_ms, 10 * 60 * 1000))
    url = core.relay.url
    if args.json:
        _line(out, {"code": offer.code, "relay": url, "expires_at": offer.expires_at})
    else:
        out.print("On the new device, run:", markup=False)
        out.print(f"  e2e-recall device join {offer.code} {url}", markup=False)
        out.print(
            "Only type this code on a device of your own: it gives that device your identity.",
            markup=False,
        )
    request = await _wait_for_request(client, offer)
    name = short_device(request.device_id)
    if not args.json:
        out.print(f"Device {name} asked to join; it should show the same id.", markup=False)
    await offer.answer(request)
    registered = await offer.registered(request.device_id, core.clock() + 60_000)
    if args.json:
        _line(out, {"linked": name, "device_id": request.device_id.hex(), "registered": registered})
    elif registered:
        out.print(f"Linked device {name}.", markup=False)
    else:
        out.print(
            f"Device {name} got its answer but has not registered with the relay yet.",
            markup=False,
        )
    return 0 if registered else 1
