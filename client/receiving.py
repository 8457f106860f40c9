"""Receiving: notices, fetching sealed ciphertext, opening, and obeying recalls.

A notice makes the client fetch the ciphertext at once (the message is then
"delivered, sealed" on this device) and verify it against the sender's pinned
identity; the key stays at the relay until the user opens the message.

A revocation is verified here, against the pinned key, never taken on the
relay's word.  Then every local trace goes (ciphertext, body, notification,
saved files), the row becomes a bare "recalled" marker (or disappears if the
message was never fetched), and the device signs a deletion receipt.  A
revocation that comes before its message is remembered, so the message is
never shown when it arrives.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from e2e_recall import (
    Body,
    Header,
    MessageKind,
    copy_expires_at,
    open_envelope,
    sign_deletion_receipt,
    unwrap_message_key,
    verify_revocation,
    wire,
)
from e2e_recall.body import decrypt_body
from e2e_recall.errors import AuthenticationFailure, E2ERecallError

from .account import authed
from .attachments import delete_message_files, keep_for_download
from .contacts import contact_for_sender
from .core import Core
from .errors import (
    KeystoreError,
    MessageExpired,
    NotFound,
    RelayRefused,
    RelayUnreachable,
    UsageProblem,
)
from .group_people import sender_contact
from .group_store import by_conversation
from .own_copies import is_copy, myself
from .reporting import is_news
from .store import Contact, OutboxItem, StoredMessage
from .wrap_keys import private_keys

__all__ = [
    "Update",
    "decrypt_opened",
    "delete_for_me",
    "deliver_receipt",
    "event_body",
    "open_body",
    "open_message",
    "process_event",
    "verify_fetched",
]

_PAYLOAD_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20, max_array=10_000)
_ENVELOPE_LIMITS = _PAYLOAD_LIMITS


@dataclass(frozen=True)
class Update:
    """Something a person should be told about, without any content."""

    # message | recalled | replaced | withdrawn | dropped | report; from Client.watch also
    # connected | caught_up | disconnected | displaced (another session took over: it stops)
    kind: str
    message_id: bytes
    peer: str
    detail: str = ""


def event_body(payload: bytes) -> dict[str, Any] | None:
    """A relay event's payload as a map, or None for anything else."""
    body = wire.decode(payload, limits=_PAYLOAD_LIMITS)
    return body if isinstance(body, dict) else None


async def process_event(core: Core, kind: str, message_id: bytes, payload: bytes) -> Update | None:
    """Apply one relay event; safe to repeat (events may come again after a crash)."""
    body = event_body(payload)
    if body is None:
        return None
    if kind == "message":
        return await _on_notice(core, message_id, body)
    if kind == "revocation":
        return await _on_revocation(core, message_id, body)
    if kind == "report":
        return _on_report(core, message_id, body)
    if kind == "group":
        from .groups import on_group_event  # it imports this module

        return await on_group_event(core, body)
    if kind in ("link", "device"):
        from .device_events import on_device_event

        return on_device_event(core, kind, message_id, body)
    if kind == "expired":
        from .expiring import on_expired_event  # it imports this module

        return await on_expired_event(core, message_id, body)
    return None


def _wipe(core: Core, row: StoredMessage) -> None:
    """Remove every trace of the content: ciphertext, body, notification, saved files."""
    row.envelope = None
    row.body = None
    core.store.clear_notification(row.message_id)
    note = _kept_files_note(delete_message_files(core, row.message_id))
    if note:
        row.problem = note
    shutil.rmtree(core.profile.files / row.message_id.hex(), ignore_errors=True)


def _kept_files_note(kept: list[str]) -> str | None:
    """Say which saved files a wipe had to leave: moved or replaced since they were saved."""
    if not kept:
        return None
    return (
        "Saved files that had been moved or changed since they were saved were left in "
        "place: " + ", ".join(kept)
    )


def verify_fetched(
    core: Core,
    who: Contact,
    message_id: bytes,
    envelope: bytes,
    conversation_id: bytes | None = None,
    key_id: bytes | None = None,
) -> tuple[Header, StoredMessage]:
    """Verify a fetched envelope against ``who``'s pinned key; the sealed row to keep.

    ``key_id`` is the fetch answer's: the id of this device's key the wrap is
    made to, kept on the row so that opening picks that one private key.

    The signature is checked before any header field is read; the header must
    name this message, its sender and our conversation with them (or the
    group's, ``conversation_id``, for a group message); then the
    envelope is sealed under the storage key, which is what lets
    :func:`decrypt_opened` use it later without verifying the same bytes again.
    """
    verified = open_envelope(envelope, core.verify_key(who.identity_key))
    header = verified.header
    if (
        header.message_id != message_id
        or header.sender != who.user_id
        or header.conversation_id != (conversation_id or core.conversation_with(who.user_id))
    ):
        raise UsageProblem("mismatched header", "mismatch")
    row = StoredMessage(
        message_id=message_id,
        conversation_id=header.conversation_id,
        peer=who.user_id,
        outgoing=0,
        sender_device=header.sender_device,
        sent_at=header.sent_at,
        received_at=core.clock(),
        state="sealed",
        kind=str(header.kind),
        envelope=core.store.seal(envelope),
        body=None,
        replaces=header.replaces,
        replaced_by=None,
        recall_sealed_until=header.recall_sealed_until,
        recall_opened_until=header.recall_opened_until,
        expire_after=header.expire_after,
        expire_from=None if header.expire_from is None else str(header.expire_from),
        expires_at=copy_expires_at(header, None),  # from-opened: set when this device opens it
        key_id=key_id if type(key_id) is bytes else None,
    )
    return header, row


async def _on_notice(core: Core, message_id: bytes, notice: dict[str, Any]) -> Update | None:
    if core.store.message(message_id) is not None:
        return None
    sender = notice.get("sender")
    if not isinstance(sender, bytes) or len(sender) != 32:
        return None
    group = by_conversation(core.store, notice.get("conversation_id"))
    if group is not None:
        if sender not in group.member_ids():  # as this device's verified chain has it now
            return Update(
                "dropped",
                message_id,
                group.name,
                f"A message to {group.name} from someone who is not a member was dropped.",
            )
        who = await sender_contact(core, sender)
    elif sender == core.user_id:
        from .own_copies import on_own_copy  # a copy sent from another of our devices

        return await on_own_copy(core, message_id, notice)  # type: ignore[no-any-return]
    elif notice.get("conversation_id") != core.conversation_with(sender):
        return Update(  # a group this device does not know (or no conversation at all)
            "dropped",
            message_id,
            "",
            "A message for a conversation this device is not part of was dropped.",
        )
    else:
        who = await contact_for_sender(core, sender)
    early = core.store.early_revocation(message_id)
    if early is not None and early[0] == who.user_id:  # its sender recalled it before it came
        return None
    try:
        fetched = await authed(core, "GET", f"/v1/messages/{message_id.hex()}")
    except RelayRefused as exc:
        if exc.status in (404, 410):  # recalled or expired before this device fetched it
            return None
        raise
    try:
        header, row = verify_fetched(
            core,
            who,
            message_id,
            fetched["envelope"],
            group.conversation_id if group else None,
            fetched.get("key_id"),
        )
    except (E2ERecallError, UsageProblem, KeyError, TypeError):
        return Update(
            "dropped",
            message_id,
            who.name,
            "A message claiming to be from this contact failed verification and was dropped.",
        )
    with core.store.transaction():
        core.store.save_message(row)
        core.store.notify(message_id, who.user_id, row.received_at)
        if header.kind is MessageKind.REPLACEMENT and header.replaces is not None:
            original = core.store.message(header.replaces)
            if original is not None and original.peer == who.user_id and not original.outgoing:
                original.replaced_by = message_id
                core.store.save_message(original)
    peer = f"{who.name} in {group.name}" if group else who.name
    if header.kind is MessageKind.REPLACEMENT:
        return Update("replaced", message_id, peer, "A correction arrived, sealed.")
    return Update("message", message_id, peer, "A sealed message arrived.")


async def _on_revocation(core: Core, message_id: bytes, event: dict[str, Any]) -> Update | None:
    sender = event.get("sender")
    signed = event.get("revocation")
    if not isinstance(sender, bytes) or not isinstance(signed, bytes):
        return None
    own = (
        sender == core.user_id and by_conversation(core.store, event.get("conversation_id")) is None
    )
    if own:
        who = myself(core)  # the recall of a copy from another of our devices
    elif by_conversation(core.store, event.get("conversation_id")) is not None:
        who = await sender_contact(core, sender)  # a recall stays the sender's, member or not
    else:
        who = await contact_for_sender(core, sender)
    try:
        revocation = verify_revocation(signed, core.verify_key(who.identity_key))
    except E2ERecallError:
        return Update("dropped", message_id, who.name, "A recall that did not verify was ignored.")
    if revocation.message_id != message_id or revocation.sender != who.user_id:
        return None
    row = core.store.message(message_id)
    opened_at = None
    with core.store.transaction():
        if row is None:
            core.store.remember_revocation(message_id, who.user_id, signed, core.clock())
        elif (not is_copy(row) if own else (row.outgoing or row.peer != who.user_id)) or (
            row.conversation_id != revocation.conversation_id
        ):
            return None
        elif row.state == "recalled":
            return None  # already obeyed; the receipt is in the outbox or delivered
        else:
            opened_at = row.opened_at
            _wipe(core, row)
            if row.state != "deleted":  # deleted for me stays out of sight
                row.state = "recalled"
            row.recalled_at = core.clock()
            row.replaced_by = revocation.replacement_id
            core.store.save_message(row)
        receipt = sign_deletion_receipt(
            core.keys.device.signing_key,
            user=core.user_id,
            device_id=core.device_id,
            message_id=message_id,
            conversation_id=revocation.conversation_id,
            deleted_at=core.clock(),
            opened_at=opened_at,
            revocation=revocation.digest,
        )
        item = OutboxItem(message_id, "receipt", receipt.signed, core.clock())
        core.store.save_outbox(item)
    core.store.scrub()
    await deliver_receipt(core, item)  # if the relay is unreachable it stays in the outbox
    if row is None:
        return None  # nothing was shown here, so nothing is explained
    detail = "replaced by a correction" if revocation.replacement_id else "recalled by the sender"
    return Update("recalled", message_id, who.name, detail)


async def deliver_receipt(core: Core, item: OutboxItem) -> bool:
    """Send a signed deletion receipt; False if the relay could not be reached."""
    try:
        await authed(
            core, "POST", f"/v1/messages/{item.message_id.hex()}/receipt", {"receipt": item.sealed}
        )
    except RelayUnreachable:
        with core.store.transaction():
            item.attempts += 1
            core.store.save_outbox(item)
        return False
    except RelayRefused:
        pass  # the relay no longer wants it (forgotten tombstone); nothing to retry
    with core.store.transaction():
        core.store.drop_outbox(item.message_id, "receipt")
    return True


def _on_report(core: Core, message_id: bytes, report: dict[str, Any]) -> Update | None:
    row = core.store.message(message_id)
    if row is None or not row.outgoing:
        return None
    held = wire.decode(row.report, limits=_PAYLOAD_LIMITS) if row.report is not None else None
    if not is_news(report, held if isinstance(held, dict) else None):
        return None  # an older snapshot than the one fetched since: keep the newer one
    with core.store.transaction():
        row.report = wire.encode(report)
        if report.get("state") == "recalled" and row.state != "recalled":
            _wipe(core, row)  # recalled from another of our devices
            row.state, row.recalled_at = "recalled", report.get("recalled_at")
        core.store.save_message(row)
    peer = core.store.contact_by_user(row.peer)
    group = by_conversation(core.store, row.conversation_id)
    name = group.name if group else peer.name if peer else row.peer.hex()[:8]
    return Update("report", message_id, name)


def decrypt_opened(core: Core, row: StoredMessage, wrap: bytes) -> str:
    """The text of :func:`open_body` (what the bench times)."""
    return open_body(core, row, wrap)[0].text


def open_body(
    core: Core, row: StoredMessage, wrap: bytes, key_id: bytes | None = None
) -> tuple[Body, bytes]:
    """Unwrap this device's copy of the key and decrypt the envelope kept since it came.

    That envelope was verified against the sender's pinned key before it was
    stored (:func:`verify_fetched`) and has been sealed under the storage key
    since, so these are the verified bytes and the signature is not checked a
    second time.  The body is authenticated by its own AEAD, with the signed
    header as associated data, under a key that unwraps only for this message,
    conversation and device.
    """
    assert row.envelope is not None
    parts = wire.decode(core.store.unseal(row.envelope), limits=_ENVELOPE_LIMITS)
    if not isinstance(parts, dict):
        raise KeystoreError("A stored message is damaged.", "store_damaged")
    header, nonce, ciphertext = parts.get("header"), parts.get("nonce"), parts.get("ciphertext")
    if type(header) is not bytes or type(nonce) is not bytes or type(ciphertext) is not bytes:
        raise KeystoreError("A stored message is damaged.", "store_damaged")
    key = _unwrap(core, row, wrap, key_id)
    return decrypt_body(nonce, ciphertext, key, header), key


def _unwrap(core: Core, row: StoredMessage, wrap: bytes, key_id: bytes | None) -> bytes:
    """Open the wrap with the private key it names (rotation keeps it until nothing needs it).

    The open answer's key id comes with the wrap, so it wins; without one (a
    relay that gives none there) the id the fetch answer named, kept on the
    row, picks the key.  A wrap stored before key ids names none anywhere:
    each kept key is tried, newest first.
    """
    named = key_id if type(key_id) is bytes else row.key_id
    candidates = private_keys(core, named)
    for index, private in enumerate(candidates):
        try:
            return unwrap_message_key(
                wrap,
                private,
                message_id=row.message_id,
                conversation_id=row.conversation_id,
                device_id=core.device_id,
            )
        except AuthenticationFailure:
            if index == len(candidates) - 1:
                raise
    raise KeystoreError("This device has no wrapping key.", "store_damaged")


async def open_message(core: Core, message_id: bytes) -> StoredMessage:
    """Release this device's key at the relay, decrypt, and keep the text sealed at rest."""
    row = core.store.message(message_id)
    if row is None or (row.outgoing and not is_copy(row)):
        raise NotFound("No received message with that id.", "no_message")
    if row.state == "expired" or (row.expires_at is not None and core.clock() >= row.expires_at):
        raise MessageExpired(
            "This message has expired: its sender's timer ran out, and it is deleted from "
            "this device.",
            "expired",
        )
    if row.state == "opened":
        return row
    if row.state != "sealed" or row.envelope is None:
        raise UsageProblem(f"This message cannot be opened: it was {row.state}.", "not_openable")
    who = core.store.contact_by_user(row.peer)
    if who is None and by_conversation(core.store, row.conversation_id) is None:
        raise NotFound("The sender is no longer among your contacts.", "no_contact")
    try:
        answer = await authed(core, "POST", f"/v1/messages/{message_id.hex()}/open", {})
    except RelayRefused as exc:
        if exc.status in (404, 410):
            with core.store.transaction():
                _wipe(core, row)
                row.state = "recalled" if exc.code == "message_recalled" else "expired"
                core.store.save_message(row)
            core.store.scrub()
            if exc.code == "message_expired" and row.expire_after is not None:
                raise MessageExpired(
                    "This message has expired: its sender's timer ran out before you opened "
                    "it here, and it is deleted from this device.",
                    "expired",
                ) from None
            raise UsageProblem(
                "This message was recalled by its sender before you opened it."
                if exc.code == "message_recalled"
                else "This message is no longer available at the relay.",
                exc.code,
            ) from None
        raise
    body, key = open_body(core, row, answer["wrap"], answer.get("key_id"))
    text = body.text
    with core.store.transaction():
        keep_for_download(core, message_id, key, body.files)
        row.body = core.store.seal(text.encode("utf-8"))
        row.envelope = None
        row.state, row.opened_at = "opened", core.clock()
        if row.expire_from == "opened" and row.expire_after is not None:
            row.expires_at = row.opened_at + row.expire_after  # copy_expires_at, from opening
        core.store.clear_notification(message_id)
        core.store.save_message(row)
    return row


def delete_for_me(core: Core, message_id: bytes) -> None:
    """Delete a message on this device only; a content-free marker keeps what a receipt needs."""
    row = core.store.message(message_id)
    if row is None:
        raise NotFound("No message with that id.", "no_message")
    with core.store.transaction():
        if row.state == "sending":
            core.store.drop_outbox(message_id, "send")
        _wipe(core, row)
        if row.outgoing and row.state in ("sending", "failed"):
            core.store.delete_message(message_id)
        else:
            row.state = "deleted" if row.state != "recalled" else row.state
            core.store.save_message(row)
    core.store.scrub()
