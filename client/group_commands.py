"""``e2e-recall group ...``: create, add, remove, leave, list and rename groups.

Every action first fetches what waits at the relay (so this device decides on
the group as its members last changed it), then signs and posts the change;
the printed group is the state this device verified afterwards.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from e2e_recall import format_fingerprint

from .client import Client
from .client_groups import members_of
from .errors import RelayUnreachable, UsageProblem
from .expiring import conversation_timer, timer_json
from .group_people import display_name
from .group_store import StoredGroup
from .render import print_json, print_update

__all__ = ["add_group_parser", "group_json", "run_group"]


def add_group_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``group`` command and its actions (cli.py builds the rest)."""
    group = sub.add_parser("group", parents=[common], help="groups: create, add, remove, leave")
    gsub = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = gsub.add_parser(name, parents=[common], help=text)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    create = action("create", "create a group of you and these contacts (you are its admin)")
    create.add_argument("name", help="what the group is called on this device")
    create.add_argument("contacts", nargs="+", metavar="CONTACT")
    add = action("add", "add contacts to a group (admins only)")
    add.add_argument("name")
    add.add_argument("contacts", nargs="+", metavar="CONTACT")
    remove = action("remove", "remove members (admins only); they get no later messages")
    remove.add_argument("name")
    remove.add_argument(
        "contacts",
        nargs="+",
        metavar="MEMBER",
        help="a contact name, a member's handle, or the start of their user id",
    )
    action("leave", "leave a group").add_argument("name")
    listing = action("list", "your groups, or one group's members")
    listing.add_argument("name", nargs="?")
    rename = action("rename", "rename a group on this device only")
    rename.add_argument("name")
    rename.add_argument("new_name")


def group_json(client: Client, group: StoredGroup) -> dict[str, Any]:
    core = client.core
    admins = set(group.admin_ids())
    me = core.user_id
    return {
        "name": group.name,
        "group_id": group.group_id.hex(),
        "seq": group.seq,
        "member": bool(group.member),
        "admin": me in admins,
        "expire": timer_json(conversation_timer(core, group.conversation_id)),
        "members": [member.to_json() for member in members_of(core, group, devices=False)],
    }


def _names(client: Client, group: StoredGroup, *, skip_me: bool = True) -> str:
    people = [
        display_name(client.core, m)
        for m in group.member_ids()
        if not (skip_me and m == client.user_id)
    ]
    return ", ".join(people) or "no one else"


def _print_group(out: Console, client: Client, group: StoredGroup) -> None:
    data = group_json(client, group)
    state = "" if group.member else " (you are no longer a member)"
    out.print(
        f"Group {group.name}{state}: {len(data['members'])} member(s), change {group.seq}.",
        markup=False,
    )
    rows: list[tuple[str, str, str]] = []
    for member in data["members"]:
        flags = [m for m, on in (("admin", member["admin"]), ("you", member["you"])) if on]
        user_id = format_fingerprint(bytes.fromhex(member["user_id"]))[:19]
        rows.append((member["name"], user_id, ", ".join(flags)))
    if not any(m["admin"] for m in data["members"]):
        out.print("It has no admin left: its members can only leave it.")
    if out.is_terminal:
        table = Table()
        for column in ("member", "user id", ""):
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(x) for x in row))
        out.print(table)
        return
    for name, user_id, marks in rows:
        out.print(f"  {name}  {user_id}" + (f"  ({marks})" if marks else ""), markup=False)


def _print_groups(out: Console, client: Client, groups: list[StoredGroup]) -> None:
    if not groups:
        out.print("No groups yet; create one with 'e2e-recall group create NAME CONTACT...'.")
        return
    for group in groups:
        role = "an admin" if client.user_id in group.admin_ids() else "a member"
        if not group.member:
            role = "no longer a member"
        out.print(
            f"{group.name}: {len(group.member_ids())} member(s), you are {role}; "
            f"with {_names(client, group)}",
            markup=False,
        )


async def run_group(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    action = args.action
    if action in ("list", "rename"):
        try:  # from what this device verified if the relay is down
            updates = await client.sync()
            if not args.json:
                for update in updates:
                    print_update(out, update)
        except RelayUnreachable as exc:
            err.print(f"warning: {exc.sentence} Showing what this device already has.")
    else:
        for update in await client.sync():
            if not args.json:
                print_update(out, update)
    if action == "list":
        groups = [client.group(args.name)] if args.name else client.groups()
        if args.json:
            print_json(out, [group_json(client, g) for g in groups])
        elif args.name:
            _print_group(out, client, groups[0])
        else:
            _print_groups(out, client, groups)
        return 0
    if action == "create":
        group = await client.create_group(args.name, args.contacts)
        said = f"Created {group.name} with {_names(client, group)}; you are its admin."
    elif action == "add":
        group = await client.add_members(args.name, args.contacts)
        said = (
            f"Added {', '.join(args.contacts)} to {group.name}. They get what is sent from now "
            "on, none of what was sent before."
        )
    elif action == "remove":
        group = await client.remove_members(args.name, args.contacts)
        said = (
            f"Removed {', '.join(args.contacts)} from {group.name}. Nothing sent from now on is "
            "wrapped to their devices; what they already had stays with them unless recalled."
        )
    elif action == "leave":
        group = await client.leave_group(args.name)
        said = f"You left {group.name}; you will get none of its later messages."
        if not group.admin_ids() and group.member_ids():
            said += " It has no admin left, so its members can only leave it."
    elif action == "rename":
        group = client.rename_group(args.name, args.new_name)
        said = f"{args.name} is now called {group.name} on this device; no one else sees this."
    else:
        raise UsageProblem(f"Unknown group action {action!r}.", "bad_command")
    if args.json:
        print_json(out, group_json(client, group))
    else:
        out.print(said, markup=False)
    return 0
