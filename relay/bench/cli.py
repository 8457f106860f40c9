"""``e2e-recall-relay bench``: the subcommand's parser and its one entry point.

:func:`add_parser` hangs the command on ``e2e-recall-relay``'s parser;
:func:`run` checks the options, runs the bench and prints the figures.
Every expected failure is a sentence on stderr and an exit code: 0 the run
was measured, 1 it could not be (the relay did not start or answer, no
operation succeeded), 2 an option is wrong; 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import BenchError, BenchFailed
from .options import add_arguments, options_from_args

__all__ = ["add_parser", "run"]

WIDTH = 120
"""Columns of the tables when stdout is not a terminal (rich would assume 80 and wrap)."""

DESCRIPTION = """\
Measure what a relay sustains: register --users users with --devices devices
each, hold every device's WebSocket open, and drive a mix of sends, opens and
recalls at --rate (or flat out with --concurrency in flight) for --duration.
Recipient devices fetch what they are told of and answer each recall with a
signed deletion receipt, as the client does.

Printed (or --json): operations per second by kind; latency p50, p90, p99 and
max of the send acknowledgement, open, recall acknowledgement and recall
propagation (from the recall request until the recipient device's signed
deletion receipt was accepted); errors by code; the relay's CPU seconds and
peak RSS (n/a with --url). --baseline adds a bare aiohttp HTTP endpoint and
WebSocket echo measured in the same run, and the relay's sends as a share
of that ceiling.

By default the bench starts its own relay (python -m relay.cli serve) on
127.0.0.1 with a temporary data directory (--processes N: N of them on one
database and that one directory, each user's devices spread over them in
turn; --database-url or --postgres: on PostgreSQL), and lifts its rate limits
(requests_per_minute, address_requests_per_minute,
recalls_per_conversation_per_day 0, a user_quota no run reaches).
"""

EPILOG = """\
The load generator runs in --workers processes; on a 2-core machine they
share the cores with the relay, so more workers can lower the relay's
figures: watch the generator's CPU seconds beside the relay's.

JSON keys: settings, machine, relay_url, started_relay, window_seconds,
operations {KIND: {count, per_second}} for send, open, recall, fetch, receipt,
group_send, group_recall; requests_per_second; latency_ms {KIND: {count, p50,
p90, p99, max, mean} or null} for send, open, recall, propagation, group_send,
group_recall, group_propagation, revocation, fetch, receipt, expiry;
propagation {measured, group_measured, pending}; errors {CODE: n};
errors_by_kind; starved; relay {pid, processes, cpu_seconds, cpu_cores,
peak_rss_bytes} (the started relay processes together, null with --url; pid
only with one process); relays [{name, url, pid, cpu_seconds, cpu_cores,
peak_rss_bytes}] (each process, empty with --url); relay_urls; backend {kind
(sqlite or postgresql), started_server, version, database} (null with
--url); machine_cpu_cores (every process on the machine during the
window); generator {workers, cpu_seconds, cpu_cores, websockets, groups,
sealed_ahead, sealed_during_run, behind_schedule_ms}; baseline (null without
--baseline) {http, websocket: {count, per_second, latency_ms, errors, server,
generator_cpu_seconds, machine_cpu_cores}, send_share_of_http,
requests_share_of_http}.

Exit codes: 0 measured, 1 the run could not be carried out, 2 bad options.
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the subcommands of ``e2e-recall-relay``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure a relay: throughput, latency, recall propagation, CPU and RSS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the bench with the parsed ``args`` and print the figures."""
    # Here, not at the top: ``e2e-recall-relay serve`` loads this module too.
    from rich.console import Console

    from .progress import display_for
    from .report import figures, render
    from .runner import run_bench

    try:
        options = options_from_args(args)
        display = display_for(options.json)
        run = run_bench(options, display)
        shown = figures(options, run)
        if not any(op["count"] for op in shown["operations"].values()):
            common = next(iter(shown["errors"]), "no answer")
            raise BenchFailed(f"No operation succeeded; the most common error was {common}.")
        if options.plot is not None:
            from .plot import draw

            draw(options.plot, run.relay.samples, f"e2e-recall-relay bench at {run.relay_url}")
    except BenchError as exc:
        print(f"e2e-recall-relay bench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("e2e-recall-relay bench: interrupted; nothing was measured.", file=sys.stderr)
        return 130
    if options.json:
        print(json.dumps(shown, indent=2))
    else:
        render(shown, Console() if sys.stdout.isatty() else Console(width=WIDTH))
        if options.plot is not None:
            print(f"plot written to {options.plot}")
    return 0
