"""``e2e-recall``: the desktop command line.

    e2e-recall init                      create an identity and this device (asks a passphrase)
    e2e-recall register URL [--handle H] register with a relay
    e2e-recall whoami                    your user id, device and relay
    e2e-recall contacts add NAME WHO     pin a contact by handle or user id
    e2e-recall contacts list|verify|accept|remove NAME
    e2e-recall send NAME [--file PATH]... [--expire AFTER] [--expire-from F] TEXT...
                                         send to a contact or a group (TEXT from stdin when
                                         omitted without files); --expire makes it disappear
    e2e-recall expire NAME AFTER|off [--from sent|opened]
                                         the timer of later messages to NAME (30s, 5m, 1h,
                                         1d, 1w; counted from sending unless --from opened)
    e2e-recall inbox                     sealed messages: sender and time, never a preview
    e2e-recall open MSG [--downloads DIR]
                                         release the key, show the message, save its files
    e2e-recall recall MSG [--replace T]  recall, optionally replacing it with a correction
    e2e-recall report MSG [--follow] [--details]
                                         what the recall did, per recipient device (for a
                                         group: counts and a line per member; --details
                                         shows every device)
    e2e-recall watch                     live messages, recalls and report changes
    e2e-recall history NAME              the conversation with NAME (a contact or a group)
    e2e-recall group create NAME CONTACT...
                                         a group of you and these contacts; you are its admin
    e2e-recall group add|remove NAME MEMBER...
                                         change the members (admins only)
    e2e-recall group leave NAME          leave it; you get none of its later messages
    e2e-recall group list [NAME]         your groups, or one group's members and admins
    e2e-recall group rename NAME NEW     rename it on this device only
    e2e-recall device link [--timeout 10m]
                                         show a one-time code that links a new device to you
    e2e-recall device join CODE RELAY_URL
                                         on a new profile: become one of your devices (your
                                         identity, contacts and groups; history is not copied)
    e2e-recall device list               your devices, this one marked, revoked ones dated
    e2e-recall device revoke DEVICE      withdraw one of your other devices (4+ hex digits)
    e2e-recall device rotate             rotate this device's wrapping key now (it also rotates
                                         by itself, weekly, before talking to the relay)
    e2e-recall device keys [--every D] [--lifetime D]
                                         the wrapping keys kept; set the rotation schedule
    e2e-recall delete MSG                delete on this device only
    e2e-recall sync                      send what is queued and fetch what is waiting
    e2e-recall demo                      the whole story, with a relay of its own
    e2e-recall bench [--runs N]          the client's crypto cost against the bare primitives

Profiles: --profile DIR or E2E_RECALL_PROFILE (default: the platform's user
data directory).  Passphrase: prompted, or --passphrase-file FILE, or
E2E_RECALL_PASSPHRASE for scripts.  Wrapping-key rotation: every 7 days,
keys living 14 days, unless the profile sets otherwise (device keys) or
E2E_RECALL_ROTATE_EVERY / E2E_RECALL_KEY_LIFETIME say (e.g. 7d, 14d);
--rotate-every D does it for one command.

Disappearing messages: a timer in the signed header (--expire AFTER, or the
conversation's from 'expire NAME') makes every device delete its copy (text
and saved files) and the relay destroy the ciphertext, AFTER the message was
sent (default; your own copy always counts from sending) or, with
--expire-from opened, after each device opened it (an unopened copy stays
sealed at the relay until its retention ends). Every command first deletes
copies whose time has passed, so an offline device deletes before it shows
anything, and watch deletes them at the moment. Deleted copies show as
expired; nothing can stop a reader's screenshots.

Exit codes: 0 done; 1 refused or failed (the sentence says why, e.g. a group
change only an admin may make, or opening a message that expired); 2 bad
usage, unknown contact, group or message, or no relay yet; 3 relay
unreachable (anything sent is queued and retried later); 4 keystore or
profile problem, or wrong passphrase; 5 trust problem (a changed identity or
relay key, or a group chain from the relay that does not verify); 6 another
session of this device took over the live connection (watch, report
--follow); 7 this device was revoked by another of your devices; 130
interrupted.

JSON (--json) for scripts; these keys are stable, and one that does not
apply is null:
  whoami          {user_id, fingerprint, device_id, wrap_suite, handle, relay,
                  profile}
  contacts list   [{name, handle, user_id, verified, key_changed, expire}]
                  (expire: {after_ms, from}, the conversation's timer, or null)
  expire          {name, expire}
  send            {id, queued, problem}
  inbox, history  [{id, contact, group, direction, sent_at, state, text,
                  replaces, replaced_by, problem, expires_at, files: [{name,
                  size, media_type, saved_at}]}] (text is null and files empty
                  until opened; group is the group's name, null for a direct
                  message; contact is the sender, or the group for your own;
                  expires_at is when this copy is deleted, null without a
                  timer or, counted from opening, until opened; state expired
                  once it was)
  open, read      {id, contact, group, direction, sent_at, state, text,
                  replaces, replaced_by, problem, expires_at, files} (files
                  as in inbox)
  report          {message_id, state, sent_at, recalled_at, relay_receipt,
                  group, counts, files: {count, bytes, destroyed}, devices:
                  [{person, device, state, sentence, attested_by, receipt,
                  files_downloaded}]} (every device, with its person, also for
                  a group; counts maps each state present to its number of
                  devices; with --follow, one line per change;
                  files_downloaded is null for a message without files)
  recall          {message_id, state, sent_at, recalled_at, relay_receipt,
                  group, counts, files, devices, already_recalled,
                  replacement_id, local_only, expired} (devices as in report;
                  expired: its timer had destroyed it, nothing was recalled)
  group           {name, group_id, seq, member, admin, expire, members: [{user_id,
                  name, admin, you}]} (group create, add, remove, leave and
                  rename print the group after the change; member and admin
                  are about you)
  group list      [{name, group_id, seq, member, admin, expire, members}]
                  (members as in group; one group with NAME; expire as in
                  contacts list)
  sync            {updates: [{kind, id, contact, detail}], queued} (for kind
                  group, id is the group id and contact the group's name; for
                  kind device, id is the device id, contact the contact whose
                  devices changed or "you", detail the sentence)
  device link     {code, relay, expires_at} on a first line at once, then
                  {linked, device_id, registered} on a second when the new
                  device has joined
  device join     {user_id, device_id, relay, contacts, groups, problems}
  device list     [{device_id, created_at, revoked_at, this_device,
                  wrap_suite}]
  device revoke   {device_id, revoked_at, already_revoked, wraps_destroyed}
  watch           {kind, id, contact, detail}, one line per update
  device rotate   {key_id, created_at, expires_at, deleted} (deleted: the ids
                  of old keys deleted because nothing needs them any more)
  device keys     {rotate_every, lifetime, keys: [{key_id, state, created_at,
                  expires_at, usable_until}]} (state: current, previous or
                  pending; usable_until: when the relay stops accepting wraps
                  to a previous key; times in ms)
  bench           {runs, body_bytes, machine: {cpu, cores, python, cryptography,
                  pynacl, msgpack}, results: [{suite, path, devices, client:
                  {median_us, p90_us, runs, batch}, bare: {median_us, p90_us,
                  runs, batch}, ratio, target, met}], primitives: [{name,
                  median_us, p90_us, runs, batch}]} (path: send, receive, group
                  or group_cold; ratio is client/bare of the medians)
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys

from rich.console import Console

from e2e_recall.errors import E2ERecallError

from .bench import SUITES
from .commands import run_command
from .device_commands import add_device_parser
from .errors import ClientError, KeystoreError
from .expire_commands import add_expire_parser, add_send_timer_options
from .group_commands import add_group_parser

__all__ = ["build_parser", "main"]


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _common(default: object) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command name.

    Subcommands use SUPPRESS as default so that an option given before the
    command is not overwritten by the subcommand's own default.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile",
        metavar="DIR",
        default=default,
        help="profile directory (env E2E_RECALL_PROFILE; default: the user data directory)",
    )
    common.add_argument(
        "--passphrase-file",
        metavar="FILE",
        default=default,
        help="read the passphrase from FILE (or set E2E_RECALL_PASSPHRASE; default: prompt)",
    )
    common.add_argument(
        "--rotate-every",
        metavar="DURATION",
        default=default,
        help="rotate the wrapping key when it is this old, for this command only "
        "(default: the profile's setting, 7d)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="e2e-recall",
        description="End-to-end encrypted messages you can recall, with an honest report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
        parents=[_common(None)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", parents=[common], help="create an identity and this device")
    init.add_argument(
        "--suite",
        choices=("x25519", "xwing"),
        default="x25519",
        help="key wrapping: x25519 (default) or the post-quantum hybrid xwing",
    )
    init.add_argument(
        "--kdf",
        choices=("interactive", "moderate", "sensitive"),
        default="moderate",
        help="Argon2id cost for the keystore (default moderate)",
    )

    register = sub.add_parser("register", parents=[common], help="register with a relay")
    register.add_argument("url", help="the relay, e.g. http://127.0.0.1:8765")
    register.add_argument("--handle", help="a public name others can find you by")

    _json(sub.add_parser("whoami", parents=[common], help="show your ids"))

    contacts = sub.add_parser("contacts", parents=[common], help="manage contacts")
    csub = contacts.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = csub.add_parser("add", parents=[common], help="pin a contact by handle or user id")
    add.add_argument("name")
    add.add_argument("who", help="their handle or 64-hex-digit user id")
    _json(csub.add_parser("list", parents=[common], help="list contacts"))
    verify = csub.add_parser("verify", parents=[common], help="show and confirm the safety number")
    verify.add_argument("name")
    verify.add_argument(
        "--confirm", action="store_true", help="record that you compared the number out of band"
    )
    for name, text in (("accept", "accept a changed identity key"), ("remove", "remove")):
        csub.add_parser(name, parents=[common], help=text).add_argument("name")

    send = sub.add_parser("send", parents=[common], help="send a message")
    send.add_argument("name")
    send.add_argument(
        "text",
        nargs="*",
        help="the message (read from stdin when omitted, unless files are sent)",
    )
    send.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="attach this file (repeat for several, at most 16); encrypted here, "
        "recalled with the message",
    )
    send.add_argument(
        "--recall-window",
        default="30d",
        metavar="DURATION",
        help="how long you may recall it while unread (default 30d)",
    )
    send.add_argument(
        "--opened-window",
        default="1h",
        metavar="DURATION",
        help="how long you may recall it once opened (default 1h)",
    )
    add_send_timer_options(send)
    _json(send)
    add_expire_parser(sub, common)

    _json(sub.add_parser("inbox", parents=[common], help="sealed messages waiting"))
    for name in ("open", "read"):
        opener = sub.add_parser(name, parents=[common], help="open and show a message")
        opener.add_argument("message")
        opener.add_argument(
            "--downloads",
            metavar="DIR",
            help="save attached files here (default: E2E_RECALL_DOWNLOADS, or your "
            "downloads folder); an existing file is never overwritten",
        )
        _json(opener)

    recall = sub.add_parser("recall", parents=[common], help="recall a message you sent")
    recall.add_argument("message")
    recall.add_argument("--replace", metavar="TEXT", help="send this correction in its place")
    _json(recall)

    report = sub.add_parser("report", parents=[common], help="per-device report of a message")
    report.add_argument("message")
    report.add_argument("--follow", action="store_true", help="keep watching it change")
    report.add_argument(
        "--details", action="store_true", help="for a group message: every device, not counts"
    )
    report.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --follow: stop after this long"
    )
    _json(report)

    watch = sub.add_parser("watch", parents=[common], help="live stream of what happens")
    watch.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    _json(watch)

    history = sub.add_parser("history", parents=[common], help="a conversation")
    history.add_argument("name")
    _json(history)

    sub.add_parser("delete", parents=[common], help="delete on this device only").add_argument(
        "message"
    )
    _json(sub.add_parser("sync", parents=[common], help="send queued, fetch waiting"))
    add_group_parser(sub, common)
    add_device_parser(sub, common)
    demo = sub.add_parser("demo", help="play the whole story with a relay of its own")
    demo.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait between scenes (default 0)",
    )
    bench = sub.add_parser(
        "bench",
        help="time the client's send and receive cryptography against the bare primitives",
        description="Time the client's send path, receive path and group sends (2, 16, 64 "
        "and 256 devices) against the bare primitive calls, in the same run. Local work "
        "only: no relay is started or contacted, and no profile is used.",
    )
    bench.add_argument(
        "--runs",
        type=int,
        default=100,
        metavar="N",
        help="timed batches per figure (default 100); the median and p90 are over these",
    )
    bench.add_argument(
        "--suite",
        choices=tuple(SUITES),
        help="only this wrapping suite (default: both x25519 and xwing)",
    )
    _json(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # "send NAME --file A some text": argparse gives the words after an option to
    # nobody, so the words left over are the message's text, in their order.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "send" or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.text = [*(args.text or []), *extra]
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # a sentence stays one line
    try:
        return asyncio.run(run_command(args, out, err))
    except ClientError as exc:
        err.print(f"error: {exc.sentence}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    # The last line of defence: whatever slipped past the typed errors is still one sentence.
    except E2ERecallError as exc:
        err.print(f"error: {exc.sentence.rstrip('.')}.", markup=False)
        return 1
    except sqlite3.Error as exc:
        err.print(f"error: The profile's database could not be used ({exc}).", markup=False)
        return KeystoreError.exit_code
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"error: {exc.strerror or exc}{where}.", markup=False)
        return 1
    except Exception as exc:  # never a traceback; the type is enough to report it
        err.print(f"error: e2e-recall failed unexpectedly ({type(exc).__name__}).", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
