"""``e2e-recall-relay``: run the relay, and the commands operators need beside it.

    e2e-recall-relay serve            start the relay (defaults: 127.0.0.1:8765, SQLite)
    e2e-recall-relay stats            counts of users, devices, messages by state
    e2e-recall-relay purge-expired    run the retention job and the timer job once, now
    e2e-recall-relay migrate          bring the database schema up to date
    e2e-recall-relay check            integrity check of the database
    e2e-recall-relay key              show the relay's key and id (senders verify receipts with it)
    e2e-recall-relay scrub            rewrite the stored data now: no purged fragment remains
    e2e-recall-relay release-handle H free handle H for a new identity (a user who lost their keys)
    e2e-recall-relay bench            measure a relay: throughput, latency, recall propagation

Every command but ``bench`` takes ``--config FILE`` and every option below;
options also come from ``E2E_RECALL_RELAY_*`` environment variables and the
TOML file (``e2e-recall-relay bench --help`` lists the bench's own options).
Exit codes: 0 success, 1 the command failed (for ``check``: problems found),
2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from e2e_recall.identity import fingerprint

from .bench import cli as bench_cli
from .config import OPTIONS, Config, ConfigError, load_config
from .logs import configure_logging
from .metrics import Metrics
from .relay_key import RelayKeyError, load_or_create_relay_key
from .server import run_server
from .services import Services
from .storage.base import SchemaTooNew, Storage, StorageError
from .storage.postgres import PostgresStorage
from .storage.postgres_engine import SCHEMA_VERSION as PG_SCHEMA_VERSION
from .storage.postgres_scrub import ScrubOutcome
from .storage.sqlite import SqliteStorage
from .storage.sqlite_engine import SCHEMA_VERSION

__all__ = ["main"]


def _options_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML configuration file (also E2E_RECALL_RELAY_CONFIG)",
    )
    sections: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        group = sections.get(option.section)
        if group is None:
            group = sections[option.section] = parent.add_argument_group(
                f"[{option.section}] options"
            )
        group.add_argument(
            option.flag,
            *option.aliases,
            dest=option.name,
            metavar=option.metavar,
            default=None,
            help=f"{option.help} (default: {option.shown_default}; env {option.env})",
        )
    return parent


def _options_epilog() -> str:
    """Every option in one table, so ``e2e-recall-relay --help`` alone documents them all.

    The top-level parser does not take the options itself (they belong after
    the command), so the table is text rather than argparse arguments.
    """
    lines = [
        "options (after the command; env variable; default):",
        "  --config FILE",
        "      TOML configuration file; E2E_RECALL_RELAY_CONFIG; default none",
    ]
    for option in OPTIONS:
        flags = ", ".join((option.flag, *option.aliases))
        lines.append(f"  {flags} {option.metavar}")
        lines.append(f"      {option.help}; {option.env}; default {option.shown_default}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parent = _options_parser()
    parser = argparse.ArgumentParser(
        prog="e2e-recall-relay",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\n" + _options_epilog(),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", parents=[parent], help="start the relay")
    serve.add_argument(
        "--port-file", type=Path, metavar="FILE", help="write the bound port here once listening"
    )
    for name, text in (
        ("stats", "print counts as JSON"),
        ("purge-expired", "run the retention job once"),
        ("migrate", "bring the schema up to date"),
        ("check", "check database integrity"),
        ("key", "show the relay key and id"),
        ("scrub", "rewrite the database now so no fragment of purged content remains"),
    ):
        commands.add_parser(name, parents=[parent], help=text)
    release = commands.add_parser(
        "release-handle",
        parents=[parent],
        help="free a handle for a new identity (its contacts will see a changed key)",
    )
    release.add_argument("handle", help="the handle to detach from the account holding it")
    bench_cli.add_parser(commands)
    return parser


def _postgres_scrubbed(seconds: float, outcome: ScrubOutcome | None) -> str:
    """What the scrub did on PostgreSQL, and which grant would let it do the rest."""
    text = f"rewrote the content tables (VACUUM FULL) in {seconds:.2f} s"
    if outcome is None or not outcome.checkpointed:
        return text + "; no CHECKPOINT (GRANT pg_checkpoint to the relay's role, docs/operators.md)"
    if not outcome.wal_switched:
        return text + (
            ", checkpointed; the WAL was not switched (archive_mode is on, or the role may not "
            "call pg_switch_wal(): docs/operators.md)"
        )
    return text + ", checkpointed, switched the WAL and checkpointed again"


def _storage(config: Config) -> Storage:
    if config.uses_postgres:
        return PostgresStorage(config.database, pool_size=2)
    return SqliteStorage(config.database_path)


async def _with_storage(config: Config, command: str, handle: str = "") -> int:
    storage = _storage(config)
    await storage.open()
    try:
        if command == "stats":
            print(json.dumps(await storage.stats(), indent=2, sort_keys=True))
        elif command == "scrub":
            seconds = await storage.scrub()
            if isinstance(storage, PostgresStorage):
                print(_postgres_scrubbed(seconds, storage.last_scrub))
            else:
                print(f"scrubbed in {seconds:.2f} s: every page rewritten, the WAL truncated")
            if config.blob_path.is_dir():  # and blob files a crash left without a row
                services = Services(config, storage, lambda: int(time.time() * 1000), Metrics())
                print(f"removed {await services.blobs.sweep()} orphaned blob file(s)")
        elif command == "migrate":
            version = PG_SCHEMA_VERSION if config.uses_postgres else SCHEMA_VERSION
            print(f"schema version {version}: up to date")
        elif command == "check":
            problems = await storage.check()
            for problem in problems:
                print(problem)
            print("ok" if not problems else f"{len(problems)} problem(s) found")
            return 1 if problems else 0
        elif command == "release-handle":
            user_id = await storage.release_handle(handle)
            if user_id is None:
                print(f"no account holds the handle {handle!r}", file=sys.stderr)
                return 1
            print(
                f"released {handle!r} from user {user_id.hex()}; a new identity may register "
                "it, and everyone who pinned the old one will be warned of a changed key"
            )
        elif command == "purge-expired":
            services = Services(config, storage, lambda: int(time.time() * 1000), Metrics())
            result = await services.retention.run_once()
            timed = await services.timers.run_once()  # disappearing messages now due
            await services.blobs.drain()  # the files of what it destroyed
            print(
                f"expired {result.expired} message(s), forgot {result.forgotten} old "
                f"record(s), ran {timed} message timer(s)"
            )
        return 0
    finally:
        await storage.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":  # a client of a relay, not a relay: no relay configuration
        return bench_cli.run(args)
    flags: dict[str, Any] = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    try:
        config = load_config(args.config, flags=flags)
    except ConfigError as exc:
        print(f"e2e-recall-relay: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        if args.command == "serve":
            run_server(config, args.port_file)
            return 0
        if args.command == "key":
            key = load_or_create_relay_key(config.data_path)
            print(f"relay key {key.public_key.raw.hex()}")
            print(f"relay id  {fingerprint(key.public_key).hex()}")
            return 0
        return asyncio.run(_with_storage(config, args.command, getattr(args, "handle", "")))
    except ConfigError as exc:  # a setting only checked when it is used (a token file)
        print(f"e2e-recall-relay: {exc}", file=sys.stderr)
        return 2
    except SchemaTooNew as exc:
        print(f"e2e-recall-relay: {exc}", file=sys.stderr)
        return 1
    except StorageError as exc:
        print(f"e2e-recall-relay: the database failed: {exc}", file=sys.stderr)
        return 1
    except RelayKeyError as exc:
        print(f"e2e-recall-relay: {exc}", file=sys.stderr)
        return 1
    except ssl.SSLError as exc:
        print(
            f"e2e-recall-relay: cannot use the TLS certificate {config.tls_cert} with the key "
            f"{config.tls_key}: {exc.reason or exc}",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(
            f"e2e-recall-relay: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
