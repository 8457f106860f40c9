"""The bench's options for the relays it starts: how many processes, on which database.

Kept apart from :mod:`.options` (the run's shape) so each module stays one
screenful of checks.  ``--processes N`` starts N ``serve`` processes on one
database and one data directory; ``--database-url`` names that database,
and ``--postgres`` has the bench start a throwaway PostgreSQL server for it.
As everywhere in the bench, a wrong combination is one sentence
(:class:`BenchUsageError`) before anything starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .errors import BenchUsageError

__all__ = ["MAX_PROCESSES", "RelaySetup", "add_relay_arguments", "redact", "relays_from_args"]

MAX_PROCESSES = 16


@dataclass(frozen=True)
class RelaySetup:
    """How many relay processes the bench starts, and the database they share."""

    processes: int = 1
    database_url: str | None = None  # None: SQLite in the run's data directory (or --postgres)
    postgres: bool = False  # start a throwaway PostgreSQL server for the run

    @property
    def backend(self) -> str:
        """``postgresql`` or ``sqlite``: what the started relays store their rows in."""
        if self.postgres or is_postgres(self.database_url or ""):
            return "postgresql"
        return "sqlite"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password, fit to print: the figures may be shared."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def add_relay_arguments(target: argparse._ArgumentGroup) -> None:
    """``--processes``, ``--database-url`` and ``--postgres``, with their help."""
    target.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="start N relay processes on one database and one data directory (the same "
        "relay key), each on its own port; each user's devices talk to them in turn, so a "
        "send through one process is pushed to a device connected to another (on SQLite the "
        "processes do not tell each other of queued events: use PostgreSQL to measure that) "
        f"(1 to {MAX_PROCESSES}; default: 1)",
    )
    target.add_argument(
        "--database-url",
        metavar="URL",
        help="run the started relays on this database: sqlite:///PATH or "
        "postgresql://USER@HOST/DB; the bench's users stay in it afterwards (default: SQLite "
        "in the run's temporary data directory)",
    )
    target.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway PostgreSQL server from the installed binaries (initdb, pg_ctl; "
        "on a Unix socket, fsync on) and run the started relays on it; it is removed after "
        "the run",
    )


def relays_from_args(args: argparse.Namespace) -> RelaySetup:
    """Check the three together, and against ``--url`` and ``--prefill``."""
    processes = args.processes
    if not 1 <= processes <= MAX_PROCESSES:
        raise BenchUsageError(f"--processes must be from 1 to {MAX_PROCESSES}, not {processes}.")
    url = args.database_url
    started_elsewhere = args.url is not None
    if started_elsewhere and (processes != 1 or url is not None or args.postgres):
        flag = "--processes" if processes != 1 else "--database-url" if url else "--postgres"
        raise BenchUsageError(f"{flag} is for the relays the bench starts, not with --url.")
    if url is not None and args.postgres:
        raise BenchUsageError(
            "--database-url and --postgres both choose the database; give one of them."
        )
    if url is not None and not (url.startswith("sqlite:///") or is_postgres(url)):
        raise BenchUsageError(
            f"--database-url: {redact(url)!r} is not sqlite:///PATH or postgresql://USER@HOST/DB."
        )
    if args.prefill and (url is not None or args.postgres):
        raise BenchUsageError(
            "--prefill writes into the SQLite database the bench makes itself, not into "
            "--database-url or --postgres."
        )
    return RelaySetup(processes=processes, database_url=url, postgres=bool(args.postgres))
