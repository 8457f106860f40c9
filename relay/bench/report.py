"""The figures: one JSON object (``--json``) and the tables drawn from that same object.

The tables are rendered from the JSON shape, never from the raw results,
so the two outputs cannot disagree.  Latencies are milliseconds; rates are
operations started in the window divided by the window.  A figure the
bench cannot know (the CPU of a relay it did not start) is ``null`` in the
JSON and ``n/a`` in the table.
"""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib.metadata import version
from typing import Any

from rich.console import Console
from rich.table import Table

from .meter import ServerCost
from .options import BenchOptions
from .runner import BenchRun, Phase
from .samples import summarize

__all__ = ["figures", "machine", "render"]

OPERATIONS = ("send", "open", "recall", "fetch", "receipt", "group_send", "group_recall")
LATENCIES = (
    "send",
    "open",
    "recall",
    "propagation",
    "group_send",
    "group_recall",
    "group_propagation",
    "revocation",
    "fetch",
    "receipt",
    "expiry",
)
OPTIONAL_ROWS = (
    "group_send",
    "group_recall",
    "group_propagation",
    "revocation",
    "fetch",
    "receipt",
    "expiry",
)
"""Rows left out of the table when nothing was measured (the JSON keeps them, as null)."""
LABELS = {
    "send": "send (acknowledged)",
    "open": "open (key released)",
    "recall": "recall (acknowledged)",
    "propagation": "recall propagation",
    "group_send": "group send (acknowledged)",
    "group_recall": "group recall (acknowledged)",
    "group_propagation": "group recall propagation",
    "revocation": "revocation on the socket",
    "fetch": "fetch (on notice)",
    "receipt": "receipt (accepted)",
    "expiry": "timer to expired event",
    "http": "bare HTTP POST",
    "websocket": "bare WebSocket echo",
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                "",
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or None,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": version("aiohttp"),
        "system": f"{platform.system()} {platform.release()}",
    }


def _latencies(phase: Phase, kinds: tuple[str, ...]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for kind in kinds:
        summary = summarize(phase.samples[kind].latency_ms) if kind in phase.samples else None
        shown[kind] = summary.to_json() if summary is not None else None
    return shown


def _errors(phase: Phase) -> dict[str, int]:
    codes: dict[str, int] = {}
    for by_code in phase.result.errors.values():
        for code, n in by_code.items():
            codes[code] = codes.get(code, 0) + n
    return dict(sorted(codes.items(), key=lambda item: -item[1]))


def _cost(cpu: float | None, seconds: float) -> dict[str, Any]:
    return {
        "cpu_seconds": None if cpu is None else round(cpu, 3),
        "cpu_cores": None if cpu is None else round(cpu / seconds, 3),
    }


def _server(phase: Phase) -> dict[str, Any]:
    """The servers of a phase together: CPU and peak RSS summed (null when none is ours)."""
    servers = phase.servers
    cpu = sum(s.cpu_seconds for s in servers) if servers else None
    return {
        "pid": servers[0].pid if len(servers) == 1 else None,
        "processes": len(servers) or None,
        **_cost(cpu, phase.seconds),
        "peak_rss_bytes": sum(s.peak_rss_bytes for s in servers) if servers else None,
    }


def _each(server: ServerCost, seconds: float) -> dict[str, Any]:
    return {
        "name": server.name,
        "url": server.url,
        "pid": server.pid,
        **_cost(server.cpu_seconds, seconds),
        "peak_rss_bytes": server.peak_rss_bytes,
    }


def _baseline(phase: Phase, kind: str) -> dict[str, Any]:
    count = phase.result.counts.get(kind, 0)
    return {
        "count": count,
        "per_second": round(count / phase.seconds, 1),
        "latency_ms": _latencies(phase, (kind,))[kind],
        "errors": _errors(phase),
        "server": _server(phase),
        "generator_cpu_seconds": round(phase.result.cpu_seconds, 3),
        "machine_cpu_cores": round(phase.machine_cpu_seconds / phase.seconds, 3),
    }


def figures(options: BenchOptions, run: BenchRun) -> dict[str, Any]:
    """The whole result as one JSON-ready object."""
    phase = run.relay
    counts = phase.result.counts
    operations = {
        kind: {
            "count": counts.get(kind, 0),
            "per_second": round(counts.get(kind, 0) / phase.seconds, 1),
        }
        for kind in OPERATIONS
    }
    requests = sum(counts.get(kind, 0) for kind in OPERATIONS)
    shown: dict[str, Any] = {
        "settings": options.settings(),
        "machine": machine(),
        "relay_url": run.relay_url,
        "started_relay": run.started_relay,
        "window_seconds": phase.seconds,
        "operations": operations,
        "requests_per_second": round(requests / phase.seconds, 1),
        "latency_ms": _latencies(phase, LATENCIES),
        "propagation": {
            "measured": counts.get("propagation", 0),
            "group_measured": counts.get("group_propagation", 0),
            "pending": phase.result.propagation_pending,
        },
        "errors": _errors(phase),
        "errors_by_kind": phase.result.errors,
        "starved": phase.result.starved,
        "relay": _server(phase),
        "relays": [_each(server, phase.seconds) for server in phase.servers],
        "relay_urls": run.relay_urls,
        "backend": run.backend.to_json() if run.backend is not None else None,
        "machine_cpu_cores": round(phase.machine_cpu_seconds / phase.seconds, 3),
        "generator": {
            "workers": options.workers,
            "cpu_seconds": round(phase.result.cpu_seconds, 3),
            "cpu_cores": round(phase.result.cpu_seconds / phase.seconds, 3),
            "websockets": phase.result.websockets,
            "groups": phase.result.groups,
            "sealed_ahead": phase.result.sealed_ahead,
            "sealed_during_run": phase.result.sealed_live,
            "behind_schedule_ms": round(phase.result.behind_schedule_ms, 1),
        },
        "baseline": None,
    }
    if run.http is not None and run.websocket is not None:
        http, ws = _baseline(run.http, "http"), _baseline(run.websocket, "websocket")
        ceiling = http["per_second"] or None
        shown["baseline"] = {
            "http": http,
            "websocket": ws,
            "send_share_of_http": None
            if ceiling is None
            else round(operations["send"]["per_second"] / ceiling, 4),
            "requests_share_of_http": None
            if ceiling is None
            else round(shown["requests_per_second"] / ceiling, 4),
        }
    return shown


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _latency_row(
    label: str, count: int | None, rate: float | None, latency: dict[str, Any] | None
) -> list[str]:
    cells = [label, "" if count is None else f"{count:,}", "" if rate is None else f"{rate:,.1f}"]
    keys = ("p50", "p90", "p99", "max")
    return cells + ([_ms(latency[k]) for k in keys] if latency else ["", "", "", ""])


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("operation")
    for name in ("count", "per second", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="right")
    return table


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / (1 << 20):,.1f} MiB"


def _backend(shown: dict[str, Any]) -> str:
    """Where the relays stored their rows, as the header names it."""
    backend = shown["backend"]
    if backend is None:
        return "its own database"
    if backend["kind"] == "sqlite":
        return "SQLite"
    if backend["started_server"]:
        return f"PostgreSQL {backend['version']} (started by the bench)"
    return "PostgreSQL"


def _where(shown: dict[str, Any]) -> str:
    urls = shown["relay_urls"] or [shown["relay_url"]]
    if len(urls) == 1:
        return f"relay at {urls[0]} on {_backend(shown)}"
    return f"{len(urls)} relay processes ({', '.join(urls)}) on {_backend(shown)}"


def _relay_lines(shown: dict[str, Any], console: Console) -> None:
    """CPU and peak RSS of the relay, or of each relay process and their total."""
    for each in shown["relays"] if len(shown["relays"]) > 1 else []:
        console.print(
            f"{each['name']} ({each['url']}): CPU {each['cpu_seconds']:,.2f} s "
            f"({each['cpu_cores']:.2f} cores), peak RSS {_mib(each['peak_rss_bytes'])}"
        )
    relay = shown["relay"]
    cpu = (
        "n/a"
        if relay["cpu_seconds"] is None
        else f"{relay['cpu_seconds']:,.2f} s ({relay['cpu_cores']:.2f} cores)"
    )
    label = "relay process" if len(shown["relays"]) <= 1 else "relay processes together"
    console.print(f"{label}: CPU {cpu}, peak RSS {_mib(relay['peak_rss_bytes'])}")
    backend = shown["backend"]
    if len(shown["relays"]) > 1 and backend is not None and backend["kind"] == "sqlite":
        console.print(
            "note: on SQLite the processes do not tell each other of queued events, so a "
            "device is told only of what was sent through its own process"
        )


def render(shown: dict[str, Any], console: Console) -> None:
    """The tables an operator reads, drawn from :func:`figures`."""
    settings = shown["settings"]
    mix = ", ".join(f"{kind} {share:.0%}" for kind, share in settings["mix"].items() if share)
    table = _table(
        f"{_where(shown)}: {settings['users']} users x {settings['devices']} "
        f"device(s), {settings['recipients']} recipient device(s) per message, "
        f"{settings['size']} bodies; {mix}; rate {settings['rate']}, concurrency "
        f"{settings['concurrency']}, {settings['duration']}, {settings['transport']}"
        + (
            f"; {settings['groups']} groups of {settings['group_size']} users get "
            f"{settings['group_share']:.0%} of the sends"
            if settings["groups"]
            else ""
        )
    )
    for kind in LATENCIES:
        op = shown["operations"].get(kind)
        latency = shown["latency_ms"][kind]
        if kind in OPTIONAL_ROWS and latency is None:
            continue
        count = op["count"] if op else (latency["count"] if latency else 0)
        rate = op["per_second"] if op else None
        table.add_row(*_latency_row(LABELS[kind], count, rate, latency))
    console.print(table)
    errors = shown["errors"]
    console.print(
        "errors: "
        + (", ".join(f"{code} {n:,}" for code, n in errors.items()) if errors else "none")
    )
    if shown["propagation"]["pending"]:
        console.print(
            f"recall propagation still pending at the end: {shown['propagation']['pending']:,}"
        )
    gen = shown["generator"]
    _relay_lines(shown, console)
    console.print(
        f"load generator: {gen['workers']} worker(s), CPU {gen['cpu_seconds']:,.2f} s "
        f"({gen['cpu_cores']:.2f} cores), "
        f"{gen['websockets']:,} WebSockets, {gen['sealed_ahead']:,} messages sealed ahead and "
        f"{gen['sealed_during_run']:,} during the run"
    )
    console.print(
        f"machine: {shown['machine']['cpus']} CPUs, {shown['machine_cpu_cores']:.2f} cores busy "
        "during the run (every process, the relay and the load generator included)"
    )
    baseline = shown["baseline"]
    if baseline is None:
        return
    table = _table(f"baseline on this machine: bare aiohttp, {settings['baseline_duration']} each")
    for kind in ("http", "websocket"):
        part = baseline[kind]
        table.add_row(
            *_latency_row(LABELS[kind], part["count"], part["per_second"], part["latency_ms"])
        )
    console.print(table)
    share = baseline["send_share_of_http"]
    if share is not None:
        console.print(
            f"relay sends: {shown['operations']['send']['per_second']:,.1f}/s = {share:.1%} of the "
            f"bare HTTP ceiling ({baseline['http']['per_second']:,.1f}/s); all relay requests "
            f"{shown['requests_per_second']:,.1f}/s = {baseline['requests_share_of_http']:.1%}"
        )
