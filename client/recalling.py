"""Recalling, with the outbox: the revocation is signed once and repeated byte for byte.

A recall is kept in the outbox like a send (client/sending.py): signed once,
in the same transaction that marks the local copy, and repeated exactly until
the relay answers, so a retry after a timeout or a crash is the same recall.
A replacement goes with it, sealed and wrapped like any message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e_recall import (
    ExpireFrom,
    sign_revocation,
    wire,
)

from .account import authed
from .attachments import (
    drop_ciphertext,
)
from .core import Core
from .errors import (
    RecallNotAccepted,
    RelayRefused,
    RelayUnreachable,
    UsageProblem,
)
from .sending import (
    _OUTBOX_LIMITS,
    _REWRAP,
    REWRAPS,
    _check_text,
    _local_copy,
    _note_attempt,
    _recipient_devices,
    _rewrap,
    _seal,
    _wraps,
)
from .store import OutboxItem, StoredMessage

__all__ = ["RecallOutcome", "deliver_recall", "recall"]

# Refusal codes that mean "the relay will never accept this recall".
_RECALL_REFUSALS = {
    "window_closed",
    "issued_after_window",
    "opened",
    "from_future",
    "rate_limited",
    "message_expired",
    "not_found",
}


@dataclass(frozen=True)
class RecallOutcome:
    message_id: bytes
    report: dict[str, Any] | None  # None while the recall waits in the outbox
    replacement_id: bytes | None
    already_recalled: bool
    queued: bool
    local_only: bool = False  # the message never left this device
    expired: bool = False  # its timer had destroyed it already: nothing to recall


async def recall(core: Core, message_id: bytes, replacement: str | None = None) -> RecallOutcome:
    """Recall one of our messages, optionally replacing it in the same request."""
    row = core.store.message(message_id)
    if row is None or not row.outgoing:
        raise UsageProblem("Only your own sent messages can be recalled.", "not_yours")
    if row.state == "recalled":
        return RecallOutcome(message_id, _report(row), row.replaced_by, True, queued=False)
    if row.state == "expired":  # deleted everywhere by its timer; a recall would change nothing
        return RecallOutcome(message_id, _report(row), None, False, queued=False, expired=True)
    if core.store.outbox_item(message_id, "send") is not None and row.state != "sent":
        return _cancel_unsent(core, row)
    waiting = core.store.outbox_item(message_id, "recall")
    if waiting is not None:  # signed earlier, not yet answered: repeat it as it is
        return await deliver_recall(core, waiting)
    if row.state not in ("sent", "deleted"):
        raise UsageProblem(
            f"This message cannot be recalled (it is {row.state.replace('_', ' ')}).",
            "not_recallable",
        )
    request: dict[str, Any] = {
        "replacement": None,
        "replacement_key": None,
        "replacement_id": None,
    }
    replacement_row = None
    if replacement is not None:
        _check_text(replacement)
        devices = await _recipient_devices(core, row)
        header, envelope, key = _seal(
            core,
            row.peer,
            replacement,
            sealed_window=row.recall_sealed_until - row.sent_at,
            opened_window=row.recall_opened_until - row.sent_at,
            replaces=message_id,
            conversation_id=row.conversation_id,
            timer=_timer_of(row),  # a correction disappears when the original would have
        )
        request["replacement"] = {
            "envelope": envelope,
            "wraps": _wraps(key, header, devices),
            "blobs": [],
        }
        request["replacement_key"] = key
        request["replacement_id"] = header.message_id
        replacement_row = _local_copy(core, header, replacement, row.peer)
    revocation = sign_revocation(
        core.keys.identity,
        message_id=message_id,
        conversation_id=row.conversation_id,
        issued_at=core.clock(),
        replacement_id=replacement_row.message_id if replacement_row else None,
    )
    request["revocation"] = revocation.signed
    item = OutboxItem(message_id, "recall", core.store.seal(wire.encode(request)), core.clock())
    with core.store.transaction():
        if replacement_row is not None:
            core.store.save_message(replacement_row)
        row.state, row.problem = "recalling", None
        core.store.save_message(row)
        core.store.save_outbox(item)
    return await deliver_recall(core, item)


async def _post_recall(core: Core, item: OutboxItem, request: dict[str, Any]) -> dict[str, Any]:
    """Post the recall; a replacement refused for stale wraps is wrapped again (bounded)."""
    body = {"revocation": request["revocation"], "replacement": request["replacement"]}
    path = f"/v1/messages/{item.message_id.hex()}/recall"
    for attempt in range(REWRAPS + 1):
        try:
            return await authed(core, "POST", path, body)
        except RelayRefused as exc:
            replaced = request["replacement_id"]
            copy = core.store.message(replaced) if replaced is not None else None
            if exc.code not in _REWRAP or copy is None or attempt == REWRAPS:
                raise
        key = {"key": request["replacement_key"]}
        body["replacement"]["wraps"] = await _rewrap(core, copy, key)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _timer_of(row: StoredMessage) -> tuple[int, ExpireFrom] | None:
    if row.expire_after is None or row.expire_from is None:
        return None
    return row.expire_after, ExpireFrom(row.expire_from)


def _cancel_unsent(core: Core, row: StoredMessage) -> RecallOutcome:
    """A message still in the outbox never reached anyone: drop it here."""
    with core.store.transaction():
        core.store.drop_outbox(row.message_id)
        row.state, row.body, row.recalled_at = "recalled", None, core.clock()
        row.problem = "Recalled before it left this device; no one received it."
        core.store.save_message(row)
        core.store.delete_files(row.message_id)
    drop_ciphertext(core, row.message_id)
    core.store.scrub()
    return RecallOutcome(row.message_id, None, None, False, queued=False, local_only=True)


def _report(row: StoredMessage) -> dict[str, Any] | None:
    if row.report is None:
        return None
    value = wire.decode(row.report, limits=_OUTBOX_LIMITS)
    return value if isinstance(value, dict) else None


async def deliver_recall(core: Core, item: OutboxItem) -> RecallOutcome:
    request = wire.decode(core.store.unseal(item.sealed), limits=_OUTBOX_LIMITS)
    assert isinstance(request, dict)
    row = core.store.message(item.message_id)
    assert row is not None
    replacement = request["replacement"]
    if isinstance(replacement, dict):  # kept by a client from before attachments
        replacement.setdefault("blobs", [])
    replacement_id: bytes | None = request["replacement_id"]
    try:
        answer = await _post_recall(core, item, request)
    except RelayUnreachable as exc:
        _note_attempt(core, item, exc.sentence)
        raise
    except RelayRefused as exc:
        with core.store.transaction():
            row.state, row.problem = "sent", exc.sentence
            core.store.save_message(row)
            core.store.drop_outbox(item.message_id, "recall")
            if replacement_id is not None:
                core.store.delete_message(replacement_id)
        if exc.code in _RECALL_REFUSALS or exc.status in (403, 404, 409, 410, 429):
            raise RecallNotAccepted(exc.sentence, exc.code, exc.status, exc.data) from None
        raise
    if answer.get("expired"):  # the timer destroyed it first: nothing was recalled or sent
        with core.store.transaction():
            row.state, row.body, row.recalled_at = "expired", None, core.clock()
            core.store.delete_files(item.message_id)
            row.report = wire.encode(answer["report"])
            core.store.save_message(row)
            core.store.drop_outbox(item.message_id, "recall")
            if replacement_id is not None:
                core.store.delete_message(replacement_id)
        core.store.scrub()
        return RecallOutcome(
            item.message_id, answer["report"], None, False, queued=False, expired=True
        )
    with core.store.transaction():
        row.state, row.body, row.recalled_at = "recalled", None, core.clock()
        core.store.delete_files(item.message_id)
        row.replaced_by = replacement_id
        row.report = wire.encode(answer["report"])
        core.store.save_message(row)
        core.store.drop_outbox(item.message_id, "recall")
        if replacement_id is not None:
            sent = core.store.message(replacement_id)
            if sent is not None:
                sent.state = "sent"
                core.store.save_message(sent)
    core.store.scrub()
    return RecallOutcome(
        item.message_id,
        answer["report"],
        replacement_id,
        bool(answer.get("already_recalled")),
        queued=False,
    )
