"""The crash suite's attachments: uploads, sends that bind them, downloads, and their reckoning.

Mixed into :class:`crash_harness.CrashRun`.  An upload is declared, then sent
in one or more PATCHes of random lengths, some of them trickled in pieces so
that a kill lands while the body streams.  A PATCH without a trustworthy
answer is never retried blindly: the uploader asks ``GET .../upload`` where
the stored bytes end and continues from there, as the client does.  Each
answer is checked against the highest offset a PATCH answer acknowledged (a
relay that says it holds less than it acknowledged lost synced bytes).

The blobs are random bytes of several lengths (empty, one byte, one 64 KiB
chunk and its tag and a byte, several chunks): the relay treats a blob as
opaque, and what it must keep is exactly these bytes and their digest.

At the end (:meth:`BlobReckoning._reckon_blobs`), with the relay up and
quiet:

- every blob bound by an acknowledged send of a message that was not
  recalled downloads byte for byte, with its digest, on every device;
- every blob of a recalled message is refused (410 or 404) on every device
  and the sender's, and no file of it is under ``blob_dir``;
- every upload not bound to a message is not downloadable by anyone (404),
  its stored offset is at least the acknowledged one, and it resumes from
  there to completion (the relay's digest check then proves the stored
  prefix is the uploaded one), binds to a new message and downloads byte
  for byte;
- after one more SIGKILL and start-up, every file under ``blob_dir`` is a
  blob still meant to be there: none of a recalled message, no orphan.

After every restart during the run, the files of blobs whose recall was
acknowledged before the kill must already be gone (the start-up sweep).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from e2e_recall import wire
from e2e_recall.domains import HASH_BLOB

from crash_model import Sent, Upload
from driver import Person, RelayRefused

OCTETS = "application/octet-stream"
_GONE = (404, 410)


def digest_of(blob: bytes) -> bytes:
    return hashlib.sha256(HASH_BLOB + blob).digest()


class BlobUnknown(Exception):
    """No answer we can trust (timeout, dropped connection, 5xx)."""


class BlobWork:
    """Blob operations of the crash workload (see the module's docstring)."""

    # provided by CrashRun
    rng: Any
    config: Any
    findings: Any
    people: list[Person]
    messages: list[Sent]
    relay: Any
    reckoning: bool
    uploads: list[Upload]
    upload_streaming: asyncio.Event
    blob_recall_sent: asyncio.Event
    blob_recall_acked: asyncio.Event
    destroyed: set[bytes]  # blob ids whose message's recall was acknowledged

    async def until_known(self, *args: Any, **kwargs: Any) -> Any: ...
    async def _relogin(self, person: Person, device: int) -> None: ...
    async def _prepare(
        self, sender: Person, recipient: Person, replaces: bytes | None, blobs: list[Upload]
    ) -> Sent: ...
    def _record(self, kind: str, outcome: str) -> None: ...

    @property
    def blob_dir(self) -> Path:
        return Path(self.relay.data_dir) / "blobs"

    # -- transport --------------------------------------------------------------------------
    async def octets(
        self,
        person: Person,
        method: str,
        path: str,
        data: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        device: int = 0,
    ) -> tuple[int, bytes]:
        """One raw request (blob bytes travel as octets); ``BlobUnknown`` without an answer."""
        while True:
            sent_headers = {
                "Authorization": f"Bearer {person.devices[device].token}",
                **(headers or {}),
            }

            async def exchange() -> tuple[int, bytes]:
                async with person.http.request(
                    method, person.relay.url + path, data=data, headers=sent_headers
                ) as response:
                    return response.status, await response.read()

            try:
                status, body = await asyncio.wait_for(exchange(), self.config.request_timeout)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise BlobUnknown(type(exc).__name__) from None
            if status == 401 and not isinstance(data, AsyncIterator):
                await self._relogin(person, device)  # a session lost with the relay
                continue
            if status >= 500 or status == 401:
                raise BlobUnknown(str(status))
            return status, body

    async def _download(
        self, person: Person, blob: Upload, device: int, *, deadline: float = 60.0
    ) -> tuple[int, bytes]:
        """GET the blob until the relay answers: the status and the body."""
        stop = time.monotonic() + deadline
        while True:
            try:
                return await self.octets(
                    person, "GET", f"/v1/blobs/{blob.blob_id.hex()}", None, {}, device
                )
            except BlobUnknown:
                if time.monotonic() > stop:
                    return 0, b""
                await asyncio.sleep(0.05 + self.rng.random() * 0.2)

    # -- operations -------------------------------------------------------------------------
    async def _upload_step(self) -> bool:
        """Start a new upload or move an unfinished one on by one PATCH."""
        unfinished = [
            u
            for u in self.uploads
            if not u.busy and not u.complete and u.created != "failed" and u.message is None
        ]
        if unfinished and self.rng.random() < 0.6:
            upload = self.rng.choice(unfinished)
        else:
            data = os.urandom(self.rng.choice(self.config.blob_sizes))
            owner = self.rng.choice(self.people)
            upload = Upload(owner, os.urandom(16), data, digest_of(data))
            self.uploads.append(upload)
        upload.busy = True
        try:
            await self._advance(upload)
        finally:
            upload.busy = False
        return True

    def _saw_offset(self, upload: Upload, offset: int, where: str) -> None:
        upload.offset = offset
        if offset < upload.acked:
            self.findings.blob_offsets_lost.append(
                f"{upload.blob_id.hex()[:12]}: {where} says {offset}, {upload.acked} acknowledged"
            )

    async def _declare(self, upload: Upload) -> bool:
        body = {"blob_id": upload.blob_id, "size": len(upload.data), "digest": upload.digest}
        outcome, answer = await self.until_known(upload.owner, "POST", "/v1/blobs", body)
        if upload.created != "ok":
            upload.created = outcome
            self._record("upload-create", outcome)
        if outcome != "ok":
            return False
        self._saw_offset(upload, int(answer["offset"]), "POST /v1/blobs")
        return True

    async def _status(self, upload: Upload) -> dict[str, Any] | None:
        path = f"/v1/blobs/{upload.blob_id.hex()}/upload"
        outcome, answer = await self.until_known(upload.owner, "GET", path, None)
        if outcome != "ok":
            if isinstance(answer, RelayRefused) and answer.status == 404 and upload.acked:
                self.findings.blob_offsets_lost.append(
                    f"{upload.blob_id.hex()[:12]}: gone, {upload.acked} acknowledged"
                )
            return None
        self._saw_offset(upload, int(answer["offset"]), "GET .../upload")
        if answer["complete"]:
            upload.complete = True
        return answer  # type: ignore[no-any-return]

    async def _trickle(self, piece: bytes) -> AsyncIterator[bytes]:
        """A body sent in a few pieces with pauses, so a kill can land in the middle of it."""
        self.upload_streaming.set()
        step = max(1, len(piece) // self.rng.randint(3, 8))
        for start in range(0, len(piece), step):
            yield piece[start : start + step]
            await asyncio.sleep(self.rng.uniform(0.002, 0.02))

    async def _advance(self, upload: Upload, *, whole: bool = False) -> None:
        """One PATCH from where the relay's stored bytes end (the rest when ``whole``)."""
        if upload.created != "ok" and not await self._declare(upload):
            return
        if upload.offset < 0 and await self._status(upload) is None:
            return
        if upload.complete:
            return
        offset, size = upload.offset, len(upload.data)
        rest = size - offset
        length = (
            rest if whole or rest == 0 or self.rng.random() < 0.4 else self.rng.randint(1, rest)
        )
        piece = upload.data[offset : offset + length]
        slow = length > 0 and self.rng.random() < 0.35 and not self.reckoning
        body: bytes | AsyncIterator[bytes] = self._trickle(piece) if slow else piece
        headers = {"Content-Type": OCTETS, "Upload-Offset": str(offset)}
        try:
            status, raw = await self.octets(
                upload.owner, "PATCH", f"/v1/blobs/{upload.blob_id.hex()}", body, headers
            )
        except BlobUnknown:
            upload.offset = -1  # ask the relay before the next PATCH
            self._record("upload-patch", "unknown")
            return
        answer = wire.decode(raw)
        if status == 200:
            self._saw_offset(upload, int(answer["offset"]), "PATCH")
            upload.acked = max(upload.acked, int(answer["offset"]))
            upload.complete = bool(answer["complete"])
            self._record("upload-patch", "ok")
            if not upload.complete and self.rng.random() < 0.2:
                await self._check_not_served(upload, "during the run")
            return
        self._record("upload-patch", "failed")
        code = answer.get("error")
        if not self.reckoning:
            self.findings.refusals[f"PATCH /v1/blobs/{{id}}: {code}"] += 1
        if status == 409 and code == "offset_mismatch":
            self._saw_offset(upload, int(answer["offset"]), "409 offset_mismatch")
        elif status == 422:
            self.findings.blobs_corrupted.append(f"{upload.blob_id.hex()[:12]}: {code}")
            upload.created = "failed"
        else:
            upload.offset = -1

    async def _check_not_served(self, upload: Upload, when: str) -> None:
        status, _ = await self._download(upload.owner, upload, 0)
        if status == 200:
            self.findings.partial_served.append(f"{upload.blob_id.hex()[:12]} {when}")
        elif status:
            self.findings.checked_partial_refused += 1

    def _ready_blobs(self, sender: Person) -> list[Upload]:
        """Some of the sender's complete, unbound uploads to bind to a send (maybe none)."""
        if self.rng.random() < 0.3:
            return []
        ready = [
            u
            for u in self.uploads
            if u.owner is sender and u.complete and u.message is None and not u.busy
        ]
        self.rng.shuffle(ready)
        return ready[: self.rng.randint(1, 2)]

    async def _download_step(self) -> bool:
        sent = self._pick_blob_message()
        if sent is None:
            return False
        device = self.rng.randrange(len(sent.recipient.devices))
        blob = self.rng.choice(sent.blobs)
        status, body = await self._download(sent.recipient, blob, device)
        if status == 200:
            if body != blob.data or digest_of(body) != blob.digest:
                self.findings.blobs_corrupted.append(f"{blob.blob_id.hex()[:12]} device {device}")
            sent.downloaded.add((blob.blob_id, device))
            self._record("download", "ok")
        elif status in _GONE:
            if not self._may_be_gone(sent):
                self.findings.blobs_lost.append(f"{blob.blob_id.hex()[:12]}: {status}")
            self._record("download", "failed")
        else:
            self._record("download", "unknown" if status == 0 else "failed")
        sent.busy = False
        return True

    def _pick_blob_message(self) -> Sent | None:
        candidates = [
            m for m in self.messages if not m.busy and m.blobs and m.send == "ok" and not m.recall
        ]
        if not candidates:
            return None
        chosen = self.rng.choice(candidates)
        chosen.busy = True
        return chosen

    def _may_be_gone(self, sent: Sent) -> bool:
        """Every device opened it and has every blob: completion may have removed it (grace)."""
        devices = range(len(sent.recipient.devices))
        return len(sent.opened) == len(devices) and all(
            (b.blob_id, d) in sent.downloaded for b in sent.blobs for d in devices
        )

    # -- kills ------------------------------------------------------------------------------
    async def _wait_for_blob_moment(self, roll: float) -> None:
        """Before a kill: wait for a streaming upload or a recall with files, if one comes."""
        if roll < 0.25:
            event, counter, delay = self.upload_streaming, "kills_mid_upload", 0.015
        elif roll < 0.45:
            event, counter, delay = self.blob_recall_sent, "kills_mid_blob_recall", 0.004
        else:
            event, counter, delay = self.blob_recall_acked, "kills_after_blob_recall", 0.002
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), 5)
        except TimeoutError:
            return
        await asyncio.sleep(self.rng.uniform(0, delay))
        setattr(self.findings, counter, getattr(self.findings, counter) + 1)

    def _after_start(self, destroyed_before: set[bytes], when: str) -> None:
        """Right after a start-up: what the sweep removed, and that recalled blobs left no file."""
        for line in self.relay.stderr().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "blob_sweep":
                self.findings.orphans_swept_at_start += int(entry.get("count", 0))
        left = {path.name for path in self._blob_files()} & {b.hex() for b in destroyed_before}
        self.findings.blob_files_left += [f"{name[:12]} {when}" for name in sorted(left)]
        self.findings.checked_blob_dirs += 1

    def _blob_files(self) -> list[Path]:
        if not self.blob_dir.exists():
            return []
        return sorted(p for p in self.blob_dir.rglob("*") if p.is_file())

    # -- reckoning --------------------------------------------------------------------------
    async def _reckon_blobs(self) -> None:
        alive: set[bytes] = set()
        bound: set[bytes] = set()
        for sent in self.messages:
            if sent.blobs and sent.send == "ok":
                alive |= await self._reckon_bound(sent)
                bound |= {b.blob_id for b in sent.blobs}
        loose = [u for u in self.uploads if u.blob_id not in bound and u.created != "failed"]
        alive |= await self._reckon_loose(loose)
        # One more kill and start-up: the sweep runs; whatever is left must be meant to be there.
        await asyncio.to_thread(self.relay.kill_all)  # SIGKILL
        await asyncio.to_thread(self.relay.restart_dead)
        self.findings.restarts += 1
        self._after_start(self.destroyed, "at the end")
        recalled = {b.blob_id.hex() for s in self.messages for b in s.blobs} - {
            b.hex() for b in alive
        }
        for path in self._blob_files():
            if path.name in {b.hex() for b in alive}:
                continue
            if path.name in recalled:
                self.findings.blob_files_left.append(f"{path.parent.name}/{path.name[:12]}")
            else:
                self.findings.orphan_files.append(f"{path.parent.name}/{path.name[:12]}")

    async def _reckon_bound(self, sent: Sent) -> set[bytes]:
        """An acknowledged send's blobs: present everywhere, or refused everywhere and unlinked."""
        path = f"/v1/messages/{sent.header.message_id.hex()}/report"
        outcome, report = await self.until_known(sent.sender, "GET", path, None)
        if outcome != "ok":
            return set()  # the message reckoning counts it lost
        state = report.get("state")
        if state == "recalled":
            for blob in sent.blobs:
                readers = [(sent.recipient, d) for d in range(len(sent.recipient.devices))]
                for person, device in [*readers, (sent.sender, 0)]:
                    status, _ = await self._download(person, blob, device)
                    if status not in _GONE:
                        self.findings.blobs_resurrected.append(
                            f"{blob.blob_id.hex()[:12]} to {person.name}/{device}: {status}"
                        )
                names = {p.name for p in self._blob_files()}
                if blob.blob_id.hex() in names:
                    self.findings.blob_files_left.append(f"{blob.blob_id.hex()[:12]} at the end")
                else:
                    self.findings.checked_blobs_recalled += 1
            return set()
        if state != "live":
            return set()  # completed after its grace, or expired: gone by design
        for blob in sent.blobs:
            for device in range(len(sent.recipient.devices)):
                status, body = await self._download(sent.recipient, blob, device)
                name = f"{blob.blob_id.hex()[:12]} device {device}"
                if status != 200:
                    self.findings.blobs_lost.append(f"{name}: {status}")
                elif body != blob.data or digest_of(body) != blob.digest:
                    self.findings.blobs_corrupted.append(name)
                else:
                    self.findings.checked_blobs_present += 1
        return {b.blob_id for b in sent.blobs}

    async def _reckon_loose(self, uploads: list[Upload]) -> set[bytes]:
        """Uploads bound to no message: not served, at their offset, resumable to the end."""
        finished: dict[str, list[Upload]] = {}
        for upload in uploads:
            if upload.created == "pending":
                continue  # never declared
            upload.message = None
            if await self._status(upload) is None:
                continue  # never created (an unknown declaration that did not happen)
            upload.created = "ok"
            await self._check_not_served(upload, "at the end")
            for _ in range(20):
                if upload.complete:
                    break
                await self._advance(upload, whole=True)
                if upload.offset < 0:
                    await self._status(upload)
            if not upload.complete:
                self.findings.blobs_not_resumable.append(
                    f"{upload.blob_id.hex()[:12]} at {upload.offset} of {len(upload.data)}"
                )
                continue
            finished.setdefault(upload.owner.name, []).append(upload)
        alive: set[bytes] = set()
        for done in finished.values():
            owner = done[0].owner
            recipient = next(p for p in self.people if p is not owner)
            for start in range(0, len(done), 16):
                group = done[start : start + 16]
                sent = await self._prepare(owner, recipient, None, group)
                outcome, answer = await self.until_known(owner, "POST", "/v1/messages", sent.body)
                if outcome != "ok":
                    self.findings.blobs_not_resumable.append(
                        f"{len(group)} resumed blobs would not bind: {answer}"
                    )
                    continue
                for blob in group:
                    status, body = await self._download(recipient, blob, 0)
                    if status != 200 or body != blob.data or digest_of(body) != blob.digest:
                        self.findings.blobs_not_resumable.append(
                            f"{blob.blob_id.hex()[:12]}: downloaded {status}, {len(body)} bytes"
                        )
                    else:
                        self.findings.checked_uploads_resumed += 1
                        alive.add(blob.blob_id)
        return alive
