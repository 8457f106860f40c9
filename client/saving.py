"""Putting a received file on the disk, and taking it off again after a recall.

A sender chooses the file name, so it is an attacker's string until
:func:`e2e_recall.sanitise_file_name` has reduced it to one harmless
component.  Even then it never replaces a file that is already there: the
bytes are written to a hidden part file in the same directory, made durable,
and only then linked under the first free name ("report.pdf",
"report (1).pdf", ...).  ``link`` fails when the name exists, so two
downloads at once can never overwrite each other either.  A failure at any
step removes the part file, so nothing half-saved stays behind.

What was saved is remembered by device and inode, size and modification
time: a recall deletes the file only while it is still the one we wrote,
never a file the person has since replaced with their own under that name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from e2e_recall import sanitise_file_name

from .errors import UsageProblem

__all__ = ["SavedFile", "forget_saved", "free_names", "part_file", "place", "still_ours"]

_MAX_TRIES = 1000


@dataclass(frozen=True, slots=True)
class SavedFile:
    """Where a received file went, and how to recognise it later."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SavedFile:
        info = path.stat()
        return cls(str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def free_names(name: str) -> Iterator[str]:
    """``name``, then ``stem (1).ext``, ``stem (2).ext`` ... (the name already sanitised)."""
    yield name
    stem, dot, extension = name.rpartition(".")
    if not stem:  # no extension, or a name that is only ".ext" (sanitising forbids that)
        stem, dot, extension = name, "", ""
    for number in range(1, _MAX_TRIES):
        yield f"{stem} ({number}){dot}{extension}"


@contextmanager
def part_file(directory: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new hidden file in ``directory``, removed again unless :func:`place` took it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageProblem(
            f"Cannot create the downloads directory {directory} ({exc.strerror}).",
            "downloads_unusable",
        ) from None
    path = directory / f".e2e-recall-{secrets.token_hex(8)}.part"
    try:
        handle = open(path, "xb")  # noqa: SIM115 -- closed below, on every path
    except OSError as exc:
        raise UsageProblem(
            f"Cannot write in the downloads directory {directory} ({exc.strerror}).",
            "downloads_unusable",
        ) from None
    try:
        os.chmod(path, 0o600)
        yield path, handle
    finally:
        handle.close()
        path.unlink(missing_ok=True)


def place(part: Path, handle: BinaryIO, directory: Path, sender_name: str) -> SavedFile:
    """Make the part file durable and give it the first free sanitised name."""
    handle.flush()
    os.fsync(handle.fileno())
    for candidate in free_names(sanitise_file_name(sender_name)):
        target = directory / candidate
        try:
            os.link(part, target)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageProblem(
                f"Cannot save {candidate!r} in {directory} ({exc.strerror}).",
                "downloads_unusable",
            ) from None
        _sync_directory(directory)
        return SavedFile.of(target)
    raise UsageProblem(
        f"Every name like {sender_name!r} is taken in {directory}; tidy it up and open again.",
        "no_free_name",
    )


def still_ours(saved: SavedFile) -> bool:
    """True while the path still holds the very file we wrote (not moved, not replaced)."""
    try:
        info = os.stat(saved.path, follow_symlinks=False)
    except OSError:
        return False
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) == (
        saved.device,
        saved.inode,
        saved.size,
        saved.mtime_ns,
    )


def forget_saved(saved: SavedFile) -> bool:
    """Delete a saved file after a recall; False if it is gone or is no longer ours.

    The bytes are overwritten before the name is removed, which helps on a
    plain filesystem and does not on a copy-on-write one or an SSD that
    remaps blocks (docs/threat-model.md says so).
    """
    if not still_ours(saved):
        return False
    try:
        with open(saved.path, "r+b") as handle:
            remaining = saved.size
            zeros = bytes(min(remaining, 1 << 20))
            while remaining > 0:
                remaining -= handle.write(zeros[: min(remaining, len(zeros))])
            handle.flush()
            os.fsync(handle.fileno())
        os.unlink(saved.path)
    except OSError:
        return False
    return True


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
