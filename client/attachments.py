"""Files sent with a message: sealed, uploaded with resume, downloaded, saved, recalled.

Sending: each file is encrypted, before anything is sent, to a ciphertext
file under the profile (``files/<message id>/``) with a key derived from the
message's own key, so the one wrap per device and the one recall cover
every file.  Uploading then reads that ciphertext and resumes, after a
broken connection or a restart, from the offset the relay says it holds;
the same bytes under the same blob id make a retry harmless.  The
ciphertext file goes once the relay has stored the message.

Receiving: the blob is downloaded to the same place (resumed with a
``Range`` request), its digest and every chunk are checked while it is
decrypted into a part file next to the downloads, and only a whole, checked
file is given a name (:mod:`client.saving`).  A recall removes the saved
file, the ciphertext and what the store knew of them.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from e2e_recall import (
    MAX_FILES,
    E2ERecallError,
    FileDecryptor,
    FileDescriptor,
    FileEncryptor,
    blob_length,
    file_key,
    wire,
)

from .account import authed, ensure_session, login
from .core import Core, FileProgress
from .errors import ClientError, RelayRefused, RelayUnreachable, UsageProblem
from .saving import SavedFile, forget_saved, part_file, place
from .store import StoredFile

__all__ = [
    "FileProgress",
    "OutgoingFile",
    "ReceivedFile",
    "delete_message_files",
    "drop_ciphertext",
    "keep_for_download",
    "mark_files_sent",
    "outgoing_files",
    "read_files",
    "record_sent_files",
    "save_files",
    "seal_files",
    "upload_files",
]

_READ = 1 << 20
_UPLOAD_TRIES = 5
_LIMITS = wire.Limits(max_size=64 << 10)


def _quiet(_name: str, _total: int) -> Callable[[int], None]:
    return lambda _moved: None


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    """A file being sent: its descriptor, and the ciphertext waiting to be uploaded."""

    descriptor: FileDescriptor
    blob_size: int
    cipher: Path

    def to_map(self) -> dict[str, Any]:
        return {**_descriptor_map(self.descriptor), "blob_size": self.blob_size}


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A received file as a person sees it: name, size, and where it was saved."""

    name: str
    size: int
    media_type: str
    saved_at: str | None  # the path, once saved


def _descriptor_map(descriptor: FileDescriptor) -> dict[str, Any]:
    return {
        "blob_id": descriptor.blob_id,
        "name": descriptor.name,
        "size": descriptor.size,
        "media_type": descriptor.media_type,
        "digest": descriptor.digest,
    }


def _descriptor(fields: dict[str, Any]) -> FileDescriptor:
    return FileDescriptor(
        blob_id=fields["blob_id"],
        name=fields["name"],
        size=fields["size"],
        media_type=fields["media_type"],
        digest=fields["digest"],
    )


def _message_dir(core: Core, message_id: bytes) -> Path:
    path = core.profile.files / message_id.hex()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# sending ----------------------------------------------------------------------------------------
def _open_regular(path: Path) -> tuple[Any, int]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise UsageProblem(f"Cannot read {path} ({exc.strerror}).", "bad_file") from None
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise UsageProblem(f"{path} is not a regular file.", "bad_file")
    return handle, info.st_size


def seal_files(
    core: Core, message_id: bytes, message_key: bytes, paths: Sequence[Path]
) -> list[OutgoingFile]:
    """Encrypt each file to ciphertext under the profile; nothing leaves the machine yet."""
    if len(paths) > MAX_FILES:
        raise UsageProblem(f"A message carries at most {MAX_FILES} files.", "too_many_files")
    sealed: list[OutgoingFile] = []
    try:
        for index, path in enumerate(paths):
            sealed.append(_seal_one(core, message_id, message_key, index, path))
    except BaseException:
        for done in sealed:
            done.cipher.unlink(missing_ok=True)
        raise
    return sealed


def _seal_one(
    core: Core, message_id: bytes, message_key: bytes, index: int, path: Path
) -> OutgoingFile:
    source, size = _open_regular(path)
    blob_id = os.urandom(16)
    cipher = _message_dir(core, message_id) / f"{blob_id.hex()}.blob"
    encryptor = FileEncryptor(file_key(message_key, message_id, index), size)
    try:
        with source, open(cipher, "xb") as out:
            read = 0
            while chunk := source.read(_READ):
                read += len(chunk)
                if read > size:
                    break
                out.write(encryptor.update(chunk))
            if read != size:
                raise UsageProblem(f"{path} changed while it was being read.", "file_changed")
            for sealed_chunk in encryptor.finish_chunks():  # the padding: flat memory too
                out.write(sealed_chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        cipher.unlink(missing_ok=True)
        raise
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    descriptor = FileDescriptor(
        blob_id=blob_id,
        name=path.name,
        size=size,
        media_type=media_type,
        digest=encryptor.digest,
    )
    return OutgoingFile(descriptor, blob_length(size), cipher)


def outgoing_files(core: Core, message_id: bytes, maps: list[dict[str, Any]]) -> list[OutgoingFile]:
    """The outbox's record of a send's files, with where their ciphertext waits."""
    folder = core.profile.files / message_id.hex()
    return [
        OutgoingFile(_descriptor(m), m["blob_size"], folder / f"{m['blob_id'].hex()}.blob")
        for m in maps
    ]


async def _stream_call(core: Core, call: Callable[[], Any]) -> Any:
    """A streaming request with the session renewed once, as ``authed`` does."""
    await ensure_session(core)
    try:
        return await call()
    except RelayRefused as exc:
        if exc.status != 401:
            raise
    core.relay.token = None
    await login(core)
    return await call()


async def upload_files(
    core: Core, files: Sequence[OutgoingFile], progress: FileProgress | None = None
) -> None:
    """Put every blob on the relay, resuming each from where the relay says it stands."""
    progress = progress or _quiet

    for item in files:
        blob = item.descriptor.blob_id.hex()
        answer = await authed(
            core,
            "POST",
            "/v1/blobs",
            {
                "blob_id": item.descriptor.blob_id,
                "size": item.blob_size,
                "digest": item.descriptor.digest,
            },
        )
        offset = int(answer.get("offset", 0))
        if answer.get("complete") or offset >= item.blob_size:
            continue
        if not item.cipher.exists():
            raise UsageProblem(
                f"The encrypted copy of {item.descriptor.name!r} is gone; send the file again.",
                "file_gone",
            )
        moved = progress(item.descriptor.name, item.blob_size)
        moved(offset)
        for attempt in range(_UPLOAD_TRIES):
            try:
                answer = await _stream_call(
                    core,
                    partial(core.relay.upload, f"/v1/blobs/{blob}", item.cipher, offset, moved),
                )
                break
            except RelayUnreachable:
                if attempt == _UPLOAD_TRIES - 1:
                    raise
                status = await authed(core, "GET", f"/v1/blobs/{blob}/upload")
                offset = int(status["offset"])
            except RelayRefused as exc:
                if exc.code != "offset_mismatch" or attempt == _UPLOAD_TRIES - 1:
                    raise
                stated = exc.data.get("offset")
                offset = stated if isinstance(stated, int) else 0
        if not answer.get("complete"):
            raise UsageProblem(
                f"The relay did not take all of {item.descriptor.name!r}.", "upload_incomplete"
            )


def record_sent_files(core: Core, message_id: bytes, files: Sequence[OutgoingFile]) -> None:
    """The sender's own record of what a message carried (in the caller's transaction)."""
    for index, item in enumerate(files):
        record = {**_descriptor_map(item.descriptor), "key": None, "saved": None}
        core.store.save_file(
            StoredFile(message_id, index, "sending", core.store.seal(wire.encode(record)))
        )


def mark_files_sent(core: Core, message_id: bytes) -> None:
    """The relay stored the message and its blobs (in the caller's transaction)."""
    for row in core.store.files(message_id):
        if row.state == "sending":
            row.state = "sent"
            core.store.save_file(row)


def drop_ciphertext(core: Core, message_id: bytes) -> None:
    """Remove a message's ciphertext files under the profile (uploads done, or recalled)."""
    folder = core.profile.files / message_id.hex()
    if folder.is_dir():
        for leftover in folder.iterdir():
            leftover.unlink(missing_ok=True)
        folder.rmdir()


# receiving --------------------------------------------------------------------------------------
def keep_for_download(
    core: Core, message_id: bytes, message_key: bytes, files: Sequence[FileDescriptor]
) -> None:
    """Record an opened message's files with their keys, to save now or after a failure.

    Runs inside the caller's transaction, beside the opened body.  The file
    keys are sealed under the storage key and dropped once the file is saved.
    """
    for index, descriptor in enumerate(files):
        record = {
            **_descriptor_map(descriptor),
            "key": file_key(message_key, message_id, index),
            "saved": None,
        }
        core.store.save_file(
            StoredFile(message_id, index, "waiting", core.store.seal(wire.encode(record)))
        )


def _record(core: Core, row: StoredFile) -> dict[str, Any]:
    value = wire.decode(core.store.unseal(row.sealed), limits=_LIMITS)
    if not isinstance(value, dict):
        raise UsageProblem("A stored file record is damaged.", "store_damaged")
    return value


def read_files(core: Core, message_id: bytes) -> list[ReceivedFile]:
    """What a message's files are, for listing (sender and recipient alike)."""
    found = []
    for row in core.store.files(message_id):
        record = _record(core, row)
        saved = record.get("saved")
        found.append(
            ReceivedFile(
                record["name"],
                record["size"],
                record["media_type"],
                saved[0] if isinstance(saved, list) else None,
            )
        )
    return found


async def save_files(
    core: Core, message_id: bytes, downloads: Path, progress: FileProgress | None = None
) -> list[ReceivedFile]:
    """Download, check and save every file of an opened message not saved yet."""
    progress = progress or _quiet
    for row in core.store.files(message_id):
        if row.state != "waiting":
            continue
        record = _record(core, row)
        descriptor = _descriptor(record)
        cache = _message_dir(core, message_id) / f"{descriptor.blob_id.hex()}.blob"
        await _download(core, descriptor, cache, progress)
        saved = _decrypt_into(cache, record["key"], descriptor, downloads)
        cache.unlink(missing_ok=True)
        record["key"] = None
        record["saved"] = [saved.path, saved.device, saved.inode, saved.size, saved.mtime_ns]
        with core.store.transaction():
            core.store.save_file(
                StoredFile(message_id, row.idx, "saved", core.store.seal(wire.encode(record)))
            )
    return read_files(core, message_id)


async def _download(
    core: Core, descriptor: FileDescriptor, cache: Path, progress: FileProgress
) -> None:
    total = blob_length(descriptor.size)
    have = cache.stat().st_size if cache.exists() else 0
    if have > total:  # not ours to trust: start again
        cache.unlink()
        have = 0
    moved = progress(descriptor.name, total)
    moved(have)
    path = f"/v1/blobs/{descriptor.blob_id.hex()}"
    for attempt in range(_UPLOAD_TRIES):
        if have >= total:
            return
        try:
            with open(cache, "ab") as out:

                def sink(chunk: bytes, out: Any = out) -> None:
                    out.write(chunk)
                    moved(len(chunk))

                await _stream_call(core, partial(core.relay.download, path, sink, have))
                out.flush()
                os.fsync(out.fileno())
        except RelayUnreachable:
            if attempt == _UPLOAD_TRIES - 1:
                raise
        have = cache.stat().st_size
        if have >= total:
            return
    raise UsageProblem(f"The relay sent only part of {descriptor.name!r}.", "download_incomplete")


def _decrypt_into(
    cache: Path, key: bytes, descriptor: FileDescriptor, downloads: Path
) -> SavedFile:
    decryptor = FileDecryptor(key, descriptor.size, descriptor.digest)
    with part_file(downloads) as (part, out):
        try:
            with open(cache, "rb") as blob:
                while chunk := blob.read(_READ):
                    out.write(decryptor.update(chunk))
            decryptor.finish()
        except E2ERecallError:
            cache.unlink(missing_ok=True)
            raise UsageProblem(
                f"The file {descriptor.name!r} did not check out (damaged, cut short or not "
                "the one the sender signed); nothing was saved.",
                "bad_file",
            ) from None
        return place(part, out, downloads, descriptor.name)


def delete_message_files(core: Core, message_id: bytes) -> list[str]:
    """Delete what a message's files left here; the paths that could not be deleted.

    A saved file is deleted only while it is the one we wrote; one the
    person moved or replaced is left, and named, so they can decide.
    """
    kept: list[str] = []
    for row in core.store.files(message_id):
        try:
            record = _record(core, row)
        except (ClientError, E2ERecallError):
            continue
        saved = record.get("saved")
        if isinstance(saved, list) and len(saved) == 5:
            found = SavedFile(*saved)
            if os.path.lexists(found.path) and not forget_saved(found):
                kept.append(found.path)
    core.store.delete_files(message_id)
    return kept
