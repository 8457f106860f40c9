"""The bench's command line: every option, its help, and the checks that make it one sentence.

Options are parsed into :class:`BenchOptions` before anything starts, so a
mistake costs nothing: no relay is launched and no user registered for a
run that could not have been carried out.  Sizes and durations are written
as for ``serve`` (``1KiB``, ``10s``), through :mod:`relay.units`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from e2e_recall.body import MAX_TEXT_LEN

from ..units import format_duration, format_size, parse_duration, parse_size
from .errors import BenchUsageError
from .load_options import add_load_arguments, expire_from_args, groups_from_args
from .relay_options import RelaySetup, add_relay_arguments, redact, relays_from_args
from .transport import TRANSPORTS

__all__ = ["KINDS", "BenchOptions", "add_arguments", "options_from_args"]

KINDS = ("send", "open", "recall")
"""The operations the generator drives; fetches and receipts follow from them."""

MAX_DEVICES = 64
DEFAULT_MIX = "send=70,open=20,recall=10"
PREPARED_BYTES = 256 << 20
"""Memory each worker may spend on messages sealed ahead."""


@dataclass(frozen=True)
class BenchOptions:
    """One run's settings, checked.  ``rate`` is operations per second, or None: flat out."""

    url: str | None
    users: int
    devices: int
    recipients: int
    mix: dict[str, float]
    size: int
    rate: float | None
    concurrency: int
    duration_ms: int
    transport: str
    workers: int
    fetch: bool
    prepare: int | None  # None: decide from the rate and duration
    drain_ms: int
    baseline: bool
    baseline_duration_ms: int
    json: bool
    plot: Path | None
    seed: int
    relay_config: Path | None
    prefill: int = 0
    expire_ms: int = 0  # a disappearing-message timer on every send (0: none)
    groups: int = 0  # groups made before the run (0: every send is direct)
    group_size: int = 0  # members per group
    group_share: float = 0.0  # share of the sends (0 to 1) that go to a group
    relays: RelaySetup = field(default_factory=RelaySetup)  # the relay processes and database

    def settings(self) -> dict[str, Any]:
        """The settings as the JSON output shows them: in the units a user types."""
        shown = asdict(self)
        shown["duration"] = format_duration(shown.pop("duration_ms"))
        expire = shown.pop("expire_ms")
        shown["expire"] = format_duration(expire) if expire else None
        shown["drain"] = format_duration(shown.pop("drain_ms"))
        shown["baseline_duration"] = format_duration(shown.pop("baseline_duration_ms"))
        shown["size"] = format_size(self.size)
        shown["rate"] = "max" if self.rate is None else f"{self.rate:g}/s"
        shown["prepare"] = "auto" if self.prepare is None else self.prepare
        shown["fetch"] = "notified" if self.fetch else "none"
        shown["plot"] = str(self.plot) if self.plot else None
        shown["relay_config"] = str(self.relay_config) if self.relay_config else None
        relays = shown.pop("relays")
        shown["processes"] = relays["processes"]
        url = relays["database_url"]
        shown["database_url"] = redact(url) if url else None
        shown["postgres"] = relays["postgres"]
        del shown["json"]
        return shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``e2e-recall-relay bench``, each with a help line and its default."""
    target = parser.add_argument_group("the relay")
    target.add_argument(
        "--url",
        metavar="URL",
        help="measure a running relay at this http(s) URL instead of starting one; its CPU "
        "and RSS are then shown as n/a, and its own rate limits apply (default: start a relay "
        "on 127.0.0.1 with a temporary data directory and no rate limits)",
    )
    target.add_argument(
        "--relay-config",
        type=Path,
        metavar="FILE",
        help="TOML configuration for the relay the bench starts; its rate limits are still "
        "lifted for the run (default: none, the relay's defaults)",
    )
    load = parser.add_argument_group("the load")
    load.add_argument("--users", type=int, default=10, help="users to register (default: 10)")
    load.add_argument(
        "--devices",
        type=int,
        default=1,
        help="devices per user, each with its WebSocket "
        f"open for the whole run (1 to {MAX_DEVICES}; default: 1)",
    )
    load.add_argument(
        "--recipients",
        type=int,
        help="devices each message is wrapped to: every device of one other user, plus up "
        "to devices-1 of the sender's own other devices (default: --devices)",
    )
    load.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        metavar="KIND=SHARE,...",
        help="shares of the operations driven, among send, open (release a received "
        "message's key) and recall (a signed recall of a message every recipient device has "
        f"fetched) (default: {DEFAULT_MIX})",
    )
    load.add_argument(
        "--size",
        default="1KiB",
        metavar="SIZE",
        help=f"body text per message, up to {format_size(MAX_TEXT_LEN)} (default: 1KiB)",
    )
    load.add_argument(
        "--rate",
        default="max",
        metavar="N/s|max",
        help="operations per second in all, spread over the mix, or max: each of "
        "--concurrency loops starts its next operation when the last is answered "
        "(default: max)",
    )
    load.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="operations in flight at most (with --rate max: exactly), shared by the workers "
        "(default: 64)",
    )
    load.add_argument(
        "--duration",
        default="10s",
        metavar="DURATION",
        help="how long operations are started (default: 10s)",
    )
    load.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default="http",
        help="how every operation (send, fetch, open, recall, receipt) reaches the relay: "
        "http (one request each) or ws (a request frame on the acting device's WebSocket) "
        "(default: http)",
    )
    load.add_argument(
        "--fetch",
        choices=("notified", "none"),
        default="notified",
        help="notified: each recipient device fetches the ciphertext of every message it is "
        "told of, as the client does; none: sends are measured alone, and recall propagation "
        "is not measured (a device that fetched nothing has nothing to delete) (default: "
        "notified)",
    )
    load.add_argument(
        "--workers",
        type=int,
        default=1,
        help="load generator processes, each with its own share of the users, rate and "
        "concurrency, to use more cores; on a 2-core machine they share the cores with the "
        "relay (default: 1)",
    )
    load.add_argument(
        "--prepare",
        default="auto",
        metavar="N|auto",
        help="messages sealed, signed and wrapped before the clock starts, so that the "
        "generator's crypto does not take CPU from the relay during the run; more are sealed "
        "live when they run out (auto: what --rate needs for --duration, or 3000 per second "
        "of --duration with --rate max, at most 50000 or 256MiB per worker; default: auto)",
    )
    load.add_argument(
        "--drain",
        default="5s",
        metavar="DURATION",
        help="after the run, how long to wait for answers and recall propagation still on "
        "their way (default: 5s)",
    )
    add_load_arguments(load)
    load.add_argument("--seed", type=int, default=1, help="seed of the choices (default: 1)")
    target.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="N",
        help="before starting the relay, store N undelivered messages of --size in its "
        "database (written directly, not sent), to measure throughput as the database grows "
        "(default: 0)",
    )
    add_relay_arguments(target)
    out = parser.add_argument_group("the figures")
    out.add_argument(
        "--baseline",
        action="store_true",
        help="also measure, in this run and on this machine, a bare aiohttp HTTP endpoint and "
        "a bare aiohttp WebSocket echo (a separate process, same body size and concurrency) "
        "and show the relay's sends as a share of that ceiling",
    )
    out.add_argument(
        "--baseline-duration",
        default="5s",
        metavar="DURATION",
        help="how long each baseline is driven (default: 5s)",
    )
    out.add_argument(
        "--json",
        action="store_true",
        help="print the figures as one JSON object instead of tables",
    )
    out.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw latency over time and the latency distribution to this PNG (needs the "
        "plot extra: pip install 'e2e-recall[plot]')",
    )


def _positive(name: str, value: int, least: int = 1) -> int:
    if value < least:
        raise BenchUsageError(f"--{name} must be at least {least}, not {value}.")
    return value


def _duration(name: str, text: str, *, zero: bool = False) -> int:
    try:
        ms = parse_duration(text)
    except ValueError as exc:
        raise BenchUsageError(f"--{name}: {exc}.") from None
    if ms <= 0 and not zero:
        raise BenchUsageError(f"--{name} must be longer than 0s.")
    return ms


def parse_mix(text: str) -> dict[str, float]:
    """``send=70,open=20,recall=10`` as shares summing to 1 (kinds left out have none)."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = re.fullmatch(r"\s*([a-z]+)\s*=\s*(\d+(?:\.\d+)?)\s*", part)
        if not match:
            raise BenchUsageError(f"--mix: {part.strip()!r} is not KIND=SHARE, such as send=70.")
        kind, share = match.group(1), float(match.group(2))
        if kind not in KINDS:
            raise BenchUsageError(f"--mix: {kind!r} is not one of {', '.join(KINDS)}.")
        if kind in shares:
            raise BenchUsageError(f"--mix names {kind} twice.")
        shares[kind] = share
    total = sum(shares.values())
    if total <= 0:
        raise BenchUsageError("--mix must give some operation a share above 0.")
    if shares.get("send", 0) <= 0:
        raise BenchUsageError(
            "--mix needs a share of send: opens and recalls act on sent messages."
        )
    return {kind: shares.get(kind, 0.0) / total for kind in KINDS}


def parse_rate(text: str) -> float | None:
    """``1000/s``, ``1000`` or ``max`` (None)."""
    if text.strip().lower() == "max":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise BenchUsageError(f"--rate: {text!r} is not a rate such as 1000/s, or max.")
    return float(match.group(1))


def _url(text: str | None) -> str | None:
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise BenchUsageError(f"--url: {text!r} is not a relay URL such as http://127.0.0.1:8765.")
    return f"{parts.scheme}://{parts.netloc}"


def _prepare(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit():
        raise BenchUsageError(f"--prepare: {text!r} is not a number of messages, or auto.")
    return int(text)


def _plot(path: Path | None) -> Path | None:
    if path is None:
        return None
    try:
        importlib.import_module("matplotlib")  # only now: matplotlib is an optional extra
    except ImportError:
        raise BenchUsageError(
            "--plot needs matplotlib, which is not installed: pip install 'e2e-recall[plot]'."
        ) from None
    if not path.parent.is_dir():
        raise BenchUsageError(f"--plot: the directory {path.parent} does not exist.")
    return path


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """Check every option together; the first problem found is the sentence shown."""
    workers = _positive("workers", args.workers)
    users = _positive("users", args.users, 2 * workers)
    devices = _positive("devices", args.devices)
    if devices > MAX_DEVICES:
        raise BenchUsageError(f"--devices is at most {MAX_DEVICES}, not {devices}.")
    recipients = devices if args.recipients is None else args.recipients
    if not devices <= recipients <= 2 * devices - 1:
        raise BenchUsageError(
            f"--recipients {recipients} cannot be met with --devices {devices}: a message goes "
            f"to every device of one other user ({devices}) and at most {devices - 1} of the "
            "sender's own other devices."
        )
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise BenchUsageError(f"--size: {exc}.") from None
    if not 1 <= size <= MAX_TEXT_LEN:
        raise BenchUsageError(
            f"--size must be between 1B and {format_size(MAX_TEXT_LEN)}, not {format_size(size)}."
        )
    mix = parse_mix(args.mix)
    fetch = args.fetch == "notified"
    concurrency = _positive("concurrency", args.concurrency, workers)
    rate = parse_rate(args.rate)
    if rate is not None and rate < workers:
        raise BenchUsageError(f"--rate must give each of the {workers} workers 1/s at least.")
    prefill = args.prefill
    if prefill < 0:
        raise BenchUsageError(f"--prefill is a number of messages, not {prefill}.")
    if prefill and args.url is not None:
        raise BenchUsageError("--prefill fills a relay the bench starts, not one at --url.")
    relay_config = args.relay_config
    if args.url is not None and relay_config is not None:
        raise BenchUsageError("--relay-config is for a relay the bench starts, not with --url.")
    if relay_config is not None and not relay_config.is_file():
        raise BenchUsageError(f"--relay-config: {relay_config} is not a file.")
    grouped = groups_from_args(args, users, workers)
    return BenchOptions(
        url=_url(args.url),
        users=users,
        devices=devices,
        recipients=recipients,
        mix=mix,
        size=size,
        rate=rate,
        concurrency=concurrency,
        duration_ms=_duration("duration", args.duration),
        transport=args.transport,
        workers=workers,
        fetch=fetch,
        prepare=_prepare(args.prepare),
        drain_ms=_duration("drain", args.drain, zero=True),
        baseline=bool(args.baseline),
        baseline_duration_ms=_duration("baseline-duration", args.baseline_duration),
        json=bool(args.json),
        plot=_plot(args.plot),
        seed=args.seed,
        relay_config=relay_config,
        prefill=prefill,
        expire_ms=expire_from_args(args.expire),
        groups=grouped.groups,
        group_size=grouped.size,
        group_share=grouped.share,
        relays=relays_from_args(args),
    )


def prepared_per_worker(options: BenchOptions) -> int:
    """How many sends each worker seals before the clock starts (``--prepare``)."""
    if options.prepare is not None:
        return math.ceil(options.prepare / options.workers)
    seconds = options.duration_ms / 1000
    per_second = 3000.0 if options.rate is None else options.rate * options.mix["send"]
    wanted = math.ceil(per_second * seconds * 1.05 / options.workers) + options.concurrency
    wraps = max(options.recipients, options.group_size * options.devices - 1)
    fits = PREPARED_BYTES // (options.size + 512 + 128 * wraps)
    return min(wanted, 50_000, fits)
