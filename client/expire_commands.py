"""``e2e-recall expire NAME AFTER|off`` and the timer options of ``send``.

Kept apart from :mod:`.commands` so that module stays one screen per command;
the timer rules themselves are in :mod:`.expiring`.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from rich.console import Console

from .client import Client
from .errors import UsageProblem
from .expiring import Timer, describe_timer, parse_timer, timer_json
from .render import print_json

__all__ = ["add_expire_parser", "add_send_timer_options", "run_expire", "send_timer"]

_AFTER_HELP = "30s, 5m, 1h, 1d, 1w (1 second to 365d), or off"
_FROM_HELP = (
    "count from 'sent' (default: the same moment for everyone, you included) or from "
    "'opened' (each recipient device counts from its own opening; a copy never opened "
    "stays sealed at the relay until its retention ends; your own copy counts from sending)"
)


def add_send_timer_options(send: argparse.ArgumentParser) -> None:
    send.add_argument(
        "--expire",
        metavar="AFTER",
        help="make it disappear: every copy is deleted this long after sending (or opening, "
        f"with --expire-from opened): {_AFTER_HELP}. Default: the conversation's timer "
        "('e2e-recall expire NAME'); off sends this one without a timer",
    )
    send.add_argument("--expire-from", choices=("sent", "opened"), help=_FROM_HELP)


def send_timer(args: argparse.Namespace) -> Timer | Literal["default"] | None:
    """The timer ``send`` asked for, or "default" for the conversation's own."""
    if args.expire is None:
        if args.expire_from is not None:
            raise UsageProblem("--expire-from needs --expire AFTER.", "bad_expire")
        return "default"
    return parse_timer(args.expire, args.expire_from or "sent")


def add_expire_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    expire = sub.add_parser(
        "expire",
        parents=[common],
        help="set the disappearing-message timer for later messages to NAME",
        description="Later messages you send to NAME (a contact or a group) disappear: "
        "every device deletes its copy, and the relay destroys the ciphertext, when the "
        "time comes. Stored on this device only; messages already sent keep their own "
        "timer. 'send --expire' overrides it for one message.",
    )
    expire.add_argument("name")
    expire.add_argument("after", metavar="AFTER", help=_AFTER_HELP)
    expire.add_argument("--from", dest="expire_from", choices=("sent", "opened"), help=_FROM_HELP)
    expire.add_argument("--json", action="store_true", help="machine-readable output")


def run_expire(client: Client, args: argparse.Namespace, out: Console) -> int:
    timer = parse_timer(args.after, args.expire_from or "sent")
    if timer is None and args.expire_from is not None:
        raise UsageProblem("--from makes no sense with off.", "bad_expire")
    client.set_conversation_timer(args.name, timer)
    if args.json:
        print_json(out, {"name": args.name, "expire": timer_json(timer)})
    elif timer is None:
        out.print(
            f"Messages you send to {args.name} from now on do not disappear. Messages "
            "already sent keep their own timer.",
            markup=False,
        )
    else:
        out.print(
            f"Messages you send to {args.name} from now on disappear {describe_timer(timer)}: "
            "every device deletes its copy then, and the relay destroys what it holds. "
            "Messages already sent keep their own timer.",
            markup=False,
        )
    return 0
