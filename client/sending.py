"""Sending, with an outbox that never duplicates (recalls: client/recalling.py).

A message is sealed once: its id, envelope bytes and per-message key are
written to the outbox in the same transaction as the local copy, before the
relay is asked.  Every retry (after a timeout, a dead relay, a crash) sends
the very same envelope under the same id, which the relay treats as the same
message, so a retry can never produce a second one.  Only when the relay
asks for wraps to devices it did not get (``missing_devices``), or says a
group's members changed under the send (``group_changed``), are the same
key's wraps made again for the new device list; the ciphertext never changes.
That happens a bounded number of times (:data:`REWRAPS`): recipients that
keep changing fail the message with a sentence that says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_recall import (
    Body,
    DeviceCertificate,
    ExpireFrom,
    Header,
    MessageKind,
    copy_expires_at,
    seal_message,
    wire,
    wrap_message_key,
)

from .account import authed
from .attachments import (
    OutgoingFile,
    drop_ciphertext,
    mark_files_sent,
    outgoing_files,
    record_sent_files,
    seal_files,
    upload_files,
)
from .contacts import cached_devices, check_not_changed, contact, refresh_devices
from .core import Core
from .errors import (
    ContactError,
    GroupRefused,
    IdentityChanged,
    RelayRefused,
    RelayUnreachable,
    UsageProblem,
)
from .group_people import member_devices
from .group_store import by_conversation
from .store import OutboxItem, StoredMessage

__all__ = [
    "DEFAULT_OPENED_WINDOW",
    "DEFAULT_SEALED_WINDOW",
    "REWRAPS",
    "PreparedSend",
    "SendOutcome",
    "flush_outbox",
    "post_body",
    "prepare_send",
    "send_text",
]

MINUTE = 60_000
DEFAULT_SEALED_WINDOW = 30 * 24 * 60 * MINUTE
DEFAULT_OPENED_WINDOW = 60 * MINUTE
MAX_TEXT = 64 * 1024
_OUTBOX_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20)

# Refusals that a fresh directory (and a group's fresh chain) answers: wrap the same key
# again and retry, at most REWRAPS times for one delivery.
_REWRAP = ("missing_devices", "stale_key", "group_changed")
REWRAPS = 3


@dataclass(frozen=True)
class SendOutcome:
    message_id: bytes
    queued: bool  # True: kept in the outbox because the relay could not be reached
    problem: str | None = None


def _wraps(key: bytes, header: Header, devices: list[DeviceCertificate]) -> list[dict[str, bytes]]:
    return [
        {
            "device_id": cert.device_id,
            "wrap": wrap_message_key(
                key,
                cert.wrap_key,
                message_id=header.message_id,
                conversation_id=header.conversation_id,
                device_id=cert.device_id,
            ),
            "key_id": cert.wrap_key.key_id,
        }
        for cert in devices
    ]


async def _devices(core: Core, name: str) -> list[DeviceCertificate]:
    """Fresh devices if the relay answers, the cached, verified ones if it does not.

    The contact's devices and our own other devices, which keep a copy.
    """
    who = contact(core, name)
    try:
        found = await refresh_devices(core, who)
    except RelayUnreachable:
        check_not_changed(who)
        found = cached_devices(core, who)
        if not found:
            raise
    return found + await member_devices(core, [core.user_id])


async def _recipient_devices(
    core: Core, row: StoredMessage, *, fresh: bool = False
) -> list[DeviceCertificate]:
    """Who a message of ``row``'s conversation goes to: the contact, or the group's members."""
    if by_conversation(core.store, row.conversation_id) is not None:
        from .group_sending import group_devices  # it imports this module

        return await group_devices(core, row.conversation_id)
    who = core.store.contact_by_user(row.peer)
    if who is None:
        raise ContactError("The recipient is no longer a contact.", "no_contact")
    if not fresh:
        return await _devices(core, who.name)
    return await refresh_devices(core, who) + await member_devices(core, [core.user_id])


def _check_text(text: str, *, with_files: bool = False) -> bytes:
    data = text.encode("utf-8")
    if not text.strip() and not with_files:
        raise UsageProblem("There is nothing to send: the message is empty.", "empty_message")
    if len(data) > MAX_TEXT:
        raise UsageProblem(
            f"The message is too long ({len(data)} bytes; at most {MAX_TEXT}).", "too_long"
        )
    return data


def _seal(
    core: Core,
    peer: bytes,
    text: str,
    *,
    sealed_window: int,
    opened_window: int,
    replaces: bytes | None = None,
    message_id: bytes | None = None,
    message_key: bytes | None = None,
    files: Sequence[OutgoingFile] = (),
    conversation_id: bytes | None = None,
    timer: tuple[int, ExpireFrom] | None = None,
) -> tuple[Header, bytes, bytes]:
    if not 0 < opened_window <= sealed_window:
        raise UsageProblem(
            "The recall window once opened must be positive and no longer than the window "
            "while sealed.",
            "bad_window",
        )
    now = core.clock()
    header = Header(
        message_id=os.urandom(16) if message_id is None else message_id,
        conversation_id=conversation_id or core.conversation_with(peer),
        sender=core.user_id,
        sender_device=core.device_id,
        sent_at=now,
        recall_sealed_until=now + sealed_window,
        recall_opened_until=now + opened_window,
        kind=MessageKind.REPLACEMENT if replaces else MessageKind.TEXT,
        replaces=replaces,
        expire_after=None if timer is None else timer[0],
        expire_from=None if timer is None else timer[1],
    )
    body = Body(text, files=tuple(f.descriptor for f in files))
    sealed = seal_message(header, body, core.keys.identity, message_key=message_key)
    return header, sealed.envelope, sealed.message_key


def _local_copy(core: Core, header: Header, text: str, peer: bytes) -> StoredMessage:
    return StoredMessage(
        message_id=header.message_id,
        conversation_id=header.conversation_id,
        peer=peer,
        outgoing=1,
        sender_device=core.device_id,
        sent_at=header.sent_at,
        received_at=header.sent_at,
        state="sending",
        kind=str(header.kind),
        envelope=None,
        body=core.store.seal(text.encode("utf-8")),
        replaces=header.replaces,
        replaced_by=None,
        recall_sealed_until=header.recall_sealed_until,
        recall_opened_until=header.recall_opened_until,
        expire_after=header.expire_after,
        expire_from=None if header.expire_from is None else str(header.expire_from),
        expires_at=copy_expires_at(header, None, sender_copy=True),  # ours: from sending
    )


@dataclass(frozen=True)
class PreparedSend:
    """A sealed message with everything the outbox and the relay need, before any I/O."""

    header: Header
    request: dict[str, Any]  # {"envelope", "wraps", "key"}: what the outbox keeps
    item: OutboxItem  # the request sealed under the storage key
    local_copy: StoredMessage


def prepare_send(
    core: Core,
    peer: bytes,
    text: str,
    devices: list[DeviceCertificate],
    *,
    sealed_window: int,
    opened_window: int,
    message_id: bytes | None = None,
    message_key: bytes | None = None,
    files: Sequence[OutgoingFile] = (),
    conversation_id: bytes | None = None,
    timer: tuple[int, ExpireFrom] | None = None,
) -> PreparedSend:
    """Seal ``text`` once, wrap its key to every verified device, seal it for the outbox.

    This is all the cryptography of a send (``e2e-recall bench`` times this very
    function); the caller does the database write and the delivery.  ``files``
    were encrypted already under ``message_key`` (:func:`seal_files`); only
    their descriptors go into the body.
    """
    header, envelope, key = _seal(
        core,
        peer,
        text,
        sealed_window=sealed_window,
        opened_window=opened_window,
        message_id=message_id,
        message_key=message_key,
        files=files,
        conversation_id=conversation_id,
        timer=timer,
    )
    request = {
        "envelope": envelope,
        "wraps": _wraps(key, header, devices),
        "key": key,
        "files": [f.to_map() for f in files],
    }
    item = OutboxItem(
        header.message_id, "send", core.store.seal(wire.encode(request)), core.clock()
    )
    return PreparedSend(header, request, item, _local_copy(core, header, text, peer))


def post_body(request: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /v1/messages`` for an outbox request (the key stays here)."""
    blobs = [f["blob_id"] for f in request.get("files", ())]
    return {"envelope": request["envelope"], "wraps": request["wraps"], "blobs": blobs}


async def send_text(
    core: Core,
    name: str,
    text: str,
    *,
    sealed_window: int = DEFAULT_SEALED_WINDOW,
    opened_window: int = DEFAULT_OPENED_WINDOW,
    files: Sequence[Path] = (),
    timer: tuple[int, ExpireFrom] | None = None,
) -> SendOutcome:
    """Seal, keep in the outbox, deliver; a dead relay leaves it queued, never lost.

    Files are encrypted to ciphertext under the profile first, then the
    message and its outbox entry are written in one transaction; a crash in
    between leaves only ciphertext that nothing refers to.
    """
    _check_text(text, with_files=bool(files))
    who = contact(core, name)
    devices = await _devices(core, name)
    message_id, message_key = os.urandom(16), os.urandom(32)
    sealed_files = seal_files(core, message_id, message_key, files)
    prepared = prepare_send(
        core,
        who.user_id,
        text,
        devices,
        sealed_window=sealed_window,
        opened_window=opened_window,
        message_id=message_id,
        message_key=message_key,
        files=sealed_files,
        timer=timer,
    )
    with core.store.transaction():
        core.store.save_message(prepared.local_copy)
        core.store.save_outbox(prepared.item)
        record_sent_files(core, message_id, sealed_files)
    # The request is still in memory: no need to unseal and decode what was just sealed.
    return await _deliver_send(core, prepared.item, prepared.request)


async def _deliver_send(
    core: Core, item: OutboxItem, request: dict[str, Any] | None = None
) -> SendOutcome:
    if request is None:  # a retry: the request as the outbox kept it
        request = wire.decode(core.store.unseal(item.sealed), limits=_OUTBOX_LIMITS)
        assert isinstance(request, dict)
    row = core.store.message(item.message_id)
    if row is None:  # deleted locally before it left: nothing to send
        with core.store.transaction():
            core.store.drop_outbox(item.message_id, "send")
        return SendOutcome(item.message_id, queued=False, problem="deleted before sending")
    for attempt in range(REWRAPS + 1):
        try:
            if attempt:  # the relay refused the last wraps: wrap again for a fresh list
                request["wraps"] = await _rewrap(core, row, request)
            files = outgoing_files(core, item.message_id, request.get("files", []))
            await upload_files(core, files, core.progress)
            await authed(
                core,
                "POST",
                "/v1/messages",
                post_body(request),
            )
            break
        except RelayUnreachable as exc:
            _note_attempt(core, item, exc.sentence)
            return SendOutcome(item.message_id, queued=True, problem=exc.sentence)
        except RelayRefused as exc:
            if exc.code in _REWRAP and attempt < REWRAPS:
                continue
            sentence = _kept_changing(attempt + 1) if exc.code in _REWRAP else exc.sentence
            _fail(core, row, sentence)
            return SendOutcome(item.message_id, queued=False, problem=sentence)
        except GroupRefused as exc:  # the fresh chain says we were removed meanwhile
            _fail(core, row, exc.sentence)
            return SendOutcome(item.message_id, queued=False, problem=exc.sentence)
        except (IdentityChanged, ContactError) as exc:
            _note_attempt(core, item, exc.sentence)
            return SendOutcome(item.message_id, queued=True, problem=exc.sentence)
    with core.store.transaction():
        row.state = "sent"
        row.problem = None
        core.store.save_message(row)
        core.store.drop_outbox(item.message_id, "send")
        mark_files_sent(core, item.message_id)
    drop_ciphertext(core, item.message_id)  # the relay holds it now
    return SendOutcome(item.message_id, queued=False)


async def _rewrap(
    core: Core, row: StoredMessage, request: dict[str, Any]
) -> list[dict[str, bytes]]:
    """Wrap the same key again for the recipients' current devices (same ciphertext)."""
    devices = await _recipient_devices(core, row, fresh=True)
    header = Header(
        message_id=row.message_id,
        conversation_id=row.conversation_id,
        sender=core.user_id,
        sender_device=row.sender_device,
        sent_at=row.sent_at,
        recall_sealed_until=row.recall_sealed_until,
        recall_opened_until=row.recall_opened_until,
    )
    wraps = _wraps(request["key"], header, devices)
    request["wraps"] = wraps
    item = core.store.outbox_item(row.message_id, "send")
    if item is not None:
        with core.store.transaction():
            item.sealed = core.store.seal(wire.encode(request))
            core.store.save_outbox(item)
    return wraps


def _kept_changing(tries: int) -> str:
    return (
        "The recipients' devices or the group's members kept changing while this message "
        f"was being sent (the relay refused it {tries} times, each time for a newer list); "
        "it was not sent. Send it again."
    )


def _note_attempt(core: Core, item: OutboxItem, error: str) -> None:
    with core.store.transaction():
        item.attempts += 1
        item.last_error = error
        core.store.save_outbox(item)


def _fail(core: Core, row: StoredMessage, sentence: str) -> None:
    with core.store.transaction():
        row.state = "failed"
        row.problem = sentence
        core.store.save_message(row)
        core.store.drop_outbox(row.message_id, "send")


async def flush_outbox(core: Core) -> list[str]:
    """Repeat every waiting request in order; stop at the first sign of a dead relay."""
    done = []
    for item in core.store.outbox():
        if item.action == "send":
            outcome = await _deliver_send(core, item)
            if outcome.queued:
                break
        elif item.action == "recall":
            from .recalling import deliver_recall  # it imports this module

            try:
                await deliver_recall(core, item)
            except RelayUnreachable:
                break
            except RelayRefused:
                pass  # recorded on the message; the user sees it in the report
        elif item.action == "receipt":
            from .receiving import deliver_receipt  # receiving imports this module

            if not await deliver_receipt(core, item):
                break
        done.append(item.action)
    return done
