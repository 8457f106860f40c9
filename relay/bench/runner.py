"""One bench run: start what is needed, run each phase in worker processes, gather the figures.

Phases run one after another, never side by side, so each has the machine
to itself: the relay run (against the relay the bench started, or
``--url``), then with ``--baseline`` the bare HTTP endpoint and the bare
WebSocket echo (a fresh server process, started after the relay stopped).
In each phase every worker sets up (registers, connects, seals ahead),
says it is ready, and all start together at one moment; the server's CPU
time is read at that moment and again when the last worker is done.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import e2e_recall as er

from .errors import BenchFailed
from .meter import Meter, ServerCost
from .options import BenchOptions, prepared_per_worker
from .plan import Mode, WorkerPlan, WorkerResult
from .prefill import prefill
from .processes import ServerProcess
from .progress import Display
from .protocol import BenchDevice, BenchUser, seal_send
from .relays import Backend, started_relays
from .samples import Samples
from .worker import worker_main

__all__ = ["Phase", "run_bench"]

POLL = 0.2
START_DELAY = 0.2


@dataclass
class Phase:
    """One phase's workers added up, and what its servers cost (none when they are not ours)."""

    mode: Mode
    seconds: float
    result: WorkerResult = field(default_factory=WorkerResult)
    samples: dict[str, Samples] = field(default_factory=dict)
    servers: list[ServerCost] = field(default_factory=list)
    machine_cpu_seconds: float = 0.0

    def add(self, part: WorkerResult) -> None:
        total = self.result
        for kind, n in part.counts.items():
            total.counts[kind] = total.counts.get(kind, 0) + n
        for kind, n in part.starved.items():
            total.starved[kind] = total.starved.get(kind, 0) + n
        for kind, codes in part.errors.items():
            mine = total.errors.setdefault(kind, {})
            for code, n in codes.items():
                mine[code] = mine.get(code, 0) + n
        for kind, data in part.samples.items():
            self.samples.setdefault(kind, Samples()).extend(Samples.from_wire(data))
        total.propagation_pending += part.propagation_pending
        total.cpu_seconds += part.cpu_seconds
        total.sealed_ahead += part.sealed_ahead
        total.sealed_live += part.sealed_live
        total.behind_schedule_ms = max(total.behind_schedule_ms, part.behind_schedule_ms)
        total.websockets += part.websockets
        total.groups += part.groups


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares differing by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def request_size(options: BenchOptions) -> int:
    """Bytes of one send request at these settings: what the baseline posts and echoes."""
    alice, bob = BenchUser(0, er.SigningKey.generate()), BenchUser(1, er.SigningKey.generate())
    for user in (alice, bob):
        for _ in range(options.devices):
            user.devices.append(BenchDevice(user, er.DeviceSecrets.generate(), b""))
    extra = tuple(alice.devices[1 : 1 + options.recipients - options.devices])
    sample = seal_send(alice.devices[0], (*bob.devices, *extra), "x" * options.size)
    return len(sample.request)


def plans(options: BenchOptions, mode: Mode, urls: list[str], seconds: float) -> list[WorkerPlan]:
    """Each worker's share; with several relays, every worker's devices use all of them in turn."""
    users = _shares(options.users, options.workers)
    first_users = [sum(users[:i]) for i in range(options.workers)]
    concurrency = _shares(options.concurrency, options.workers)
    groups = _shares(options.groups, options.workers)
    rate = None if options.rate is None or mode != "relay" else options.rate / options.workers
    body = request_size(options) if mode != "relay" else 0
    return [
        WorkerPlan(
            index=i,
            mode=mode,
            url=urls[0],
            users=users[i],
            devices=options.devices,
            recipients=options.recipients,
            mix=options.mix,
            size=options.size,
            rate=rate,
            concurrency=concurrency[i],
            duration_s=seconds,
            transport=options.transport,
            fetch=options.fetch,
            prepare=prepared_per_worker(options) if mode == "relay" else 0,
            drain_s=options.drain_ms / 1000,
            seed=options.seed,
            body_size=body,
            expire_ms=options.expire_ms,
            groups=groups[i] if mode == "relay" else 0,
            group_size=options.group_size,
            group_share=options.group_share,
            urls=tuple(urls),
            first_user=first_users[i],
        )
        for i in range(options.workers)
    ]


class _Workers:
    """The worker processes of one phase and the messages they send back."""

    def __init__(self, work: list[WorkerPlan], servers: list[ServerProcess]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.queue = self.context.Queue()
        self.go = self.context.Event()
        self.abort = self.context.Event()
        self.start = self.context.Value("d", 0.0)
        self.servers = servers
        self.drain_s = work[0].drain_s
        self.processes = [
            self.context.Process(
                target=worker_main,
                args=(plan, self.queue, self.go, self.start, self.abort),
                daemon=True,
            )
            for plan in work
        ]
        self.reported: set[int] = set()

    def launch(self) -> None:
        for process in self.processes:
            process.start()

    def next(self, deadline: float) -> tuple[str, int, Any]:
        """The next message; a dead worker, a dead server or the deadline is a failure."""
        while True:
            try:
                kind, index, data = self.queue.get(timeout=POLL)
            except queues.Empty:
                self._check(deadline)
                continue
            if kind == "failed":
                raise BenchFailed(str(data))
            if kind == "done":
                self.reported.add(index)
            return kind, index, data

    def _check(self, deadline: float) -> None:
        for index, process in enumerate(self.processes):
            if process.exitcode is not None and index not in self.reported:
                raise BenchFailed(
                    f"A load generator process exited with code {process.exitcode} before "
                    "it reported."
                )
        for server in self.servers:
            if not server.alive():
                raise BenchFailed(f"The {server.name} exited during the run: {server.last_error()}")
        if time.monotonic() > deadline:
            raise BenchFailed("The load generators did not finish in time.")

    def close(self) -> None:
        self.abort.set()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def _collect(workers: _Workers, phase: Phase, start: float, count: int, display: Display) -> None:
    """Add up the workers' results as they finish, showing their progress meanwhile."""
    latest: dict[int, dict[str, int]] = {}
    deadline = start + phase.seconds + workers.drain_s + 60
    while len(workers.reported) < count:
        kind, index, data = workers.next(deadline)
        if kind == "progress":
            latest[index] = data
        elif kind == "done":
            phase.add(data)
            latest[index] = dict(data.counts)
        totals: dict[str, int] = {}
        for counts in latest.values():
            for name, n in counts.items():
                totals[name] = totals.get(name, 0) + n
        display.update(time.monotonic() - start, totals)


def run_phase(
    mode: Mode,
    label: str,
    work: list[WorkerPlan],
    servers: list[ServerProcess],
    display: Display,
) -> Phase:
    seconds = work[0].duration_s
    phase = Phase(mode, seconds)
    workers = _Workers(work, servers)
    workers.launch()
    try:
        setup_deadline = time.monotonic() + 120 + sum(p.users * p.devices for p in work) * 0.05
        ready = 0
        while ready < len(work):
            kind, _, _ = workers.next(setup_deadline)
            ready += kind == "ready"
        workers.start.value = start = time.monotonic() + START_DELAY
        workers.go.set()
        meter = Meter(servers, start, seconds)
        display.begin(label, seconds)
        try:
            _collect(workers, phase, start, len(work), display)
        except BaseException:
            meter.cancel()
            raise
        finally:
            display.end()
        measured = meter.result()
        if measured is not None:
            phase.servers, phase.machine_cpu_seconds = measured
    finally:
        workers.close()
    return phase


@dataclass
class BenchRun:
    """Everything measured: the relay phase and, with --baseline, the two ceilings."""

    relay: Phase
    relay_url: str
    started_relay: bool
    http: Phase | None = None
    websocket: Phase | None = None
    relay_urls: list[str] = field(default_factory=list)  # every process the load went to
    backend: Backend | None = None  # None: a relay at --url, whose database is its own


def _relay_phase(
    options: BenchOptions, work: Path, display: Display
) -> tuple[Phase, list[str], Backend | None]:
    seconds = options.duration_ms / 1000
    label = f"relay, rate {'max' if options.rate is None else f'{options.rate:g}/s'}"
    if options.url is not None:
        display.step(f"measuring the relay at {options.url}")
        urls = [options.url]
        return (
            run_phase("relay", label, plans(options, "relay", urls, seconds), [], display),
            urls,
            None,
        )
    if options.prefill:
        display.step(f"filling the relay's database with {options.prefill:,} stored messages")
        seconds_taken = prefill(work / "data", options.prefill, options.size)
        display.step(f"filled in {seconds_taken:.0f} s")
    with started_relays(options, work, display) as (relays, backend):
        display.step(
            f"registering {options.users} users with {options.devices} device(s) each and "
            "opening their WebSockets"
        )
        urls = [relay.url for relay in relays]
        phase = run_phase("relay", label, plans(options, "relay", urls, seconds), relays, display)
    return phase, urls, backend


def _baseline(options: BenchOptions, work: Path, display: Display) -> tuple[Phase, Phase]:
    seconds = options.baseline_duration_ms / 1000
    display.step("starting the bare aiohttp server for the baseline")
    port_file = work / "baseline.port"
    command = [sys.executable, "-m", "relay.bench.baseline_server", "--port-file", str(port_file)]
    server = ServerProcess("baseline server", command, work, port_file).start()
    try:
        http = run_phase(
            "http-echo",
            "bare HTTP",
            plans(options, "http-echo", [server.url], seconds),
            [server],
            display,
        )
        ws = run_phase(
            "ws-echo",
            "bare WebSocket",
            plans(options, "ws-echo", [server.url], seconds),
            [server],
            display,
        )
    finally:
        server.stop()
    return http, ws


def run_bench(options: BenchOptions, display: Display) -> BenchRun:
    """The whole run; servers and workers are stopped whatever happens."""
    with tempfile.TemporaryDirectory(prefix="e2e-recall-bench-") as tmp:
        work = Path(tmp)
        relay, urls, backend = _relay_phase(options, work, display)
        run = BenchRun(relay, urls[0], options.url is None, relay_urls=urls, backend=backend)
        if options.baseline:
            run.http, run.websocket = _baseline(options, work, display)
    return run
