"""What the relay stores about blobs, and the store every backend implements for them.

A blob is one encrypted file: opaque bytes of a declared length and digest.
Its bytes live in a :class:`~relay.blobs.store.BlobStore` (a directory by
default), never in the database; the database keeps only the facts the
rules need -- who uploaded it, how long it must be, whether it is complete,
which message carries it, and which device received it.  Kept apart from
:mod:`.base` so each module stays one subject, and so that a PostgreSQL
backend implements the same few methods.

As with messages, the rules never write SQL: creating a blob runs a pure
function on what is stored (:data:`CreateRule`), and binding blobs to a
message runs :data:`BindRule` inside the transaction that stores it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BindRule",
    "BlobListener",
    "BlobMetaStore",
    "BlobRecord",
    "BoundFile",
    "CreateRule",
]


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """One upload while its bytes exist; the row goes when the bytes are destroyed."""

    blob_id: bytes
    user_id: bytes  # the uploader; only this user may append to it or bind it
    size: int  # the declared blob length, in bytes
    digest: bytes  # SHA-256 over the domain label and the blob, checked on completion
    created_at: int
    completed_at: int | None = None
    message_id: bytes | None = None  # the message a send bound it to


@dataclass(frozen=True, slots=True)
class BoundFile:
    """The content-free record that a message carried a blob, kept with its tombstone."""

    blob_id: bytes
    position: int  # its index in the send's ``blobs`` list
    size: int
    present: bool  # the blob's row (and so its bytes) still exist


# (what is stored under the id or None, the uploader's bytes in use) -> (row, created)
CreateRule = Callable[[BlobRecord | None, int], tuple[BlobRecord, bool]]
# (message id, sender, the ids asked for, the rows found by id) -> raises to refuse
BindRule = Callable[[bytes, bytes, Sequence[bytes], dict[bytes, BlobRecord]], None]
# told after a commit that destroyed blob rows, so their files can be unlinked
BlobListener = Callable[[list[bytes]], None]


class BlobMetaStore(Protocol):
    async def create_blob(self, blob: BlobRecord, rule: CreateRule) -> tuple[BlobRecord, bool]:
        """Run ``rule`` on the stored row and the uploader's usage; insert if it says so.

        The usage (the sizes of every blob row of the user) is read in the
        same transaction as the insert, so concurrent creates cannot pass the
        quota together.
        """

    async def get_blob(self, blob_id: bytes) -> BlobRecord | None: ...

    async def complete_blob(self, blob_id: bytes, at: int) -> BlobRecord | None:
        """Mark the blob complete (its bytes are all stored and their digest matched)."""

    async def discard_blob(self, blob_id: bytes) -> bool:
        """Delete an unbound blob's row (a digest mismatch); False if bound or unknown."""

    async def expire_uploads(self, created_before: int, limit: int) -> list[bytes]:
        """Delete unbound blob rows created before ``created_before``; their ids."""

    async def known_blobs(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``blob_ids`` have a row (the orphan sweep removes the others' files)."""

    async def message_of_blob(self, blob_id: bytes) -> bytes | None:
        """The message that carried ``blob_id``, while its record is kept; None otherwise."""

    def on_blobs_destroyed(self, listener: BlobListener) -> None:
        """Call ``listener`` with the ids of blob rows each commit deleted."""
