"""The load suite: many devices on WebSockets, a steady mix of sends, opens and recalls.

A relay process on loopback; ``clients`` people with one device each, every
device holding its WebSocket open for the whole run.  Each person sends to a
random other person at a steady rate.  A recipient fetches the ciphertext of
whatever it is notified of, as the client does, and opens about half.  A
sender recalls about a fifth of what it sent, a moment later, and a
recipient told of a recall deletes and posts its signed receipt.

Measured: operations by kind; server errors (a 5xx, a WebSocket the relay
closed, or an exception in a relay's log); messages acknowledged but never
notified (lost) or notified twice (duplicated); events a socket was pushed
with a lower seq than one before (out of order); and the recall-to-deletion
latency, from the moment the sender asks for the recall until the recipient
device's receipt is accepted (both ends are in this process, so one clock
measures it).

On PostgreSQL (``backend``) the relay runs on a throwaway database, and with
``processes`` above one several relay processes share it (and the data
directory, so the relay key), as behind a load balancer: person *i* talks to
process *i* mod N over both HTTP and its WebSocket, so most sends, and the
recalls after them, are pushed across processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from postgres import postgres_database

import e2e_recall as er
from e2e_recall import wire

from driver import Person, RelayRefused
from relay_process import RelayProcess, Target, free_port, target

_FRAMES = wire.Limits(max_size=1 << 21, max_bin=1 << 20)


@dataclass
class LoadConfig:
    clients: int = 50
    seconds: float = 10.0
    send_interval: float = 2.0  # each client sends about this often
    open_share: float = 0.5
    recall_share: float = 0.2
    seed: int = 1
    backend: str = "sqlite"  # or "postgresql"
    processes: int = 1  # relay processes on one database: PostgreSQL only

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "postgresql"):
            raise ValueError(f"no such backend {self.backend!r}: sqlite or postgresql")
        if self.processes < 1 or (self.processes > 1 and self.backend != "postgresql"):
            raise ValueError("several relay processes share a PostgreSQL database, not SQLite")


@dataclass
class LoadFindings:
    clients: int = 0
    seconds: float = 0.0
    connected: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    recall_to_deletion_ms: list[float] = field(default_factory=list)
    relay_rss_kib: int = 0  # the largest peak of the relay processes

    def percentiles(self) -> dict[str, float]:
        values = sorted(self.recall_to_deletion_ms)
        if not values:
            return {}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": values[-1]}


@dataclass
class _Sent:
    sender: Person
    recipient: Person
    header: er.Header
    acked: bool = False
    notices: int = 0
    recall_asked_at: float | None = None


class LoadRun:
    def __init__(self, work: Path, config: LoadConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.findings = LoadFindings(clients=config.clients)
        self.work = work
        self.relays: list[RelayProcess] = []
        self.people: list[Person] = []
        self.sent: dict[bytes, _Sent] = {}
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Any) -> None:
        """Start work that runs beside the event loop of a socket, and keep hold of it."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self.findings.operations[f"client error: {type(error).__name__}: {error}"[:90]] += 1

    async def run(self) -> LoadFindings:
        if self.config.backend == "postgresql":
            with postgres_database() as dsn:
                return await self._run(["--database-url", dsn])
        return await self._run([])

    def _start_relays(self, database: list[str]) -> None:
        """The relay processes, one after the other (the first makes the relay key)."""
        for index in range(self.config.processes):
            process = RelayProcess(
                self.work / f"relay-{index}",
                self.work / "data",
                *database,
                port=free_port(),
                E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
                E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",
                E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY="0",
                E2E_RECALL_RELAY_LOG_LEVEL="warning",
            )
            self.relays.append(process)
            process.start()

    async def _run(self, database: list[str]) -> LoadFindings:
        try:
            self._start_relays(database)
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                targets = [await target(http, relay.url()) for relay in self.relays]
                await self._register(targets, http)
                sockets = [asyncio.create_task(self._listen(p)) for p in self.people]
                while self.findings.connected < len(self.people):
                    await asyncio.sleep(0.05)
                    if any(task.done() for task in sockets):
                        break
                started = time.monotonic()
                senders = [asyncio.create_task(self._sender(p)) for p in self.people]
                await asyncio.sleep(self.config.seconds)
                self.stop.set()
                await asyncio.gather(*senders)
                await asyncio.sleep(2.0)  # the last notices and receipts arrive
                self.findings.seconds = time.monotonic() - started
                for task in sockets:
                    task.cancel()
                await asyncio.gather(*sockets, return_exceptions=True)
            self.findings.relay_rss_kib = max(_rss_kib(relay.pid) for relay in self.relays)
        finally:
            for relay in self.relays:
                relay.kill()
        self._read_logs()
        self._reckon()
        return self.findings

    def _read_logs(self) -> None:
        """An exception a relay logged is a server error, even if no client saw a 5xx."""
        for index, relay in enumerate(self.relays):
            for entry in relay.log_entries():
                if entry.get("level") in ("error", "critical"):
                    self._error(
                        f"relay {index} logged {entry.get('event')}: {entry.get('message')}"
                    )

    async def _register(self, relays: list[Target], http: aiohttp.ClientSession) -> None:
        async def one(index: int) -> Person:
            relay = relays[index % len(relays)]
            person = Person(f"p{index}", relay, http)  # type: ignore[arg-type]
            await person.add_device()
            return person

        for start in range(0, self.config.clients, 100):
            batch = range(start, min(start + 100, self.config.clients))
            self.people.extend(await asyncio.gather(*(one(i) for i in batch)))

    def _error(self, what: str) -> None:
        self.findings.server_errors.append(what)

    async def _call(self, person: Person, method: str, path: str, body: Any = None) -> Any:
        try:
            return await person.call(method, path, body)
        except RelayRefused as refused:
            if refused.status >= 500:
                self._error(f"{method} {path.split('/')[-1]}: {refused.status}")
            raise

    async def _sender(self, person: Person) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.config.send_interval))
        while not self.stop.is_set():
            recipient = self.rng.choice([p for p in self.people if p is not person])
            header, sealed = person.seal(recipient, os.urandom(64).hex())
            record = _Sent(person, recipient, header)
            self.sent[header.message_id] = record
            wraps = person.wraps_to(recipient, header, sealed.message_key)
            try:
                await self._call(
                    person,
                    "POST",
                    "/v1/messages",
                    {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
                )
                record.acked = True
                self.findings.operations["send"] += 1
            except (RelayRefused, aiohttp.ClientError, TimeoutError) as exc:
                self.findings.operations[f"send failed: {type(exc).__name__}"] += 1
            if record.acked and self.rng.random() < self.config.recall_share:
                asyncio.get_running_loop().call_later(
                    self.rng.uniform(0.2, 1.0),
                    lambda r=record: self._spawn(self._recall(r)),
                )
            await asyncio.sleep(self.config.send_interval * self.rng.uniform(0.5, 1.5))

    async def _recall(self, record: _Sent) -> None:
        if self.stop.is_set():
            return
        record.recall_asked_at = time.monotonic()
        revocation = record.sender.revocation(record.header)
        try:
            await self._call(
                record.sender,
                "POST",
                f"/v1/messages/{record.header.message_id.hex()}/recall",
                {"revocation": revocation.signed, "replacement": None},
            )
            self.findings.operations["recall"] += 1
        except (RelayRefused, aiohttp.ClientError, TimeoutError) as exc:
            self.findings.operations[f"recall refused: {getattr(exc, 'code', type(exc))}"] += 1

    async def _listen(self, person: Person) -> None:
        device = person.devices[0]
        url = person.relay.url.replace("http", "ws", 1) + "/v1/ws?cursor=0"
        headers = {"Authorization": f"Bearer {device.token}"}
        last_seq = 0
        async with person.http.ws_connect(url, headers=headers, heartbeat=30) as ws:
            self.findings.connected += 1
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    break
                frame = wire.decode(message.data, limits=_FRAMES)
                if frame.get("type") != "event":
                    continue
                if frame["seq"] <= last_seq:
                    self.findings.out_of_order.append(
                        f"{person.name}: {frame['seq']} after {last_seq}"
                    )
                last_seq = max(last_seq, frame["seq"])
                await self._on_event(person, frame)
                await ws.send_bytes(wire.encode({"type": "ack", "seq": frame["seq"]}))
            if not self.stop.is_set():
                self._error(f"websocket of {person.name} closed with {ws.close_code}")

    async def _on_event(self, person: Person, frame: dict[str, Any]) -> None:
        record = self.sent.get(frame["message_id"])
        if frame["kind"] == "message":
            if record is None or record.recipient is not person:
                return
            record.notices += 1
            self.findings.operations["notice"] += 1
            if record.sender.relay is not person.relay:
                self.findings.operations["notice across processes"] += 1
            opening = self.rng.random() < self.config.open_share
            self._spawn(self._receive(person, record, opening=opening))
        elif frame["kind"] == "revocation" and record is not None and record.recipient is person:
            if record.sender.relay is not person.relay:
                self.findings.operations["recall across processes"] += 1
            self._spawn(self._delete(person, record, frame))

    async def _receive(self, person: Person, record: _Sent, *, opening: bool) -> None:
        """What a client does with a notice: fetch the ciphertext at once, open it maybe."""
        path = f"/v1/messages/{record.header.message_id.hex()}"
        try:
            await self._call(person, "GET", path)
            self.findings.operations["fetch"] += 1
            if opening:
                await self._call(person, "POST", path + "/open", {})
                self.findings.operations["open"] += 1
        except RelayRefused as refused:  # recalled meanwhile: expected, not an error
            self.findings.operations[f"fetch or open refused: {refused.code}"] += 1

    async def _delete(self, person: Person, record: _Sent, frame: dict[str, Any]) -> None:
        payload = wire.decode(frame["payload"], limits=_FRAMES)
        message_id, receipt = person.receipt_for(record.sender, payload["revocation"])
        try:
            await self._call(
                person, "POST", f"/v1/messages/{message_id.hex()}/receipt", {"receipt": receipt}
            )
        except RelayRefused as refused:
            self.findings.operations[f"receipt refused: {refused.code}"] += 1
            return
        self.findings.operations["receipt"] += 1
        if record.recall_asked_at is not None:
            elapsed = (time.monotonic() - record.recall_asked_at) * 1000
            self.findings.recall_to_deletion_ms.append(elapsed)

    def _reckon(self) -> None:
        for message_id, record in self.sent.items():
            name = message_id.hex()[:12]
            if record.notices > 1:
                self.findings.duplicates.append(f"{name} x{record.notices}")
            # A message recalled before its notice went out is withdrawn, not lost.
            if record.acked and record.notices == 0 and record.recall_asked_at is None:
                self.findings.lost.append(name)


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def load_suite(work: Path, config: LoadConfig) -> LoadFindings:
    return await LoadRun(work, config).run()
