"""The load suite, long form: ``python reliability/load.py --clients 1000 --seconds 300``.

Holds every client's WebSocket open for the whole run while they send, open
and recall at a steady rate (method: tests/support/load_harness.py); prints
operations, server errors, lost, duplicated and out-of-order messages, and
the recall-to-deletion latency percentiles.  Exits 1 on any error, loss,
duplicate or event out of order.

``--postgres`` puts the relay on a throwaway PostgreSQL server started from
the installed binaries (tests/support/postgres.py), and ``--processes N``
runs N relay processes on that one database with the clients spread across
them, so pushes and recalls cross between processes.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
from pathlib import Path

import paths  # noqa: F401  (puts tests/support on the import path)
from load_harness import LoadConfig, load_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--send-interval", type=float, default=10.0, help="seconds per client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL")
    parser.add_argument("--processes", type=int, default=1, help="relay processes (PostgreSQL)")
    args = parser.parse_args(argv)
    if args.processes != 1 and not args.postgres:
        parser.error("--processes needs --postgres: relay processes share a PostgreSQL database")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 256)), hard))
    config = LoadConfig(
        clients=args.clients,
        seconds=args.seconds,
        send_interval=args.send_interval,
        seed=args.seed,
        backend="postgresql" if args.postgres else "sqlite",
        processes=args.processes,
    )
    with tempfile.TemporaryDirectory(prefix="e2e-recall-load-") as work:
        findings = asyncio.run(load_suite(Path(work), config))
    print(f"backend, relay processes         {config.backend}, {config.processes}")
    print(f"clients connected by websocket   {findings.connected} of {findings.clients}")
    print(f"seconds under load               {findings.seconds:.0f}")
    for kind, count in sorted(findings.operations.items()):
        rate = count / max(findings.seconds, 1e-9)
        print(f"  {kind:<30} {count:8d}  ({rate:.1f}/s)")
    print(f"server errors                    {len(findings.server_errors)}")
    print(f"messages lost                    {len(findings.lost)}")
    print(f"messages duplicated              {len(findings.duplicates)}")
    print(f"events out of order              {len(findings.out_of_order)}")
    print(f"relay peak RSS                   {findings.relay_rss_kib / 1024:.0f} MiB")
    for name, value in findings.percentiles().items():
        print(f"recall-to-deletion {name:<4}          {value:.1f} ms")
    problems = findings.server_errors + findings.lost + findings.duplicates + findings.out_of_order
    for problem in problems[:20]:
        print(f"  {problem}", file=sys.stderr)
    bad = bool(problems)
    return 1 if bad or findings.connected < findings.clients else 0


if __name__ == "__main__":
    sys.exit(main())
