"""What the relay keeps on disk: never plaintext, and after a recall not even the ciphertext.

The blindness test sends a random canary and then looks for it in every byte
the relay keeps (database, WAL, SHM, logs).  The purge test recalls messages
and then looks for any 16-byte window of their ciphertexts or wraps in every
database file, after the relay's own checkpoint.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

from e2e_recall import wire
from relay.logs import JsonFormatter

from driver import MINUTE, Person, Relay

WINDOW = 16


def _windows(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def _hits(files: list[Path], windows: set[bytes]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        for i in range(len(data) - WINDOW + 1):
            if data[i : i + WINDOW] in windows:
                found.append(f"{path.name}@{i}")
                break
    return found


def _relay_files(relay: Relay) -> list[Path]:
    return [p for p in relay.data_dir.iterdir() if p.is_file()]


async def test_blindness_no_plaintext_anywhere(people: tuple[Person, Person]) -> None:
    alice, bob = people
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        canary = os.urandom(24).hex()
        for _ in range(3):
            header = await alice.send(bob, f"the canary is {canary}")
            assert canary in await bob.read(alice, header.message_id)
        recalled = await alice.send(bob, f"recall me {canary}")
        await bob.call("GET", f"/v1/messages/{recalled.message_id.hex()}")
        await alice.recall(recalled)
        await alice.relay.services.storage.checkpoint()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logs = log_text.getvalue()
    assert '"event":"request"' in logs  # the relay did log, so the scan means something
    for form in (canary.encode(), bytes.fromhex(canary)):
        assert form not in logs.encode()
        for path in _relay_files(alice.relay):
            assert form not in path.read_bytes(), path.name
    tokens = [d.token for p in people for d in p.devices if d.token]
    assert tokens
    assert not any(token in logs for token in tokens)


async def test_purge_leaves_no_window_of_ciphertext_or_wrap(people: tuple[Person, Person]) -> None:
    alice, bob = people
    await bob.add_device()  # two recipient devices: two wraps per message
    secrets: set[bytes] = set()
    headers = []
    for index in range(40):
        header, sealed = alice.seal(bob, os.urandom(300).hex() + f" #{index}")
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        await alice.call("POST", "/v1/messages", {"envelope": sealed.envelope, "wraps": wraps})
        envelope = wire.decode(sealed.envelope)
        secrets |= _windows(envelope["nonce"] + envelope["ciphertext"] + envelope["signature"])
        for item in wraps:
            secrets |= _windows(item["wrap"])
        headers.append(header)
    for header in headers[:20]:  # half were fetched, a quarter opened on one device
        await bob.call("GET", f"/v1/messages/{header.message_id.hex()}")
    for header in headers[:10]:
        await bob.read(alice, header.message_id)
    await alice.relay.services.storage.checkpoint()
    assert _hits(_relay_files(alice.relay), secrets), (
        "before the recall the ciphertext must be there"
    )
    alice.relay.clock.advance(MINUTE)
    for header in headers:
        await alice.recall(header)
    await alice.relay.services.storage.checkpoint()
    assert _hits(_relay_files(alice.relay), secrets) == []
    assert (alice.relay.data_dir / "relay.db-wal").stat().st_size == 0
