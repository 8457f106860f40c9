"""A relay process killed with SIGKILL in the middle of a stream of sends keeps its word.

Four senders post messages as fast as the relay acknowledges them while a
fifth task recalls some of the acknowledged ones; the relay is killed with
``kill -9`` mid-stream.  While it is down, ``e2e-recall-relay check`` finds
the database sound; after a restart every acknowledged message is there byte
for byte, and every acknowledged recall is still a recall (its ciphertext
never comes back).  Operations that were in flight at the kill may have
happened or not; nothing here depends on which.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import e2e_recall as er

from driver import Person, RelayRefused
from relay_process import RelayProcess, free_port, relay_cli, target

SENDERS = 4
PER_SENDER = 120
KILL_AFTER = 80  # acknowledged sends before the kill


@dataclass
class Ledger:
    """What the relay acknowledged before it died."""

    sent: dict[bytes, tuple[er.Header, bytes]]
    recalled: set[bytes]  # acknowledged recalls
    attempted: set[bytes]  # recalls asked for (the one in flight at the kill may be either)


async def _sender(
    alice: Person, batch: list[tuple[er.Header, dict[str, Any]]], ledger: Ledger
) -> None:
    for header, body in batch:
        try:
            await alice.call("POST", "/v1/messages", body)
        except (aiohttp.ClientError, RelayRefused, OSError):
            return  # the relay is gone (or refused while dying): this send is unknown
        ledger.sent[header.message_id] = (header, body["envelope"])


async def _recaller(alice: Person, ledger: Ledger, stop: asyncio.Event) -> None:
    done: set[bytes] = set()
    while not stop.is_set():
        waiting = [h for mid, (h, _) in list(ledger.sent.items())[::5] if mid not in done]
        for header in waiting:
            done.add(header.message_id)
            ledger.attempted.add(header.message_id)
            try:
                await alice.recall(header)
            except (aiohttp.ClientError, RelayRefused, OSError):
                return
            ledger.recalled.add(header.message_id)
        await asyncio.sleep(0.01)


async def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = RelayProcess(tmp_path, data, port=free_port())
    process.start()
    try:
        async with aiohttp.ClientSession() as http:
            relay = await target(http, process.url())
            alice, bob = Person("alice", relay, http), Person("bob", relay, http)  # type: ignore[arg-type]
            await alice.add_device()
            await bob.add_device()
            certificates = await alice.lookup(bob)
            batches: list[list[tuple[er.Header, dict[str, Any]]]] = [[] for _ in range(SENDERS)]
            for index in range(SENDERS * PER_SENDER):
                header, sealed = alice.seal(bob, f"durable {index}")
                wraps = [
                    {
                        "device_id": cert.device_id,
                        "wrap": er.wrap_message_key(
                            sealed.message_key,
                            cert.wrap_key,
                            message_id=header.message_id,
                            conversation_id=header.conversation_id,
                            device_id=cert.device_id,
                        ),
                        "key_id": cert.wrap_key.key_id,
                    }
                    for cert in certificates
                ]
                batches[index % SENDERS].append(
                    (header, {"envelope": sealed.envelope, "wraps": wraps, "blobs": []})
                )

            ledger = Ledger({}, set(), set())
            stop = asyncio.Event()
            tasks = [asyncio.create_task(_sender(alice, b, ledger)) for b in batches]
            tasks.append(asyncio.create_task(_recaller(alice, ledger, stop)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(ledger.sent) < KILL_AFTER:
                assert loop.time() < deadline, "the relay acknowledged too little to test"
                assert not all(t.done() for t in tasks[:SENDERS]), "the senders ran out"
                await asyncio.sleep(0.005)
            process.kill()  # SIGKILL, mid-stream
            stop.set()
            await asyncio.gather(*tasks)
            assert len(ledger.sent) < SENDERS * PER_SENDER, "the kill came after the stream"
            assert ledger.recalled, "no recall was acknowledged before the kill"

            check = relay_cli(tmp_path, "check", "--data-dir", data)  # while it is down
            assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr

            process.restart()
            for message_id, (header, envelope) in ledger.sent.items():
                report = await alice.report(message_id)
                if message_id in ledger.attempted and message_id not in ledger.recalled:
                    assert report["state"] in ("live", "recalled"), message_id.hex()
                if message_id in ledger.recalled or report["state"] == "recalled":
                    assert message_id in ledger.attempted, "a recall nobody asked for"
                    assert report["state"] == "recalled", message_id.hex()
                    assert report["purge_receipt"] is not None
                    with pytest.raises(RelayRefused) as gone:  # its ciphertext never comes back
                        await bob.call("GET", f"/v1/messages/{message_id.hex()}")
                    assert gone.value.status in (404, 410)
                    continue
                assert report["state"] == "live", message_id.hex()
                got = await bob.call("GET", f"/v1/messages/{message_id.hex()}")
                assert got["envelope"] == envelope
            assert process.stop() == 0
    finally:
        process.kill()
    check = relay_cli(tmp_path, "check", "--data-dir", data)
    assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr
