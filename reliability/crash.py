"""The crash suite, long form: ``python reliability/crash.py --kills 50 --operations 10000``.

``--postgres`` runs it on a PostgreSQL server of its own, with two relay
processes on the one database (``--relays``), a fifth of the kills aimed at
PostgreSQL itself (``--postgres-kills``; see tests/support/crash_pgkill.py).

Runs the relay as a process under a mixed load (with attachments: uploads
in several PATCHes, sends that bind them, downloads, recalls that destroy
them; groups: membership changes, group sends and recalls; disappearing
messages with timers of 1 to 3 s, from sent or from opened; one device
revoked half-way through; devices linked through link slots; wrapping keys
rotated with short-lived certificates), SIGKILLs it at random and aimed
moments, restarts it, and checks that nothing acknowledged was lost and
nothing recalled or expired came back, blobs and their files and group
chains included, that the revoked device gets nothing, that no device exists
without an acknowledged approval, and that wraps follow the key rule (see
tests/support/crash_harness.py, crash_blobs.py, crash_groups.py,
crash_timers.py, crash_revoke.py, crash_linking.py and crash_rotation.py for
the method).  Prints the table of
figures that docs/reliability.md records, and exits 1 if any "lost",
"resurrected" or similar count is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

import paths  # noqa: F401  (puts tests/support on the import path)
from crash_harness import CrashConfig, crash_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--people", type=int, default=6)
    parser.add_argument("--devices", type=int, default=2, help="devices per person")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-blobs",
        action="store_true",
        help="leave attachments out of the workload (uploads, downloads, kills aimed at them)",
    )
    parser.add_argument(
        "--groups", type=int, default=2, help="groups changed, sent to and recalled from (0: none)"
    )
    parser.add_argument(
        "--no-timers",
        action="store_true",
        help="leave disappearing-message timers out (timed sends, kills aimed at their moments)",
    )
    parser.add_argument(
        "--no-revoke",
        action="store_true",
        help="do not revoke a device half-way through (nor aim a kill at the revocation)",
    )
    parser.add_argument(
        "--no-linking",
        action="store_true",
        help="link no devices (no link slots, nor kills aimed at their steps)",
    )
    parser.add_argument(
        "--no-rotation",
        action="store_true",
        help="rotate no wrapping keys (nor aim kills at certificate uploads)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run the relays on a PostgreSQL server of the run's own (initdb in a temporary "
        "directory; needs PostgreSQL's server programs) instead of SQLite",
    )
    parser.add_argument(
        "--relays",
        type=int,
        default=None,
        help="relay processes on the one database, each client request going to either "
        "(default: 2 with --postgres, else 1)",
    )
    parser.add_argument(
        "--postgres-kills",
        type=int,
        default=None,
        help="of the kills, how many SIGKILL PostgreSQL's postmaster instead of a relay process "
        "(default with --postgres: a fifth of them)",
    )
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    if not args.postgres and ((args.relays or 1) > 1 or args.postgres_kills):
        parser.error("--relays above 1 and --postgres-kills need --postgres")
    relays = args.relays or (2 if args.postgres else 1)
    postgres_kills = args.postgres_kills
    if postgres_kills is None:
        postgres_kills = args.kills // 5 if args.postgres else 0
    config = CrashConfig(
        operations=args.operations,
        kills=args.kills,
        people=args.people,
        devices_per_person=args.devices,
        workers=args.workers,
        seed=args.seed,
        blobs=not args.no_blobs,
        groups=args.groups,
        timers=not args.no_timers,
        revoke=not args.no_revoke,
        linking=not args.no_linking,
        rotation=not args.no_rotation,
        postgres=args.postgres,
        relays=relays,
        postgres_kills=postgres_kills,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        findings = asyncio.run(crash_suite(args.keep, config))
    else:
        with tempfile.TemporaryDirectory(prefix="e2e-recall-crash-") as work:
            findings = asyncio.run(crash_suite(Path(work), config))
    if args.json:
        # not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs
        plain = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(findings).items()}
        print(json.dumps(plain, indent=2, sort_keys=True, default=str))
    else:
        backend = f"PostgreSQL, {relays} relay processes" if args.postgres else "SQLite"
        table = Table(title=f"crash suite, {backend}, seed {args.seed}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for name, value in findings.table():
            table.add_row(name, value)
        Console().print(table)
        for refusal, count in sorted(findings.refusals.items()):
            print(f"refused {count:5d}  {refusal}")
        for name, values in findings.problems().items():
            print(f"{name}: {values[:20]}", file=sys.stderr)
    return 1 if findings.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
