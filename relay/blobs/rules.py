"""The blob rules, as pure functions of what is stored: no I/O, no SQL, no clock.

Every backend runs the same functions inside its transactions (creating a
blob, binding blobs to a message), and the message rules call
:func:`settled` and :func:`download_changes` to decide when a message with
files is done: only when every device it was addressed to has opened it
*and* received every blob, since after that nothing remains to escrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from e2e_recall.domains import ID_LEN
from e2e_recall.report import DeviceState

from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..storage.base import Changes, DeliveryRecord, MessageState, MessageView
from ..storage.blob_records import BlobRecord, CreateRule

__all__ = [
    "MAX_BLOBS",
    "bind_rule",
    "check_blob_list",
    "create_rule",
    "download_changes",
    "settled",
    "size_refusal",
]

MAX_BLOBS = 16  # a body lists at most 16 files (e2e_recall's MAX_FILES)


def size_refusal(size: int, max_file_size: int) -> PayloadTooLarge | None:
    """A declared blob longer than the operator allows is refused before anything is stored."""
    if size > max_file_size:
        return PayloadTooLarge(
            f"A file may be at most {max_file_size} bytes once encrypted at this relay.",
            "file_too_large",
        )
    return None


def create_rule(new: BlobRecord, quota: int) -> CreateRule:
    """The rule for ``POST /v1/blobs``: idempotent for the same declaration, quota otherwise."""

    def rule(existing: BlobRecord | None, used: int) -> tuple[BlobRecord, bool]:
        if existing is not None:
            if (existing.user_id, existing.size, existing.digest) == (
                new.user_id,
                new.size,
                new.digest,
            ):
                return existing, False
            raise Conflict("Another blob already has this id.", "blob_exists")
        if used + new.size > quota:
            raise PayloadTooLarge(
                "Your files at the relay (uploaded or being uploaded) would pass your quota.",
                "quota_exceeded",
            )
        return new, True

    return rule


def check_blob_list(blob_ids: Sequence[bytes]) -> tuple[bytes, ...]:
    """A send's ``blobs``: at most :data:`MAX_BLOBS` ids of 16 bytes, none twice."""
    if any(type(b) is not bytes or len(b) != ID_LEN for b in blob_ids):
        raise BadRequest("Each entry of blobs must be a 16-byte blob id.", "bad_blob_id")
    if len(blob_ids) > MAX_BLOBS:
        raise BadRequest(f"A message may carry at most {MAX_BLOBS} files.", "too_many_blobs")
    if len(set(blob_ids)) != len(blob_ids):
        raise BadRequest("A blob appears twice in the message.", "duplicate_blob")
    return tuple(blob_ids)


def bind_rule(
    message_id: bytes, sender: bytes, blob_ids: Sequence[bytes], found: dict[bytes, BlobRecord]
) -> None:
    """Each blob must be the sender's, complete, and free (or already this message's)."""
    for blob_id in blob_ids:
        blob = found.get(blob_id)
        if blob is None or blob.user_id != sender:
            raise NotFound(
                "A file of this message was never uploaded (or expired).", "blob_not_found"
            )
        if blob.completed_at is None:
            raise Conflict("A file of this message is not completely uploaded.", "blob_incomplete")
        if blob.message_id is not None and blob.message_id != message_id:
            raise Conflict("A file of this message belongs to another message.", "blob_bound")


def settled(deliveries: Sequence[DeliveryRecord], has_files: bool) -> bool:
    """Every device has its key and, when there are files, every blob: nothing left to hold.

    A device revoked before it had its key (its line ``never_delivered`` or
    ``delivered_sealed`` while the message is live) will never ask: nothing
    is held for it either.
    """
    return all(
        d.state in _GIVEN_UP
        or (d.key_released_at is not None and (not has_files or d.downloaded_at is not None))
        for d in deliveries
    )


_GIVEN_UP = frozenset({DeviceState.NEVER_DELIVERED, DeviceState.DELIVERED_SEALED})


def download_changes(view: MessageView, device_id: bytes, blob_id: bytes, now: int) -> Changes:
    """A device received the last byte of a blob: record it, and what that completes.

    When that was the device's last missing blob its line gains
    ``downloaded_at``; when it was the last thing any device was waiting for,
    the message is settled (``all_opened_at``) and the retention job removes
    it after ``open_grace``, as for a message without files.
    """
    delivery = view.delivery(device_id)
    if delivery is None or (blob_id, device_id) in view.downloads:
        return Changes()
    changes = Changes(blob_downloads=[(blob_id, device_id, now)])
    have = {b for b, d in view.downloads if d == device_id} | {blob_id}
    if delivery.downloaded_at is None and all(f.blob_id in have for f in view.files):
        after = replace(delivery, downloaded_at=now)
        changes.deliveries.append(after)
        others = [d for d in view.deliveries if d.device_id != device_id]
        message = view.message
        if (
            message.state is MessageState.LIVE
            and message.all_opened_at is None
            and settled([after, *others], True)
        ):
            changes.message = replace(message, all_opened_at=now)
    return changes
