"""How fast the timer job destroys messages alone: ``python -m relay.bench.timer_burst``.

``bench --expire`` measures timers among sends, but on a shared 2-core
machine the load generator (which must seal every timed message as it
sends it) runs out of CPU before the relay's timer job does.  This measures
the job alone: ``--messages`` stored messages (written straight into a new
database with :mod:`.prefill`, each with one undelivered copy) get a
from-sent timer that ends at one moment a few seconds after the relay
starts; the relay process (``serve``, durable commits, the scrub on) then
destroys them, and this process reads the database (read-only) every 20 ms
until no copy is left due.  The figure is messages destroyed per second from
the moment to the last one: the rate above which the job cannot keep up even
with nothing else to do.  Nothing about the relay is changed for it.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import time
from pathlib import Path

from .prefill import prefill
from .processes import ServerProcess, relay_command

__all__ = ["main"]

_LEAD_S = 3.0  # seconds from the relay's start to the moment every timer ends
_POLL_S = 0.02
_GIVE_UP_S = 600.0


def _due(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM deliveries WHERE expires_at IS NOT NULL AND expired_at IS NULL"
        ).fetchone()
    return int(row[0])


def _set_moment(database: Path, moment_ms: int) -> None:
    """Every stored copy's timer ends at ``moment_ms`` (as a from-sent timer would)."""
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("UPDATE deliveries SET expires_at = ?", (moment_ms,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def measure(messages: int, size: int) -> dict[str, float]:
    """Fill, start the relay, wait for the job; the figures."""
    with tempfile.TemporaryDirectory(prefix="e2e-recall-timer-burst-") as name:
        work = Path(name)
        data = work / "data"
        prefill(data, messages, size)
        database = data / "relay.db"
        moment = time.time() + _LEAD_S
        _set_moment(database, int(moment * 1000))
        command = relay_command(work / "relay.port", data, 1, None)
        relay = ServerProcess("relay", command, work, work / "relay.port").start()
        try:
            time.sleep(max(0.0, moment - time.time()))
            cpu_before = relay.cost.cpu_seconds()
            left = messages
            while left:
                if time.time() > moment + _GIVE_UP_S:
                    raise SystemExit(f"gave up: {left:,} copies still due after {_GIVE_UP_S:.0f} s")
                time.sleep(_POLL_S)
                left = _due(database)
            seconds = time.time() - moment
            cpu = relay.cost.cpu_seconds() - cpu_before
        finally:
            relay.stop()
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "per_second": round(messages / seconds, 1),
        "relay_cpu_seconds": round(cpu, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m relay.bench.timer_burst",
        description="Time the relay's timer job destroying --messages messages due at once.",
    )
    parser.add_argument("--messages", type=int, default=5000, help="default: 5000")
    parser.add_argument("--size", type=int, default=1024, help="ciphertext bytes (default 1024)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.size < 1:
        parser.error("--messages and --size must be at least 1")
    shown = measure(args.messages, args.size)
    print(
        f"{shown['messages']:,} messages due at one moment: all destroyed "
        f"{shown['seconds']:.2f} s after it, {shown['per_second']:,.0f} messages/s; "
        f"relay CPU {shown['relay_cpu_seconds']:.2f} s"
    )


if __name__ == "__main__":
    main()
