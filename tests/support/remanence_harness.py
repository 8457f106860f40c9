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

Most messages carry attachments (``files``): blobs of several lengths (empty,
one byte, a 64 KiB chunk and its tag and a byte, several chunks), uploaded
in one or two PATCHes and bound in the send; a third are downloaded by a
recipient device before the recall.  Besides them, some uploads are
abandoned: left unfinished halfway, or finished and never sent.  Nothing can
recall those; the relay's ``upload_expiry`` (a few seconds here) must.  The
scan then covers ``blob_dir`` as well (``partial/`` and ``complete/``), and
every 16-byte window of every blob, bound or abandoned, must be gone from
every file.

Megabytes of blobs make too many windows for a set of bytes, so each
16-byte window (of the secrets, and at every offset of every scanned file)
is keyed by a 64-bit value computed over it with numpy; a file window whose
key is a secret's is then compared byte for byte with that secret's window,
so a collision cannot make a hit, and none can hide one (equal windows have
equal keys).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt

from e2e_recall import wire
from e2e_recall.domains import HASH_BLOB
from relay.bench.postgres_server import PostgresServer

from driver import Person
from relay_process import RelayProcess, free_port, target
from remanence_pg import read_present, scrub_server, server_files

WINDOW = 16
OCTETS = "application/octet-stream"
BLOB_SIZES = (0, 1, 4096, 65_553, 150_000, 700_000)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_LOW = np.uint64((1 << 24) - 1)  # the key bits the bitmap of secrets is indexed by


@dataclass
class RemanenceFindings:
    messages: int = 0
    windows: int = 0
    bytes_scanned: int = 0
    files_scanned: list[str] = field(default_factory=list)
    hits_before_recall: int = 0
    hits_after: list[str] = field(default_factory=list)
    settle_seconds: float = 0.0
    blobs_bound: int = 0  # blobs sent with the messages, recalled with them
    blobs_abandoned: int = 0  # uploads never sent (unfinished or finished), left to expire
    blob_bytes: int = 0
    blob_windows: int = 0  # distinct 16-byte windows of all blobs
    blob_hits_before_recall: int = 0
    blob_files_before: int = 0  # files under blob_dir while everything was stored
    blob_files_after: int = 0
    scrub_ms: list[float] = field(default_factory=list)  # each scrub the relay logged


def windows_of(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def window_keys(data: bytes) -> npt.NDArray[np.uint64]:
    """A 64-bit key of the 16-byte window at every offset of ``data`` (equal windows: equal)."""
    count = len(data) - WINDOW + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    words = np.empty(len(data) - 7, dtype=np.uint64)  # the 8 bytes from each offset, as a number
    for start in range(8):  # every eighth offset at once: one little-endian view of the bytes
        words[start::8] = np.frombuffer(
            data, dtype="<u8", count=(len(data) - start) // 8, offset=start
        )
    with np.errstate(over="ignore"):
        return words[:count] * _MIX ^ words[8 : 8 + count]


class Windows:
    """Every 16-byte window of a set of secrets, as sorted keys, with where each one starts."""

    def __init__(self) -> None:
        self._buffer = bytearray()  # the blobs one after another
        self._keys: list[npt.NDArray[np.uint64]] = []
        self._starts: list[npt.NDArray[np.int64]] = []
        self.keys: npt.NDArray[np.uint64] = np.empty(0, dtype=np.uint64)
        self.starts: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.joined = b""
        self._bitmap = np.zeros(1 << 24, dtype=np.bool_)

    def add(self, secret: bytes) -> None:
        keys = window_keys(secret)  # windows inside this secret only, none across two
        self._keys.append(keys)
        self._starts.append(np.arange(len(keys), dtype=np.int64) + len(self._buffer))
        self._buffer += secret

    def seal(self) -> None:
        keys = np.concatenate([np.empty(0, dtype=np.uint64), *self._keys])
        starts = np.concatenate([np.empty(0, dtype=np.int64), *self._starts])
        order = np.argsort(keys, kind="stable")
        self.keys, self.starts = keys[order], starts[order]
        self.joined = bytes(self._buffer)
        self._keys, self._starts, self._buffer = [], [], bytearray()
        self._bitmap[:] = False
        self._bitmap[self.keys & _LOW] = True

    @property
    def distinct(self) -> int:
        """Distinct windows (the keys are sorted; equal keys: equal windows but for a collision)."""
        return int(len(self.keys) and 1 + np.count_nonzero(np.diff(self.keys)))

    def hits(self, data: bytes, *, confirm: bool) -> tuple[int, list[int]]:
        """Windows of ``data`` with a secret window's key; ``confirm``: offsets equal bytewise."""
        keys = window_keys(data)
        if not len(keys) or not len(self.keys):
            return 0, []
        # A bitmap of the secrets' keys' low bits first: most windows of a file fall out here,
        # so only the few left are looked up (an argsort of every window cost seconds per file).
        maybe = np.nonzero(self._bitmap[keys & _LOW])[0]
        places = np.searchsorted(self.keys, keys[maybe])
        inside = places < len(self.keys)
        equal = inside & (self.keys[np.minimum(places, len(self.keys) - 1)] == keys[maybe])
        candidates, places = maybe[equal], places[equal]
        if not confirm:
            return len(candidates), []
        confirmed = []
        for offset, first in zip(candidates.tolist(), places.tolist(), strict=True):
            window = data[offset : offset + WINDOW]
            place = int(first)
            while place < len(self.keys) and self.keys[place] == keys[offset]:
                start = int(self.starts[place])
                if self.joined[start : start + WINDOW] == window:
                    confirmed.append(offset)
                    break
                place += 1  # a 64-bit collision: another window with the same key
        return len(candidates), confirmed


def read_all(files: list[Path]) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in files]


def scan(
    files: list[tuple[Path, bytes]], secrets: Windows, blobs: Windows, *, confirm: bool = True
) -> tuple[list[str], int, int, int]:
    """Every (file, offset) where a window is; bytes read; envelope and blob windows matched."""
    hits: list[str] = []
    total = matched_secrets = matched_blobs = 0
    for path, data in files:
        total += len(data)
        for windows, label in ((secrets, ""), (blobs, " (blob)")):
            found, confirmed = windows.hits(data, confirm=confirm)
            if windows is secrets:
                matched_secrets += found
            else:
                matched_blobs += found
            hits += [f"{path.name}@{offset}{label}" for offset in confirmed]
    return hits, total, matched_secrets, matched_blobs


def relay_files(relay: RelayProcess) -> list[Path]:
    kept = [p for p in relay.data_dir.rglob("*") if p.is_file()]
    logs = [p for p in relay.tmp_path.glob("run-*/*") if p.name in ("stdout", "stderr")]
    return sorted(kept + logs)


def _digest(blob: bytes) -> bytes:
    return hashlib.sha256(HASH_BLOB + blob).digest()


async def _octets(
    person: Person, method: str, path: str, data: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    sent = {"Authorization": f"Bearer {person.devices[0].token}", **headers}
    body = io.BytesIO(data) if data is not None else None  # streamed, as a client does
    async with person.http.request(
        method, person.relay.url + path, data=body, headers=sent
    ) as response:
        return response.status, await response.read()


async def _upload(person: Person, blob: bytes, upto: int | None = None) -> bytes:
    """Declare and upload ``blob`` (to ``upto`` bytes only: an upload abandoned halfway)."""
    blob_id = os.urandom(16)
    await person.call(
        "POST", "/v1/blobs", {"blob_id": blob_id, "size": len(blob), "digest": _digest(blob)}
    )
    end = len(blob) if upto is None else upto
    cut = end // 2 if end > 1 else end  # in two PATCHes when there is room for two
    for start, stop in ((0, cut), (cut, end)) if cut else ((0, end),):
        status, answer = await _octets(
            person,
            "PATCH",
            f"/v1/blobs/{blob_id.hex()}",
            blob[start:stop],
            **{"Content-Type": OCTETS, "Upload-Offset": str(start)},
        )
        assert status == 200, wire.decode(answer)
    return blob_id


async def _send_all(
    alice: Person, bob: Person, count: int, files: bool, findings: RemanenceFindings
) -> tuple[list[object], Windows, Windows]:
    headers = []
    secrets, blobs = Windows(), Windows()
    for index in range(count):
        header, sealed = alice.seal(bob, os.urandom(96).hex())
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        attached: list[bytes] = []
        if files and index % 4 != 3:  # three in four carry files, every fifth two of them
            for number in range(2 if index % 5 == 0 else 1):
                blob = os.urandom(BLOB_SIZES[(index + number) % len(BLOB_SIZES)])
                attached.append(await _upload(alice, blob))
                blobs.add(blob)
                findings.blobs_bound += 1
                findings.blob_bytes += len(blob)
        await alice.call(
            "POST",
            "/v1/messages",
            {"envelope": sealed.envelope, "wraps": wraps, "blobs": attached},
        )
        # The signed header is metadata the relay keeps in its tombstone (ids, sender, times);
        # what must go is the content: nonce, ciphertext and the signature over it.
        envelope = wire.decode(sealed.envelope)
        secrets.add(envelope["nonce"] + envelope["ciphertext"] + envelope["signature"])
        for wrap in wraps:
            secrets.add(wrap["wrap"])
        path = f"/v1/messages/{header.message_id.hex()}"
        if index % 3 == 1:  # delivered, never opened
            await bob.call("GET", path)
        elif index % 3 == 2:  # opened by one device of two, its files downloaded
            await bob.call("GET", path, device=1)
            await bob.call("POST", path + "/open", {}, device=1)
            for blob_id in attached:
                status, _ = await _octets(bob, "GET", f"/v1/blobs/{blob_id.hex()}")
                assert status == 200
        headers.append(header)
    # Last, so that they are still there for the scan before the recalls: uploads given up
    # halfway, and uploads finished but never sent. Only upload_expiry removes them.
    for index in range(0, count if files else 0, 7):
        for half in (True, False):
            blob = os.urandom(BLOB_SIZES[(index + 3) % len(BLOB_SIZES)] + 2)
            await _upload(alice, blob, upto=len(blob) // 2 if half else None)
            blobs.add(blob)
            findings.blobs_abandoned += 1
            findings.blob_bytes += len(blob)
    return headers, secrets, blobs


def _shown(path: Path, work: Path, server: PostgresServer | None) -> str:
    """A scanned file's name: under the work directory, or under the server's."""
    if server is not None and path.is_relative_to(server.root):
        return "postgresql/" + str(path.relative_to(server.root))
    return str(path.relative_to(work))


def _blob_files(relay: RelayProcess) -> list[Path]:
    return [p for p in (relay.data_dir / "blobs").rglob("*") if p.is_file()]


async def remanence_suite(
    work: Path, count: int, settle: float = 30.0, *, files: bool = True, postgres: bool = False
) -> RemanenceFindings:
    """The suite on SQLite, or (``postgres``) on a PostgreSQL server of its own, scanned too."""
    server = scrub_server(in_pytest=False) if postgres else None
    try:
        return await _suite(work, count, settle, files, server)
    finally:
        if server is not None:
            server.stop()


async def _suite(
    work: Path, count: int, settle: float, files: bool, server: PostgresServer | None
) -> RemanenceFindings:
    findings = RemanenceFindings(messages=count)
    database = ["--database-url", server.create_database("relay")] if server else []

    def kept() -> list[Path]:
        return relay_files(relay) + (server_files(server) if server else [])

    relay = RelayProcess(
        work,
        work / "data",
        *database,
        port=free_port(),
        E2E_RECALL_RELAY_PURGE_INTERVAL="1s",
        E2E_RECALL_RELAY_SCRUB_INTERVAL="2s",
        E2E_RECALL_RELAY_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0",
        E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY="0",
        E2E_RECALL_RELAY_LOG_LEVEL="debug",
        E2E_RECALL_RELAY_UPLOAD_EXPIRY="6s",  # abandoned uploads: nothing else removes them
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
            headers, secrets, blobs = await _send_all(alice, bob, count, files, findings)
            findings.blob_files_before = len(_blob_files(relay))
            stored = read_present(kept())  # now: the abandoned uploads expire in seconds
            secrets.seal()
            blobs.seal()
            findings.windows = secrets.distinct
            findings.blob_windows = blobs.distinct
            _, _, matched, matched_blobs = scan(stored, secrets, blobs, confirm=False)
            findings.hits_before_recall = matched
            findings.blob_hits_before_recall = matched_blobs
            for header in headers:
                await alice.recall(header)  # type: ignore[arg-type]
            started = time.monotonic()
            while True:  # wait for the relay's own checkpoint and purge; the test does neither
                hits, total, _, _ = scan(read_present(kept()), secrets, blobs)
                if not hits or time.monotonic() - started > settle:
                    break
                await asyncio.sleep(0.5)
            findings.settle_seconds = time.monotonic() - started
            findings.hits_after = hits
            findings.bytes_scanned = total
            findings.files_scanned = [_shown(p, work, server) for p in kept()]
            findings.blob_files_after = len(_blob_files(relay))
            findings.scrub_ms = [
                float(entry["duration_ms"])
                for entry in relay.log_entries()
                if entry.get("event") == "scrubbed"
            ]
    finally:
        relay.kill()
    return findings
