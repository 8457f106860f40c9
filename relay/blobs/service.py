"""Uploads, downloads and destruction of blobs: the flows around the rules.

An upload is created (declared length and digest, refused over the size or
the quota before a byte is stored), then appended to in one or more PATCH
requests, each streamed from the socket to the file in bounded pieces, so
memory stays flat whatever the size.  Every PATCH syncs what reached the
disk before it answers, so a broken connection loses nothing acknowledged
and the client resumes at the stored offset.  When the last byte arrives
the whole blob is hashed (streamed) and compared with the declared digest;
a mismatch discards the upload entirely.

Blobs are destroyed by the transactions that end their message (recall,
expiry, completion) or their upload (expiry, digest mismatch): the rows go
in the transaction, and the storage calls :meth:`Blobs.on_destroyed` after
the commit, which zero-overwrites and unlinks the files.  A crash between
the two leaves files without rows; :meth:`Blobs.sweep` removes them at
start-up and after each retention run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from aiohttp import StreamReader

from e2e_recall.domains import HASH_BLOB

from ..accounts import Session
from ..config import Config
from ..errors import (
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    RelayError,
    RequestTimeout,
    Unprocessable,
)
from ..messaging import Messaging, _merge, completion
from ..reports import report_events
from ..storage.base import Changes, MessageView, Storage
from ..storage.blob_records import BlobRecord
from .rules import create_rule, download_changes, size_refusal
from .store import BlobStore, BlobWriter, OffsetMismatch

__all__ = ["HASH_BLOB", "Blobs", "Download", "blob_digest"]

log = logging.getLogger("relay.blobs")

_PIECE = 1 << 20  # bytes gathered from the socket before one write; bytes read per hash step


def blob_digest(file: BinaryIO) -> bytes:
    """SHA-256 over the label and the blob, read in pieces (memory stays flat)."""
    digest = hashlib.sha256(HASH_BLOB)
    while piece := file.read(_PIECE):
        digest.update(piece)
    return digest.digest()


class _Locks:
    """One asyncio lock per blob id, dropped when nobody holds or waits for it.

    Appends, completion and deletion of one blob take its lock, so a file is
    never zeroed while a request writes to it, nor written while it is zeroed.
    """

    def __init__(self) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, blob_id: bytes) -> AsyncIterator[None]:
        lock, users = self._locks.get(blob_id, (asyncio.Lock(), 0))
        self._locks[blob_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[blob_id]
            if users == 1:
                del self._locks[blob_id]
            else:
                self._locks[blob_id] = (lock, users - 1)


class Download:
    """A blob a device may read: its length, and the message whose report it changes."""

    def __init__(self, blob: BlobRecord, view: MessageView) -> None:
        self.blob = blob
        self.view = view


class Blobs:
    """The blob flows of one relay process."""

    def __init__(
        self,
        storage: Storage,
        store: BlobStore,
        messaging: Messaging,
        config: Config,
        clock: Callable[[], int],
    ) -> None:
        self.storage = storage
        self.store = store
        self.messaging = messaging
        self.config = config
        self.clock = clock
        self._locks = _Locks()
        self._unlinking: set[asyncio.Task[None]] = set()

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the directories and remove what a crash left without a row."""
        await asyncio.to_thread(self.store.open)
        await self.sweep()

    async def drain(self) -> None:
        """Let the unlinks already scheduled finish (at shutdown)."""
        while self._unlinking:
            await asyncio.gather(*self._unlinking, return_exceptions=True)

    def on_destroyed(self, blob_ids: list[bytes]) -> None:
        """Called by the storage after a commit deleted blob rows: unlink their files now."""
        task = asyncio.get_running_loop().create_task(self._unlink(blob_ids))
        self._unlinking.add(task)
        task.add_done_callback(self._unlinking.discard)

    async def _unlink(self, blob_ids: list[bytes]) -> None:
        for blob_id in blob_ids:
            async with self._locks.hold(blob_id):
                try:
                    await asyncio.to_thread(self.store.delete, blob_id)
                except OSError as exc:  # the sweep tries again at the next run or start
                    log.warning(
                        "blob unlink failed",
                        extra={"event": "blob_unlink_failed", "error": exc.strerror},
                    )

    async def sweep(self) -> int:
        """Delete every stored blob that has no row (a crash between commit and unlink)."""
        ids = await asyncio.to_thread(lambda: list(self.store.ids()))
        if not ids:
            return 0
        known = await self.storage.known_blobs(ids)
        orphans = [blob_id for blob_id in ids if blob_id not in known]
        await self._unlink(orphans)
        if orphans:
            log.info("orphan blobs removed", extra={"event": "blob_sweep", "count": len(orphans)})
        return len(orphans)

    # uploads --------------------------------------------------------------------------------
    async def create(
        self, session: Session, blob_id: bytes, size: int, digest: bytes
    ) -> tuple[BlobRecord, bool, int]:
        """Declare an upload (idempotent); the row, whether it is new, and the stored offset."""
        refusal = size_refusal(size, self.config.max_file_size)
        if refusal is not None:
            raise refusal
        new = BlobRecord(blob_id, session.user_id, size, digest, self.clock())
        rule = create_rule(new, self.config.blob_quota)
        blob, created = await self.storage.create_blob(new, rule)
        if not created:
            try:
                blob = await self._settle(blob)
            except Unprocessable:  # what a crash left did not match: declared anew
                blob, created = await self.storage.create_blob(new, rule)
        return blob, created, await self._offset(blob)

    async def _offset(self, blob: BlobRecord) -> int:
        if blob.completed_at is not None:
            return blob.size
        return await asyncio.to_thread(self.store.size, blob.blob_id) or 0

    async def _own(self, session: Session, blob_id: bytes) -> BlobRecord:
        blob = await self.storage.get_blob(blob_id)
        if blob is None or blob.user_id != session.user_id:
            raise NotFound("No such upload.", "blob_not_found")
        return blob

    async def _holds_all(self, blob: BlobRecord) -> bool:
        """Every byte is stored (a file exists: an empty blob has none before its PATCH)."""
        return await asyncio.to_thread(self.store.size, blob.blob_id) == blob.size

    async def _settle(self, blob: BlobRecord) -> BlobRecord:
        """An upload holding every byte but not marked complete is completed now (see below)."""
        if blob.completed_at is not None or not await self._holds_all(blob):
            return blob
        async with self._locks.hold(blob.blob_id):
            current = await self.storage.get_blob(blob.blob_id)
            if current is None:
                raise NotFound("No such upload.", "blob_not_found")
            return await self._settle_held(current)

    async def _settle_held(self, blob: BlobRecord) -> BlobRecord:
        """With the blob's lock: finish an upload a crash cut off after its last byte.

        Completion hashes the upload, renames it into ``complete/`` and marks
        the row; a relay killed between those steps leaves every byte stored
        and the row unfinished, and without this the upload would be stuck
        (its offset is its size, so no PATCH can add the byte that completes
        it).  Renamed already: the digest was checked before the rename, so
        only the row is marked.  Not renamed: the usual completion.
        """
        if blob.completed_at is not None or not await self._holds_all(blob):
            return blob
        if not await asyncio.to_thread(self.store.is_complete, blob.blob_id):
            await self._finish(blob)
        completed = await self.storage.complete_blob(blob.blob_id, self.clock())
        if completed is None:
            raise NotFound("No such upload.", "blob_not_found")
        return completed

    async def status(self, session: Session, blob_id: bytes) -> tuple[int, int, bool]:
        """Where an upload stands: offset, declared size, complete."""
        blob = await self._settle(await self._own(session, blob_id))
        return await self._offset(blob), blob.size, blob.completed_at is not None

    async def append(
        self, session: Session, blob_id: bytes, offset: int, body: StreamReader, length: int | None
    ) -> tuple[int, bool]:
        """Append a PATCH body at ``offset``; the offset reached, and whether it is complete."""
        blob = await self._own(session, blob_id)
        async with self._locks.hold(blob_id):
            blob = await self._own(session, blob_id)  # it may have expired while we waited
            blob = await self._settle_held(blob)
            stored = await self._offset(blob)
            if offset != stored:
                raise _mismatch(stored)
            if blob.completed_at is not None:
                if length:
                    raise _too_large(blob.size)
                return blob.size, True
            if length is not None and offset + length > blob.size:
                raise _too_large(offset)  # refused before a byte of it is stored
            try:
                writer = await asyncio.to_thread(self.store.append, blob_id, offset)
            except OffsetMismatch as exc:
                raise _mismatch(exc.offset) from None
            reached = await self._receive(writer, offset, blob.size, body)
            if reached == blob.size:
                await self._finish(blob)
                return reached, True
            return reached, False

    async def _receive(self, writer: BlobWriter, offset: int, size: int, body: StreamReader) -> int:
        """Copy the body to the writer until it ends; sync before returning or raising."""
        timeout = self.config.blob_read_timeout / 1000
        reached, pending = offset, bytearray()
        outcome: RelayError | None = None
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(body.readany(), timeout)
                except TimeoutError:
                    outcome = RequestTimeout(
                        f"The upload sent nothing for {timeout:g} seconds; resume it.",
                        "request_timeout",
                    )
                    break
                except Exception:  # the connection broke: keep what arrived, the client resumes
                    outcome = Conflict("The upload was interrupted.", "upload_interrupted")
                    break
                if not piece:
                    break
                room = size - reached - len(pending)
                if len(piece) > room:
                    pending += piece[:room]
                    outcome = _too_large(size)
                    break
                pending += piece
                if len(pending) >= _PIECE:
                    await asyncio.to_thread(writer.write, bytes(pending))
                    reached += len(pending)
                    pending.clear()
            if pending:
                await asyncio.to_thread(writer.write, bytes(pending))
                reached += len(pending)
            await asyncio.to_thread(writer.sync)
        except asyncio.CancelledError:
            writer.write(bytes(pending))  # the handler is being cancelled: keep what arrived
            writer.sync()
            raise
        finally:
            writer.close()
        if outcome is not None:
            outcome.data["offset"] = reached
            raise outcome
        return reached

    async def _finish(self, blob: BlobRecord) -> None:
        """Every byte is stored: check the digest, then seal the file and mark the row."""

        def check() -> bool:
            with self.store.open_upload(blob.blob_id) as file:
                return blob_digest(file) == blob.digest

        if not await asyncio.to_thread(check):
            await asyncio.to_thread(self.store.delete, blob.blob_id)
            await self.storage.discard_blob(blob.blob_id)
            raise Unprocessable(
                "The uploaded blob does not match its declared digest; it was discarded.",
                "digest_mismatch",
            )
        await asyncio.to_thread(self.store.seal, blob.blob_id)
        if await self.storage.complete_blob(blob.blob_id, self.clock()) is None:
            raise NotFound("No such upload.", "blob_not_found")  # expired meanwhile

    # downloads ------------------------------------------------------------------------------
    async def readable(self, session: Session, blob_id: bytes) -> Download:
        """The blob, for a device its message is addressed to or a device of its sender."""
        blob = await self.storage.get_blob(blob_id)
        if blob is None or blob.message_id is None or blob.completed_at is None:
            raise await self._absent(session, blob_id)
        view = await self.storage.get_message(blob.message_id)
        if view is None or not _may_read(view, session):
            raise NotFound("No such file.", "blob_not_found")
        return Download(blob, view)

    async def _absent(self, session: Session, blob_id: bytes) -> NotFound | Gone:
        """410 to a device that had the message of a destroyed blob; 404 to anyone else."""
        message_id = await self.storage.message_of_blob(blob_id)
        view = await self.storage.get_message(message_id) if message_id else None
        if view is not None:
            delivery = view.delivery(session.device_id)
            had = delivery is not None and delivery.fetched_at is not None
            if had or view.message.sender == session.user_id:
                return Gone("This file was deleted with its message.", "blob_gone")
        return NotFound("No such file.", "blob_not_found")

    def open_read(self, blob_id: bytes, offset: int) -> BinaryIO:
        return self.store.open_read(blob_id, offset)

    async def downloaded(self, session: Session, download: Download) -> None:
        """The last byte went out to this device: record it, with what that completes."""
        view = download.view
        if view.delivery(session.device_id) is None:
            return  # the sending device itself: it has no report line
        senders = await self.messaging.sender_devices(view.message.sender)
        now, grace = self.clock(), self.config.open_grace
        blob_id = download.blob.blob_id

        def decide(view: MessageView) -> tuple[Changes, None]:
            changes = download_changes(view, session.device_id, blob_id, now)
            if changes.message is not None and grace <= 0:  # settled, and no grace to wait
                after = _merge(view, changes)
                downloads = changes.blob_downloads
                changes = completion(after, changes.message, list(after.deliveries))
                changes.blob_downloads = downloads
            if changes.deliveries:
                changes.events.extend(report_events(_merge(view, changes), senders))
            return changes, None

        with contextlib.suppress(NotFound):
            await self.storage.change_message(view.message.message_id, decide)


def _may_read(view: MessageView, session: Session) -> bool:
    return view.delivery(session.device_id) is not None or view.message.sender == session.user_id


def _mismatch(stored: int) -> Conflict:
    return Conflict(
        f"The upload continues at byte {stored}; resume from there.",
        "offset_mismatch",
        data={"offset": stored},
    )


def _too_large(offset: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "The upload goes past the blob's declared size; nothing past it was kept.",
        "too_large",
        data={"offset": offset},
    )
