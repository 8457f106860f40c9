"""One load generator against the relay: its users, its operations and what they measured.

A worker registers its own users (so every sender and recipient it drives
is its own, and one clock times a recall from the sender's request to the
recipient's receipt), opens every device's WebSocket, seals messages ahead,
and then drives the mix for the window:

* **send** -- a prepared message from a user to every device of another
  user (and, with ``--recipients`` above ``--devices``, some of the
  sender's own other devices), acknowledged when the relay answers;
* **open** -- a recipient device releases its key for a message it fetched
  (oldest first);
* **recall** -- the sender signs and sends the recall of a message that
  every recipient device has fetched (newest first, as regret is).

and reacts, as a client does, to what arrives on the sockets: a ``message``
notice makes the device **fetch** the ciphertext; a ``revocation`` makes it
verify the recall, delete and post its signed **receipt**.  The time from
the recall request until that receipt is accepted is the **propagation**.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .errors import BenchFailed
from .groups import BenchGroup, create_groups, seal_group_send
from .listener import Listener
from .plan import WorkerPlan, WorkerResult
from .protocol import (
    BenchDevice,
    BenchUser,
    PreparedSend,
    RelayClient,
    RelayRefused,
    now_ms,
    seal_send,
    sign_recall,
    sign_receipt,
    transport_code,
)
from .samples import Tally
from .schedule import Mix, Pace
from .transport import TRANSPORTS

__all__ = ["Workload"]

POOL_LIMIT = 100_000
REGISTER_AT_ONCE = 16
FAILURES = (RelayRefused, aiohttp.ClientError, TimeoutError, ConnectionError)


@dataclass(eq=False)
class Tracked:
    """A message this worker sent, and what has happened to it on each device."""

    sent: PreparedSend
    fetched: set[BenchDevice] = field(default_factory=set)
    opened_at: dict[BenchDevice, int] = field(default_factory=dict)
    recalled: bool = False
    recall_began: float | None = None
    awaiting: set[BenchDevice] = field(default_factory=set)
    acked_at: int | None = None  # wall clock ms when the relay acknowledged the send
    group: bool = False  # sent to a group: counted as group_send, group_recall, ...

    def kind(self, name: str) -> str:
        """The name an operation on this message is counted under."""
        return f"group_{name}" if self.group else name


def _code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, RelayRefused) else transport_code(exc)


class Workload:
    """The state of one worker's run; :meth:`setup`, then :meth:`run`."""

    def __init__(self, plan: WorkerPlan, client: RelayClient) -> None:
        self.plan = plan
        self.client = client
        self.rng = random.Random(plan.seed * 1009 + plan.index)  # noqa: S311 -- who sends to whom
        self.text = "x" * plan.size
        self.users: list[BenchUser] = []
        self.groups: list[BenchGroup] = []
        self.group_ids: set[bytes] = set()  # conversations of the groups, to tell sends apart
        self.messages: dict[bytes, Tracked] = {}
        self.prepared: deque[PreparedSend] = deque()
        self.to_open: deque[tuple[Tracked, BenchDevice]] = deque(maxlen=POOL_LIMIT)
        self.to_recall: deque[Tracked] = deque(maxlen=POOL_LIMIT)
        self.recalls: list[Tracked] = []
        self.listener = Listener(client, self._on_event)
        self.transport = TRANSPORTS[plan.transport](client, self.listener)
        self.mix = Mix(plan.mix)
        self.result = WorkerResult()
        self.tally = Tally(time.monotonic(), 0.0)
        # Fetches and receipts wait for room separately: a receipt queued behind a
        # backlog of fetches would be timed as propagation the relay did not cause.
        self.fetching = asyncio.Semaphore(max(plan.concurrency, 16))
        self.receipting = asyncio.Semaphore(max(plan.concurrency, 16))
        self.tasks: set[asyncio.Task[None]] = set()
        self._next_sender = 0
        self._next_group = 0

    # -- before the clock starts -------------------------------------------------------------

    async def setup(self) -> None:
        """Register the users, open every socket and seal the prepared messages."""
        gate = asyncio.Semaphore(REGISTER_AT_ONCE)

        async def one(index: int) -> BenchUser:
            async with gate:
                return await self.client.register_user(
                    index, self.plan.devices, self.plan.urls, self.plan.first_user + index
                )

        try:
            self.users = list(await asyncio.gather(*(one(i) for i in range(self.plan.users))))
        except RelayRefused as refused:
            raise BenchFailed(
                f"The relay refused to register the bench's users ({refused.status} "
                f"{refused.code}); a relay started elsewhere needs address_requests_per_minute "
                "0 and requests_per_minute 0 for a bench, or fewer --users."
            ) from None
        except FAILURES as exc:
            raise BenchFailed(f"Registering users failed: {_code(exc)}.") from None
        devices = [device for user in self.users for device in user.devices]
        await self.listener.open(devices)
        try:
            self.groups = await create_groups(
                self.client, self.users, self.plan.groups, self.plan.group_size, self.rng
            )
        except FAILURES as exc:
            raise BenchFailed(f"Creating the bench's groups failed: {_code(exc)}.") from None
        self.group_ids = {group.conversation_id for group in self.groups}
        self.result.groups = len(self.groups)
        self.result.websockets = len(self.listener.sockets)
        # A timer counts from the header's sent_at: a message sealed ahead would be sent
        # with part of its time gone, so with --expire every message is sealed as it goes.
        for _ in range(0 if self.plan.expire_ms else self.plan.prepare):
            self.prepared.append(self._seal())
        self.result.sealed_ahead = len(self.prepared)

    def _seal(self) -> PreparedSend:
        """The next message: senders in turn, each to a random other user (or a group)."""
        if self.groups and self.rng.random() < self.plan.group_share:
            return self._seal_to_group()
        user = self.users[self._next_sender % len(self.users)]
        self._next_sender += 1
        other = self.rng.choice([u for u in self.users if u is not user])
        sender = self.rng.choice(user.devices)
        own = [d for d in user.devices if d is not sender]
        extra = self.plan.recipients - self.plan.devices
        recipients = (*other.devices, *self.rng.sample(own, extra))
        return seal_send(sender, recipients, self.text, self.plan.expire_ms)

    def _seal_to_group(self) -> PreparedSend:
        """The groups in turn; in each, its members in turn, from one of their devices."""
        group = self.groups[self._next_group % len(self.groups)]
        self._next_group += 1
        user = group.members[group.turn % len(group.members)]
        group.turn += 1
        sender = self.rng.choice(user.devices)
        return seal_group_send(group, sender, self.text, self.plan.expire_ms)

    # -- the window ---------------------------------------------------------------------------

    async def run(self, start: float, progress: Callable[[dict[str, int]], None]) -> WorkerResult:
        """Drive the mix from ``start`` (monotonic) for the window, then drain."""
        self.tally = Tally(start, self.plan.duration_s)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu = time.process_time()
        reporter = asyncio.create_task(self._report(progress))
        if self.plan.rate is None:
            await asyncio.gather(*(self._loop() for _ in range(self.plan.concurrency)))
        else:
            await self._paced(self.plan.rate)
        self.result.cpu_seconds = time.process_time() - cpu  # the window's, not the drain's
        await self._drain()
        reporter.cancel()
        await self.listener.close()
        return self._finish()

    async def _report(self, progress: Callable[[dict[str, int]], None]) -> None:
        while True:
            await asyncio.sleep(0.5)
            progress(self.tally.snapshot())

    async def _loop(self) -> None:
        while self.tally.running():
            await self._operation(self.mix.next())

    async def _paced(self, rate: float) -> None:
        pace = Pace(rate, self.tally.start)
        room = asyncio.Semaphore(self.plan.concurrency)
        behind = 0.0
        while self.tally.running():
            for _ in range(pace.due()):
                await room.acquire()
                behind = max(behind, time.monotonic() - pace.next_at())
                self._spawn(self._operation(self.mix.next()), room.release)
            await asyncio.sleep(max(0.0, pace.next_at() - time.monotonic()))
        self.result.behind_schedule_ms = max(0.0, behind * 1000)

    def _spawn(self, work: Coroutine[Any, Any, None], done: Callable[[], None]) -> None:
        """Run a paced operation beside the schedule; ``done`` frees its place in flight."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: done())

    async def _operation(self, kind: str) -> None:
        if kind == "send":
            await self._send()
        elif kind == "open":
            await self._open()
        else:
            await self._recall()

    async def _timed(self, kind: str, call: Awaitable[None]) -> bool:
        began = time.monotonic()
        try:
            await call
        except FAILURES as exc:
            self.tally.failed(kind, _code(exc), began)
            return False
        self.tally.ok(kind, began)
        return True

    async def _send(self) -> None:
        if self.prepared:
            message = self.prepared.popleft()
        else:
            message = self._seal()
            self.result.sealed_live += 1
        tracked = self.messages[message.message_id] = Tracked(
            message, group=message.conversation_id in self.group_ids
        )
        sent = await self._timed(tracked.kind("send"), self.transport.send(message))
        if sent:
            tracked.acked_at = now_ms()
        if sent and not self.plan.fetch:
            self.to_open.extend((tracked, device) for device in message.recipients)
            self.to_recall.append(tracked)

    async def _open(self) -> None:
        while self.to_open:
            tracked, device = self.to_open.popleft()
            if not tracked.recalled:
                break
        else:
            self.tally.starved["open"] += 1
            await asyncio.sleep(0)  # let the sends it waits for get on
            return
        if await self._timed("open", self.transport.open(device, tracked.sent.message_id)):
            tracked.opened_at[device] = now_ms()

    async def _recall(self) -> None:
        while self.to_recall:
            tracked = self.to_recall.pop()
            if not tracked.recalled:
                break
        else:
            self.tally.starved["recall"] += 1
            await asyncio.sleep(0)
            return
        tracked.recalled = True
        tracked.awaiting = set(tracked.fetched)
        self.recalls.append(tracked)
        request = sign_recall(tracked.sent)
        tracked.recall_began = time.monotonic()
        if not await self._timed(
            tracked.kind("recall"), self.transport.recall(tracked.sent, request)
        ):
            tracked.awaiting.clear()

    # -- what arrives on the sockets -----------------------------------------------------------

    def _on_event(
        self, device: BenchDevice, kind: str, message_id: bytes, payload: dict[str, Any]
    ) -> None:
        tracked = self.messages.get(message_id)
        if tracked is None:
            return
        if kind == "message" and self.plan.fetch:
            self._react(self._fetch(device, tracked))
        elif kind == "revocation":
            self._react(self._receipt(device, tracked, payload["revocation"]))
        elif kind == "expired" and tracked.sent.expires_at is not None:
            self._expired(tracked)

    def _expired(self, tracked: Tracked) -> None:
        """A device told its copy expired: the delay from the timer's moment (wall clocks)."""
        due = tracked.sent.expires_at
        if due is None or tracked.acked_at is None or tracked.acked_at > due:
            return  # sent after its own moment (sealed ahead too long): not a timer's delay
        late_s = max(0.0, (now_ms() - due) / 1000)
        arrived = time.monotonic()
        self.tally.ok("expiry", arrived - late_s, arrived)

    def _react(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fetch(self, device: BenchDevice, tracked: Tracked) -> None:
        async with self.fetching:
            fetched = await self._timed(
                "fetch", self.transport.fetch(device, tracked.sent.message_id)
            )
        if not fetched or tracked.recalled:
            return
        tracked.fetched.add(device)
        self.to_open.append((tracked, device))
        if len(tracked.fetched) == len(tracked.sent.recipients):
            self.to_recall.append(tracked)

    async def _receipt(self, device: BenchDevice, tracked: Tracked, revocation: bytes) -> None:
        if device in tracked.awaiting and tracked.recall_began is not None:
            self.tally.ok("revocation", tracked.recall_began)
        async with self.receipting:
            message_id, request = sign_receipt(
                device, tracked.sent.sender.owner, revocation, tracked.opened_at.get(device)
            )
            accepted = await self._timed(
                "receipt", self.transport.receipt(device, message_id, request)
            )
        if accepted and device in tracked.awaiting and tracked.recall_began is not None:
            tracked.awaiting.discard(device)
            self.tally.ok(tracked.kind("propagation"), tracked.recall_began)

    # -- after the window ----------------------------------------------------------------------

    async def _drain(self) -> None:
        """Wait (up to ``drain_s``) for answers on their way and receipts still to come."""
        deadline = time.monotonic() + self.plan.drain_s
        while time.monotonic() < deadline and (self.tasks or self._awaiting()):
            await asyncio.sleep(0.02)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _awaiting(self) -> int:
        return sum(
            len(t.awaiting)
            for t in self.recalls
            if t.recall_began is not None and t.recall_began < self.tally.end
        )

    def _finish(self) -> WorkerResult:
        result = self.result
        result.propagation_pending = self._awaiting()
        result.counts = dict(self.tally.counts)
        result.samples = {kind: s.to_wire() for kind, s in self.tally.samples.items()}
        result.errors = {kind: dict(codes) for kind, codes in self.tally.errors.items()}
        result.starved = dict(self.tally.starved)
        for code in self.listener.closed:
            result.errors.setdefault("websocket", {}).setdefault(f"closed_{code}", 0)
            result.errors["websocket"][f"closed_{code}"] += 1
        return result
