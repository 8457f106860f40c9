"""The floor under a send: each step the relay takes for one, timed alone.

``python -m relay.bench.floor`` builds the relay's real services on a
temporary SQLite database (no HTTP, no WebSocket), registers a sender and a
recipient, and times, over many sends of 1 KiB messages:

- decoding the request frame and checking its fields (what the WebSocket
  path does before anything else);
- verifying the envelope (the Ed25519 signature over the header and the
  ciphertext's hash, then the header's fields);
- checking the wraps against the recipient's devices (from the cache);
- storing message, delivery and notice in batches of 64 with one durable
  commit each (``synchronous=FULL``), as group commit does under load;
- encoding the answer and the notice frames;
- the whole ``Messaging.send`` as the relay runs it, one send at a time and
  64 at a time.

A step's figure is the median of several rounds, in microseconds per send.
The sum of the steps is the least a send can cost in this process; the
throughput targets are then a division away (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.auth import sign_registration

from ..accounts import Session
from ..api import check_body
from ..config import load_config
from ..messaging import Wrap
from ..metrics import Metrics
from ..services import Services
from ..storage.sqlite import SqliteStorage
from ..ws_requests import RequestRunner

__all__ = ["main", "measure"]

BATCH = 64


class _Party:
    def __init__(self) -> None:
        self.identity = er.SigningKey.generate()
        self.device = er.DeviceSecrets.generate()
        self.user_id = er.fingerprint(self.identity.public_key)
        self.session: Session | None = None


async def _join(services: Services, party: _Party, now: int) -> None:
    certificate = er.issue_device_certificate(
        party.identity,
        party.device.device_id,
        party.device.signing_key.public_key,
        party.device.wrap_key.public_key,
        created_at=now,
    ).signed
    challenge, _ = await services.accounts.challenge()
    id_sig, dev_sig = sign_registration(
        party.identity,
        party.device.signing_key,
        relay=services.accounts.relay_id,
        challenge=challenge,
        certificate=certificate,
    )
    await services.accounts.register(
        party.identity.public_key.raw, certificate, challenge, id_sig, dev_sig, None
    )
    party.session = Session(party.user_id, party.device.device_id, b"\x00" * 32, now + 10**9)


def _seal(sender: _Party, recipient: _Party, now: int) -> dict[str, Any]:
    header = er.Header(
        message_id=os.urandom(16),
        conversation_id=er.direct_conversation_id(sender.user_id, recipient.user_id),
        sender=sender.user_id,
        sender_device=sender.device.device_id,
        sent_at=now,
        recall_sealed_until=now + 86_400_000,
        recall_opened_until=now + 3_600_000,
    )
    sealed = er.seal_message(header, er.Body("x" * 1024), sender.identity)
    wrap = er.wrap_message_key(
        sealed.message_key,
        recipient.device.wrap_key.public_key,
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        device_id=recipient.device.device_id,
    )
    return {
        "envelope": sealed.envelope,
        "wraps": [
            {
                "device_id": recipient.device.device_id,
                "wrap": wrap,
                "key_id": recipient.device.wrap_key.public_key.key_id,
            }
        ],
        "blobs": [],
    }


async def _time(rounds: int, per_round: int, step: Callable[[int], Awaitable[None]]) -> float:
    """Median microseconds per item over ``rounds`` rounds of ``per_round`` items."""
    figures = []
    for number in range(rounds):
        started = time.perf_counter()
        await step(number)
        figures.append((time.perf_counter() - started) / per_round * 1e6)
    return statistics.median(figures)


async def measure(sends: int = 4096, rounds: int = 8) -> dict[str, float]:
    """Microseconds per send for each step (see the module's docstring)."""
    per_round = sends // rounds
    with tempfile.TemporaryDirectory(prefix="e2e-recall-floor-") as work:
        now = int(time.time() * 1000)
        config = load_config(env={}, flags={"data_dir": work, "port": 0})
        storage = SqliteStorage(Path(work) / "relay.db", lambda: now)
        await storage.open()
        try:
            services = Services(config, storage, lambda: now, Metrics())
            sender, recipient = _Party(), _Party()
            await _join(services, sender, now)
            await _join(services, recipient, now)
            assert sender.session is not None
            session = sender.session
            bodies = [_seal(sender, recipient, now) for _ in range(sends * 3)]
            frames = [
                wire.encode(
                    {"type": "request", "id": i, "op": "send", "message_id": None, "body": b}
                )
                for i, b in enumerate(bodies[:sends])
            ]
            identity = sender.identity.public_key
            figures: dict[str, float] = {}

            async def decode(number: int) -> None:
                for frame in frames[number * per_round : (number + 1) * per_round]:
                    request = RequestRunner.check(wire.decode(frame))
                    check_body(request["body"], "send")

            async def verify(number: int) -> None:
                for body in bodies[number * per_round : (number + 1) * per_round]:
                    er.open_envelope(body["envelope"], identity)

            prepared_list: list[Any] = []

            async def prepare(number: int) -> None:
                for body in bodies[number * per_round : (number + 1) * per_round]:
                    wraps = [Wrap(w["device_id"], w["wrap"], w["key_id"]) for w in body["wraps"]]
                    prepared_list.append(
                        await services.messaging.prepare(session, body["envelope"], wraps)
                    )

            async def store(number: int) -> None:
                chunk = prepared_list[number * per_round : (number + 1) * per_round]
                for start in range(0, len(chunk), BATCH):
                    await asyncio.gather(
                        *(
                            storage.insert_message(p.record, p.deliveries, p.events)
                            for p in chunk[start : start + BATCH]
                        )
                    )

            async def answer(number: int) -> None:
                for prepared in prepared_list[number * per_round : (number + 1) * per_round]:
                    wire.encode(
                        {
                            "type": "response",
                            "id": 1,
                            "status": 201,
                            "body": {
                                "message_id": prepared.record.message_id,
                                "received_at": now,
                                "created": True,
                            },
                        }
                    )
                    for event in prepared.events:
                        wire.encode(
                            {
                                "type": "event",
                                "seq": 1,
                                "kind": str(event.kind),
                                "message_id": event.message_id,
                                "payload": event.payload,
                            }
                        )

            second = bodies[sends : sends * 2]
            third = bodies[sends * 2 :]

            async def whole_serial(number: int) -> None:
                for body in second[number * per_round : (number + 1) * per_round]:
                    wraps = [Wrap(w["device_id"], w["wrap"], w["key_id"]) for w in body["wraps"]]
                    await services.messaging.send(session, body["envelope"], wraps)

            async def whole_concurrent(number: int) -> None:
                chunk = third[number * per_round : (number + 1) * per_round]
                for start in range(0, len(chunk), BATCH):
                    await asyncio.gather(
                        *(
                            services.messaging.send(
                                session,
                                body["envelope"],
                                [
                                    Wrap(w["device_id"], w["wrap"], w["key_id"])
                                    for w in body["wraps"]
                                ],
                            )
                            for body in chunk[start : start + BATCH]
                        )
                    )

            figures["decode and check the request frame"] = await _time(rounds, per_round, decode)
            figures["verify the envelope (Ed25519 + header)"] = await _time(
                rounds, per_round, verify
            )
            figures["all checks of a send (prepare)"] = await _time(rounds, per_round, prepare)
            figures["store message, delivery, notice (64 per commit)"] = await _time(
                rounds, per_round, store
            )
            figures["encode the answer and the notice"] = await _time(rounds, per_round, answer)
            figures["Messaging.send, one at a time"] = await _time(rounds, per_round, whole_serial)
            figures["Messaging.send, 64 at a time"] = await _time(
                rounds, per_round, whole_concurrent
            )
            return figures
        finally:
            await storage.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relay.bench.floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sends", type=int, default=4096, help="sends per step (default 4096)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.sends))
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for name, micros in figures.items():
        print(f"{micros:9.1f} us  {name}")
    serial = figures["Messaging.send, 64 at a time"]
    print(f"\nat {serial:.0f} us a send, one core stores at most {1e6 / serial:,.0f} sends/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
