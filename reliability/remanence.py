"""The remanence suite, long form: ``python reliability/remanence.py --messages 1000``.

Sends distinctive messages to a relay process, most with attachments of
several sizes, abandons some uploads (halfway, or finished and never sent),
recalls every message, lets the relay's own checkpoint, purge job, scrub and
upload expiry run, and scans every byte it keeps (database, WAL, SHM, key,
logs, the blob directory with partial/ and complete/; with ``--postgres``
every file of the PostgreSQL server's data directory, and its log, instead
of the SQLite files) for any 16-byte window
of any ciphertext, wrap or blob (method: tests/support/remanence_harness.py).
Exits 1 on any hit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import paths  # noqa: F401  (puts tests/support on the import path)
from remanence_harness import remanence_suite
from remanence_pg_steps import run_steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=30.0, help="most seconds to wait")
    parser.add_argument("--no-files", action="store_true", help="messages without attachments")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the relay on a PostgreSQL server of its own, whose every file is scanned too",
    )
    parser.add_argument(
        "--postgres-steps",
        action="store_true",
        help="on PostgreSQL, the windows left after each step of a scrub taken by hand",
    )
    args = parser.parse_args(argv)
    if args.postgres_steps:
        with tempfile.TemporaryDirectory(prefix="e2e-recall-remanence-") as work:
            run_steps(Path(work), args.messages)
        return 0
    with tempfile.TemporaryDirectory(prefix="e2e-recall-remanence-") as work:
        findings = asyncio.run(
            remanence_suite(
                Path(work),
                args.messages,
                args.settle,
                files=not args.no_files,
                postgres=args.postgres,
            )
        )
    print(f"database                       {'PostgreSQL' if args.postgres else 'SQLite'}")
    print(f"messages sent and recalled     {findings.messages}")
    print(f"distinct 16-byte windows       {findings.windows}")
    print(f"hits while still stored        {findings.hits_before_recall}")
    print(f"blobs sent and recalled        {findings.blobs_bound}")
    print(f"uploads abandoned (expired)    {findings.blobs_abandoned}")
    print(f"blob bytes                     {findings.blob_bytes}")
    print(f"distinct blob windows          {findings.blob_windows}")
    print(f"blob hits while still stored   {findings.blob_hits_before_recall}")
    print(
        f"blob files before / after      {findings.blob_files_before} / {findings.blob_files_after}"
    )
    print(f"files scanned                  {len(findings.files_scanned)}")
    for name in findings.files_scanned[:60]:
        print(f"  {name}")
    if len(findings.files_scanned) > 60:
        print(f"  ... and {len(findings.files_scanned) - 60} more")
    print(f"bytes scanned                  {findings.bytes_scanned}")
    print(f"seconds until clean            {findings.settle_seconds:.1f}")
    scrubs = ", ".join(f"{ms:.0f}" for ms in findings.scrub_ms) or "none"
    print(f"scrubs by the relay (ms)       {scrubs}")
    print(f"hits after recall              {len(findings.hits_after)}")
    for hit in findings.hits_after[:20]:
        print(f"  {hit}", file=sys.stderr)
    return 1 if findings.hits_after else 0


if __name__ == "__main__":
    sys.exit(main())
