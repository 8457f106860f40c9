"""Driving the bare server: the same load generator, body size and concurrency, nothing else.

``http-echo`` runs ``concurrency`` loops, each posting a body as large as
the relay run's send requests and reading the answer, back to back.
``ws-echo`` opens ``concurrency`` WebSockets and on each sends one frame of
that size and waits for its echo, back to back.  Both are flat out: the
point is the ceiling, so the relay's send rate can be read as a share of
it.  The client side is the same aiohttp client the relay run uses, so the
cost of generating load is in both figures alike.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import aiohttp

from .errors import BenchFailed
from .plan import WorkerPlan, WorkerResult
from .protocol import transport_code
from .samples import Tally

__all__ = ["BaselineLoad"]

FAILURES = (aiohttp.ClientError, TimeoutError, ConnectionError)


class BaselineLoad:
    """One worker's share of a baseline measurement; :meth:`setup`, then :meth:`run`."""

    def __init__(self, plan: WorkerPlan, http: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.http = http
        self.body = os.urandom(plan.body_size)
        self.kind = "http" if plan.mode == "http-echo" else "websocket"
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.tally = Tally(time.monotonic(), 0.0)

    async def setup(self) -> None:
        if self.kind == "http":
            return
        url = self.plan.url.replace("http", "ws", 1) + "/ws"
        try:
            for _ in range(self.plan.concurrency):
                self.sockets.append(await self.http.ws_connect(url, max_msg_size=1 << 21))
        except FAILURES as exc:
            raise BenchFailed(f"The baseline WebSocket did not connect ({exc}).") from None

    async def run(self, start: float, progress: Callable[[dict[str, int]], None]) -> WorkerResult:
        self.tally = Tally(start, self.plan.duration_s)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu = time.process_time()
        reporter = asyncio.create_task(self._report(progress))
        if self.kind == "http":
            loops = [self._post() for _ in range(self.plan.concurrency)]
        else:
            loops = [self._echo(ws) for ws in self.sockets]
        await asyncio.gather(*loops)
        reporter.cancel()
        result = WorkerResult(cpu_seconds=time.process_time() - cpu)
        for ws in self.sockets:
            await ws.close()
        result.counts = dict(self.tally.counts)
        result.samples = {kind: s.to_wire() for kind, s in self.tally.samples.items()}
        result.errors = {kind: dict(codes) for kind, codes in self.tally.errors.items()}
        result.websockets = len(self.sockets)
        return result

    async def _report(self, progress: Callable[[dict[str, int]], None]) -> None:
        while True:
            await asyncio.sleep(0.5)
            progress(self.tally.snapshot())

    async def _post(self) -> None:
        url = self.plan.url + "/echo"
        headers = {"Content-Type": "application/msgpack"}
        while self.tally.running():
            began = time.monotonic()
            try:
                async with self.http.post(url, data=self.body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except FAILURES as exc:
                self.tally.failed(self.kind, transport_code(exc), began)
                continue
            if status == 200:
                self.tally.ok(self.kind, began)
            else:
                self.tally.failed(self.kind, f"http_{status}", began)

    async def _echo(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while self.tally.running():
            began = time.monotonic()
            try:
                await ws.send_bytes(self.body)
                message = await ws.receive()
            except FAILURES as exc:
                self.tally.failed(self.kind, transport_code(exc), began)
                return
            if message.type is not aiohttp.WSMsgType.BINARY:
                self.tally.failed(self.kind, f"closed_{ws.close_code}", began)
                return
            self.tally.ok(self.kind, began)
