"""``e2e-recall device rotate|keys``: this device's wrapping keys (client/rotation.py).

The other ``device`` actions (link, join, list, revoke) are in device_commands.py,
which adds these two to its parser and hands them here.

Rotation happens by itself before any command that talks to the relay; these
commands force one now, show which keys the device still keeps and why, and
set the profile's schedule.  No key material is ever printed: key ids and
dates only.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from rich.console import Console

from .client import Client
from .render import print_json

__all__ = ["KEY_ACTIONS", "add_key_actions", "run_keys"]

KEY_ACTIONS = ("rotate", "keys")


def add_key_actions(dsub: Any, common: argparse.ArgumentParser) -> None:
    """The rotation actions of the ``device`` command."""
    rotate_parser = dsub.add_parser(
        "rotate", parents=[common], help="rotate the wrapping key now and delete unneeded old keys"
    )
    rotate_parser.add_argument("--json", action="store_true", help="machine-readable output")
    keys = dsub.add_parser(
        "keys", parents=[common], help="the wrapping keys kept, and the rotation schedule"
    )
    keys.add_argument(
        "--every",
        metavar="DURATION",
        help="keep this rotation period as the profile's setting (default 7d)",
    )
    keys.add_argument(
        "--lifetime",
        metavar="DURATION",
        help="keep this key lifetime as the profile's setting (default 14d, at most 90d)",
    )
    keys.add_argument("--json", action="store_true", help="machine-readable output")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


async def run_keys(client: Client, args: argparse.Namespace, out: Console) -> int:
    from .commands import parse_duration  # commands dispatches here

    if args.action == "rotate":
        done = await client.rotate_keys()
        deleted = done.deleted
        if args.json:
            print_json(
                out,
                {
                    "key_id": done.key_id.hex(),
                    "created_at": done.created_at,
                    "expires_at": done.expires_at,
                    "deleted": [key_id.hex() for key_id in deleted],
                },
            )
        else:
            out.print(
                f"Rotated: new wrapping key {done.key_id.hex()[:16]}, "
                f"valid until {_when(done.expires_at)}.",
                markup=False,
            )
            out.print(f"Old keys deleted: {len(deleted)}.", markup=False)
        return 0
    if args.every or args.lifetime:
        client.set_key_schedule(
            parse_duration(args.every) if args.every else None,
            parse_duration(args.lifetime) if args.lifetime else None,
        )
    plan, keys = client.key_schedule(), client.wrap_keys()
    if args.json:
        print_json(
            out, {"rotate_every": plan.rotate_every, "lifetime": plan.lifetime, "keys": keys}
        )
        return 0
    day = 24 * 3600 * 1000
    out.print(
        f"Rotates every {plan.rotate_every / day:g} days; each key lives "
        f"{plan.lifetime / day:g} days.",
        markup=False,
    )
    for key in keys:
        until = (
            f", wraps accepted until {_when(key['usable_until'])}" if key["usable_until"] else ""
        )
        out.print(
            f"{key['state']:>8}  {key['key_id'][:16]}  made {_when(key['created_at'])}, "
            f"expires {_when(key['expires_at'])}{until}",
            markup=False,
        )
    return 0
