"""Attachment throughput and memory: one large file up to a relay and back down.

``python -m relay.bench.files --size 1GiB`` starts a relay process on
127.0.0.1 (a temporary data directory, its defaults), registers a sender and
a recipient, and moves one file of ``--size`` random bytes through it the
way a client does:

1. **encrypt**: the file is read and encrypted to its blob on the local disk
   (``FileEncryptor``: the secretstream chunks and the digest);
2. **upload**: the blob is declared (``POST /v1/blobs``) and streamed with
   one ``PATCH``; a message carrying its descriptor binds it;
3. **download**: the recipient streams the blob (``GET /v1/blobs/ID``) to
   its disk;
4. **decrypt**: the recipient checks every chunk, the padding and the digest
   while writing the file out, then compares it with the original.

Each step's throughput is the file's size over its wall time.  Memory is
sampled from ``/proc`` every 20 ms, for the relay process and for this one:
what is printed is the most either grew above its resident size before the
step, so "flat whatever the size" can be checked against a number.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

import e2e_recall as er
from e2e_recall import wire

from ..units import parse_size
from .errors import BenchFailed
from .processes import ServerProcess, relay_command
from .protocol import OPENED_WINDOW_MS, SEALED_WINDOW_MS, BenchDevice, RelayClient, now_ms

__all__ = ["main", "measure"]

_PIECE = 1 << 20  # what is read or written at a time
_SAMPLE_S = 0.02
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=120)


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` now (VmRSS), 0 if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class StepFigures:
    seconds: float
    mib_per_second: float
    relay_rss_growth: int
    bench_rss_growth: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "seconds": round(self.seconds, 3),
            "mib_per_second": round(self.mib_per_second, 1),
            "relay_rss_growth_bytes": self.relay_rss_growth,
            "bench_rss_growth_bytes": self.bench_rss_growth,
        }


async def _step(size: int, relay_pid: int, work: Callable[[], Awaitable[None]]) -> StepFigures:
    """Run ``work`` while sampling both processes' memory; its figures."""
    relay_before, bench_before = _rss(relay_pid), _rss(os.getpid())
    peaks = [relay_before, bench_before]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            peaks[0] = max(peaks[0], _rss(relay_pid))
            peaks[1] = max(peaks[1], _rss(os.getpid()))
            await asyncio.sleep(_SAMPLE_S)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        await work()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        await sampler
    return StepFigures(
        seconds,
        size / (1 << 20) / seconds if seconds else 0.0,
        peaks[0] - relay_before,
        peaks[1] - bench_before,
    )


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, _PIECE))
            out.write(piece)
            left -= len(piece)


def _encrypt(source: Path, blob: Path, key: bytes, size: int) -> bytes:
    encryptor = er.FileEncryptor(key, size)
    with open(source, "rb") as src, open(blob, "wb") as out:
        while piece := src.read(_PIECE):
            out.write(encryptor.update(piece))
        for chunk in encryptor.finish_chunks():
            out.write(chunk)
    return encryptor.digest


def _decrypt(blob: Path, target: Path, key: bytes, size: int, digest: bytes) -> None:
    decryptor = er.FileDecryptor(key, size, digest)
    with open(blob, "rb") as src, open(target, "wb") as out:
        while piece := src.read(_PIECE):
            out.write(decryptor.update(piece))
    decryptor.finish()


def _same_file(a: Path, b: Path) -> bool:
    hashes = []
    for path in (a, b):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while piece := handle.read(_PIECE):
                digest.update(piece)
        hashes.append(digest.digest())
    return hashes[0] == hashes[1]


async def _upload(
    http: aiohttp.ClientSession, url: str, sender: BenchDevice, blob: Path, blob_id: bytes
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        with open(blob, "rb") as handle:
            while piece := handle.read(_PIECE):
                yield piece

    headers = {
        **sender.authorization,
        "Content-Type": "application/octet-stream",
        "Content-Length": str(blob.stat().st_size),
        "Upload-Offset": "0",
    }
    async with http.patch(
        f"{url}/v1/blobs/{blob_id.hex()}", data=pieces(), headers=headers, timeout=_TIMEOUT
    ) as answer:
        body = await answer.read()
        if answer.status != 200 or not wire.decode(body).get("complete"):
            raise BenchFailed(f"The upload was refused (HTTP {answer.status}).")


async def _download(
    http: aiohttp.ClientSession, url: str, device: BenchDevice, blob_id: bytes, target: Path
) -> None:
    async with http.get(
        f"{url}/v1/blobs/{blob_id.hex()}", headers=device.authorization, timeout=_TIMEOUT
    ) as answer:
        if answer.status != 200:
            raise BenchFailed(f"The download was refused (HTTP {answer.status}).")
        with open(target, "wb") as out:
            async for piece in answer.content.iter_chunked(_PIECE):
                out.write(piece)


def _send_request(
    sender: BenchDevice,
    recipient: BenchDevice,
    key: bytes,
    message_id: bytes,
    descriptor: er.FileDescriptor,
) -> bytes:
    """A message whose body describes the file, wrapped to the recipient's device."""
    user = sender.owner
    conversation = er.direct_conversation_id(user.user_id, recipient.owner.user_id)
    now = now_ms()
    header = er.Header(
        message_id=message_id,
        conversation_id=conversation,
        sender=user.user_id,
        sender_device=sender.device_id,
        sent_at=now,
        recall_sealed_until=now + SEALED_WINDOW_MS,
        recall_opened_until=now + OPENED_WINDOW_MS,
    )
    sealed = er.seal_message(
        header, er.Body("a file", files=(descriptor,)), user.identity, message_key=key
    )
    wrap = er.wrap_message_key(
        key,
        recipient.secrets.wrap_key.public_key,
        message_id=message_id,
        conversation_id=conversation,
        device_id=recipient.device_id,
    )
    return wire.encode(
        {
            "envelope": sealed.envelope,
            "wraps": [
                {
                    "device_id": recipient.device_id,
                    "wrap": wrap,
                    "key_id": recipient.secrets.wrap_key.public_key.key_id,
                }
            ],
            "blobs": [descriptor.blob_id],
        }
    )


async def measure(size: int, work: Path) -> dict[str, Any]:
    """Run the four steps once against a relay of its own; the figures as a dict."""
    data_dir, port_file = work / "relay", work / "relay.port"
    relay = ServerProcess("relay", relay_command(port_file, data_dir, 2, None), work, port_file)
    relay.start()
    try:
        async with aiohttp.ClientSession() as http:
            client = await RelayClient.connect(http, relay.url)
            sender = (await client.register_user(0, 1)).devices[0]
            recipient = (await client.register_user(1, 1)).devices[0]
            source, blob, fetched, saved = (work / n for n in ("file", "blob", "fetched", "saved"))
            await asyncio.to_thread(_write_random, source, size)
            message_id, message_key, blob_id = os.urandom(16), os.urandom(32), os.urandom(16)
            key = er.file_key(message_key, message_id, 0)
            digest = b""
            pid = relay.cost.pid

            async def encrypt() -> None:
                nonlocal digest
                digest = await asyncio.to_thread(_encrypt, source, blob, key, size)

            async def upload() -> None:
                declared = {"blob_id": blob_id, "size": blob.stat().st_size, "digest": digest}
                await client.call("POST", "/v1/blobs", wire.encode(declared), sender)
                await _upload(http, relay.url, sender, blob, blob_id)
                descriptor = er.FileDescriptor(
                    blob_id, "bench.bin", size, "application/octet-stream", digest
                )
                request = _send_request(sender, recipient, message_key, message_id, descriptor)
                await client.call("POST", "/v1/messages", request, sender)

            async def download() -> None:
                await client.fetch(recipient, message_id)
                await _download(http, relay.url, recipient, blob_id, fetched)

            async def decrypt() -> None:
                await asyncio.to_thread(_decrypt, fetched, saved, key, size, digest)

            steps = {}
            for name, step in (
                ("encrypt", encrypt),
                ("upload", upload),
                ("download", download),
                ("decrypt", decrypt),
            ):
                steps[name] = await _step(size, pid, step)
            if not await asyncio.to_thread(_same_file, source, saved):
                raise BenchFailed("The file that came down is not the file that went up.")
            return {
                "file_bytes": size,
                "blob_bytes": blob.stat().st_size,
                "relay_peak_rss_bytes": relay.cost.peak_rss_bytes(),
                "steps": {name: figures.to_json() for name, figures in steps.items()},
            }
    finally:
        relay.stop()


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relay.bench.files",
        description="Move one large attachment up to a relay of its own and back down; "
        "throughput of each step and how much the relay's and the bench's memory grew.",
    )
    parser.add_argument("--size", default="1GiB", help="the file's size (default 1GiB)")
    parser.add_argument(
        "--dir",
        type=Path,
        help="where to put the file, its blob and the relay (default: a temporary directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with tempfile.TemporaryDirectory(prefix="e2e-recall-files-", dir=args.dir) as tmp:
            figures = asyncio.run(measure(size, Path(tmp)))
    except BenchFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"file {_mib(figures['file_bytes'])}, blob {_mib(figures['blob_bytes'])}")
    print(f"{'step':<10}{'seconds':>9}{'MiB/s':>9}{'relay RSS +':>14}{'bench RSS +':>14}")
    for name, step in figures["steps"].items():
        print(
            f"{name:<10}{step['seconds']:>9.2f}{step['mib_per_second']:>9.1f}"
            f"{_mib(step['relay_rss_growth_bytes']):>14}{_mib(step['bench_rss_growth_bytes']):>14}"
        )
    print(f"relay peak RSS over its life: {_mib(figures['relay_peak_rss_bytes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
