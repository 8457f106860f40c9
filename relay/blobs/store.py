"""Where blob bytes live: the :class:`BlobStore` interface and its filesystem implementation.

The relay treats a blob as opaque bytes.  The interface is small enough for
another backend (an object store) to implement: append at an offset, the
size so far, read from an offset, seal a finished upload, delete, and list.
Every method blocks (file I/O); the service calls them in a thread.

The filesystem store keeps unfinished uploads in ``partial/`` and finished
blobs in ``complete/``, one file each named by the blob id in hex, so a
half-written file can never be served as a whole one: a blob becomes
complete by a rename, after its bytes were synced.  Deletion overwrites the
file with zeros and syncs before unlinking, so on a filesystem that writes
in place the bytes leave the disk (docs/operators.md says what that does
and does not mean on SSDs and copy-on-write filesystems).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["BlobStore", "BlobWriter", "FileBlobStore", "OffsetMismatch"]

_ZEROS = bytes(1 << 20)


class OffsetMismatch(Exception):
    """An append did not start where the stored bytes end; ``offset`` is where they do."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the stored bytes end at {offset}")
        self.offset = offset


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def sync(self) -> None:
        """Make every byte written so far durable (before an upload is acknowledged)."""

    def close(self) -> None: ...


class BlobStore(Protocol):
    def open(self) -> None:
        """Make the store ready (create its directories); called once at start-up."""

    def append(self, blob_id: bytes, offset: int) -> BlobWriter:
        """A writer that adds bytes at ``offset``; :class:`OffsetMismatch` if they end elsewhere."""

    def size(self, blob_id: bytes) -> int | None:
        """Bytes stored so far (partial or complete), None if nothing is."""

    def is_complete(self, blob_id: bytes) -> bool: ...

    def open_upload(self, blob_id: bytes) -> BinaryIO:
        """The unfinished upload from its start, to hash it before it is sealed."""

    def seal(self, blob_id: bytes) -> None:
        """The upload is whole and checked: make it the complete blob, durably."""

    def open_read(self, blob_id: bytes, offset: int) -> BinaryIO:
        """The complete blob, positioned at ``offset``; FileNotFoundError if there is none."""

    def delete(self, blob_id: bytes) -> bool:
        """Overwrite with zeros, sync, unlink (partial and complete); False if nothing was there."""

    def ids(self) -> Iterator[bytes]:
        """Every blob id with bytes stored, partial or complete (for the orphan sweep)."""


class _FileWriter:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _sync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FileBlobStore:
    """Blobs as files under one directory (``blob_dir``), private to the relay's user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / "partial"
        self.complete = root / "complete"

    def open(self) -> None:
        for folder in (self.root, self.partial, self.complete):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _name(self, blob_id: bytes) -> str:
        return blob_id.hex()

    def append(self, blob_id: bytes, offset: int) -> BlobWriter:
        if self.is_complete(blob_id):
            raise OffsetMismatch(self.size(blob_id) or 0)
        path = self.partial / self._name(blob_id)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file = os.fdopen(descriptor, "ab", buffering=0)
        stored = os.fstat(descriptor).st_size
        if stored != offset:
            file.close()
            raise OffsetMismatch(stored)
        if offset == 0:
            _sync_dir(self.partial)  # the new file's name is durable before any byte is acked
        return _FileWriter(file)

    def size(self, blob_id: bytes) -> int | None:
        for folder in (self.complete, self.partial):
            with contextlib.suppress(FileNotFoundError):
                return (folder / self._name(blob_id)).stat().st_size
        return None

    def is_complete(self, blob_id: bytes) -> bool:
        return (self.complete / self._name(blob_id)).exists()

    def open_upload(self, blob_id: bytes) -> BinaryIO:
        return (self.partial / self._name(blob_id)).open("rb")

    def seal(self, blob_id: bytes) -> None:
        name = self._name(blob_id)
        if (self.complete / name).exists():
            return
        os.replace(self.partial / name, self.complete / name)
        _sync_dir(self.complete)
        _sync_dir(self.partial)

    def open_read(self, blob_id: bytes, offset: int) -> BinaryIO:
        file = (self.complete / self._name(blob_id)).open("rb")
        file.seek(offset)
        return file

    def delete(self, blob_id: bytes) -> bool:
        found = False
        for folder in (self.partial, self.complete):
            path = folder / self._name(blob_id)
            try:
                _overwrite(path)
            except FileNotFoundError:
                continue
            found = True
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            _sync_dir(folder)
        return found

    def ids(self) -> Iterator[bytes]:
        for folder in (self.partial, self.complete):
            if not folder.is_dir():
                continue  # never opened (an operator command that runs the retention job)
            for entry in os.scandir(folder):
                name = entry.name
                if len(name) == 32 and all(c in "0123456789abcdef" for c in name):
                    yield bytes.fromhex(name)


def _overwrite(path: Path) -> None:
    """Write zeros over the whole file and sync, so its blocks no longer hold the blob."""
    with path.open("r+b", buffering=0) as file:
        left = os.fstat(file.fileno()).st_size
        while left > 0:
            step = min(left, len(_ZEROS))
            file.write(memoryview(_ZEROS)[:step])
            left -= step
        os.fsync(file.fileno())
