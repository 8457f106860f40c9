"""The remanence suite: recall many messages, let the relay purge, scan every byte it keeps.

A relay process on loopback receives ``count`` messages with random bodies
(so every ciphertext and wrap is distinctive), each to a person with two
devices; some are fetched first (delivered but sealed), some opened by one
device, and all are recalled.  Nothing is checkpointed or purged by the
test: the relay's own post-recall checkpoint and its purge job (every
second) must do it.  Then every file the relay keeps (database, WAL, SHM,
relay key, its logs on stdout and stderr) is scanned for any 16-byte window
of any ciphertext (with its nonce and signature) or wrap; the signed header
stays, by design, as the content-free tombstone.  Before the recall the same scan must find them,
so a scan that sees nothing cannot pass for a clean disk.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from e2e_recall import wire

from driver import Person
from relay_process import RelayProcess, free_port, target

WINDOW = 16


@dataclass
class RemanenceFindings:
    messages: int = 0
    windows: int = 0
    bytes_scanned: int = 0
    files_scanned: list[str] = field(default_factory=list)
    hits_before_recall: int = 0
    hits_after: list[str] = field(default_factory=list)
    settle_seconds: float = 0.0


def windows_of(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def scan(files: list[Path], windows: set[bytes]) -> tuple[list[str], int]:
    """Every (file, offset) where a window occurs; and how many bytes were read."""
    hits: list[str] = []
    total = 0
    for path in files:
        data = path.read_bytes()
        total += len(data)
        for offset in range(len(data) - WINDOW + 1):
            if data[offset : offset + WINDOW] in windows:
                hits.append(f"{path.name}@{offset}")
    return hits, total


def relay_files(relay: RelayProcess) -> list[Path]:
    kept = [p for p in relay.data_dir.rglob("*") if p.is_file()]
    logs = [p for p in relay.tmp_path.glob("run-*/*") if p.name in ("stdout", "stderr")]
    return sorted(kept + logs)


async def _send_all(alice: Person, bob: Person, count: int) -> tuple[list[object], set[bytes]]:
    headers = []
    secrets: set[bytes] = set()
    for index in range(count):
        header, sealed = alice.seal(bob, os.urandom(96).hex())
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        await alice.call(
            "POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        )
        # The signed header is metadata the relay keeps in its tombstone (ids, sender, times);
        # what must go is the content: nonce, ciphertext and the signature over it.
        envelope = wire.decode(sealed.envelope)
        secrets |= windows_of(envelope["nonce"] + envelope["ciphertext"] + envelope["signature"])
        for wrap in wraps:
            secrets |= windows_of(wrap["wrap"])
        path = f"/v1/messages/{header.message_id.hex()}"
        if index % 3 == 1:  # delivered, never opened
            await bob.call("GET", path)
        elif index % 3 == 2:  # opened by one device of two
            await bob.call("GET", path, device=1)
            await bob.call("POST", path + "/open", {}, device=1)
        headers.append(header)
    return headers, secrets


async def remanence_suite(work: Path, count: int, settle: float = 30.0) -> RemanenceFindings:
    findings = RemanenceFindings(messages=count)
    relay = RelayProcess(
        work,
        work / "data",
        port=free_port(),
        E2E_RECALL_RELAY_PURGE_INTERVAL="1s",
        E2E_RECALL_RELAY_SCRUB_INTERVAL="2s",
        E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY="0",
        E2E_RECALL_RELAY_LOG_LEVEL="debug",
    )
    relay.start()
    try:
        async with aiohttp.ClientSession() as http:
            relay_target = await target(http, relay.url())
            alice = Person("alice", relay_target, http)  # type: ignore[arg-type]
            bob = Person("bob", relay_target, http)  # type: ignore[arg-type]
            await alice.add_device()
            await bob.add_device()
            await bob.add_device()
            headers, secrets = await _send_all(alice, bob, count)
            findings.windows = len(secrets)
            before, _ = scan(relay_files(relay), secrets)
            findings.hits_before_recall = len(before)
            for header in headers:
                await alice.recall(header)  # type: ignore[arg-type]
            started = time.monotonic()
            while True:  # wait for the relay's own checkpoint and purge; the test does neither
                hits, total = scan(relay_files(relay), secrets)
                if not hits or time.monotonic() - started > settle:
                    break
                await asyncio.sleep(0.5)
            findings.settle_seconds = time.monotonic() - started
            findings.hits_after = hits
            findings.bytes_scanned = total
            findings.files_scanned = [str(p.relative_to(work)) for p in relay_files(relay)]
    finally:
        relay.kill()
    return findings
