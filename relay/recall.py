"""Recall: verify, decide, purge, tombstone, tell every device, sign what was done.

The decision runs inside the storage transaction that applies it, with the
facts as that transaction sees them, so a device opening the message at the
same moment cannot slip between the decision and the purge.  In that one
transaction the relay destroys the ciphertext and every wrap, keeps the
content-free tombstone (header and signed revocation), queues the revocation
for each device that fetched the message, withdraws the notice from each
device that never did, stores a replacement if one came with the recall
(the whole recall is refused if the replacement's group changed since its
wraps were checked), and signs a purge receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from e2e_recall.envelope import Header, MessageKind
from e2e_recall.errors import ProtocolError
from e2e_recall.recall_rules import MessageFacts, decide_recall
from e2e_recall.receipts import PurgedDevice, sign_purge_receipt
from e2e_recall.report import DeviceState, Event
from e2e_recall.revocation import Revocation, verify_revocation
from e2e_recall.signing import SigningKey

from .accounts import Session
from .blobs.rules import bind_rule
from .config import Config
from .errors import BadRequest, NotFound, RelayError, from_protocol_error
from .groups.rules import MembershipMoved
from .messaging import (
    RETRY_RECHECKS,
    Messaging,
    PreparedMessage,
    Wrap,
    _merge,
    _transition,
    quota_refusal,
)
from .reports import report, report_events, revocation_event
from .storage.base import (
    Changes,
    DeliveryRecord,
    MessageState,
    MessageView,
    QuotaExceeded,
    Storage,
)

__all__ = ["RecallOutcome", "Recalls"]

DAY_MS = 24 * 60 * 60 * 1000
_PURGE_STATES = (
    DeviceState.NEVER_DELIVERED,
    DeviceState.DELIVERED_SEALED,
    DeviceState.PENDING,
    DeviceState.EXPIRED,
)


def _released(delivery: DeliveryRecord) -> int | None:
    """The key-release time a purge receipt attests for this device.

    An ``expired`` entry has none (docs/protocol.md, the purge receipt): the
    copy is gone, which is what the receipt says.  A copy a from-opened timer
    ended was opened first, so its row keeps the release time; passing it on
    made the receipt invalid and the recall a 500 (the crash suite found it:
    one device's copy expired, the other's still live, then a recall).
    """
    if delivery.state is DeviceState.EXPIRED:
        return None
    return delivery.key_released_at


@dataclass(frozen=True, slots=True)
class RecallOutcome:
    already_recalled: bool
    report: dict[str, Any]
    replacement_id: bytes | None
    expired: bool = False  # its timer destroyed it first: accepted, nothing done


class Recalls:
    """The recall rules of the relay."""

    def __init__(
        self,
        storage: Storage,
        messaging: Messaging,
        relay_key: SigningKey,
        config: Config,
        clock: Callable[[], int],
    ) -> None:
        self.storage = storage
        self.messaging = messaging
        self.relay_key = relay_key
        self.config = config
        self.clock = clock

    async def recall(
        self,
        session: Session,
        message_id: bytes,
        revocation_wire: bytes,
        replacement: tuple[bytes, list[Wrap], list[bytes]] | None = None,
    ) -> RecallOutcome:
        view = await self.storage.get_message(message_id)
        if view is None or not _involved(view, session.user_id):
            raise NotFound("No such message.")  # the same answer whether it exists or not
        identity = await self.messaging.accounts.cache.identity(session.user_id)
        if identity is None:
            raise NotFound("No such message.")
        try:
            revocation = verify_revocation(revocation_wire, identity)
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        if revocation.message_id != message_id:
            raise BadRequest(
                "The revocation is for another message than the one in the address.",
                "other_message",
            )
        prepared = None
        deferred: RelayError | None = None
        if replacement is not None:
            try:
                prepared = await self._replacement(session, revocation, *replacement)
            except RelayError as refusal:
                # A retry of this very recall, applied with its replacement in one transaction:
                # the recipients may have changed since, and nothing more is to be stored.
                # Whether it was applied is decided in the transaction, not on the view read
                # above: an attempt still running (at another relay process, on PostgreSQL) may
                # commit in between, and the retry was refused although the recall was applied.
                if refusal.code not in RETRY_RECHECKS:
                    raise
                deferred = refusal
        elif revocation.replacement_id is not None:
            raise BadRequest(
                "The revocation names a replacement, but none was sent.", "missing_replacement"
            )
        senders = await self.messaging.sender_devices(view.message.sender)
        now = self.clock()
        policy = self.config.policy

        def decide(view: MessageView) -> tuple[Changes, RecallOutcome]:
            message = view.message
            if deferred is not None and message.revocation != revocation_wire:
                raise deferred  # not a retry of this recall, applied: the refusal stands
            facts = MessageFacts(
                header=Header.decode(message.header),
                first_opened_at=message.first_opened_at,
                already_revoked=message.revocation is not None,
                recalls_today=view.recalls_since,
                expired_at=_expired_at(view),
            )
            try:
                decision = decide_recall(revocation, facts, now=now, policy=policy)
            except ProtocolError as exc:
                raise from_protocol_error(exc) from None
            if decision.already_recalled:  # idempotent: the stored revocation is in the report
                return Changes(), RecallOutcome(True, report(view), None)
            if decision.expired:  # nothing left to destroy; a replacement is not stored either
                return Changes(), RecallOutcome(False, report(view), None, expired=True)
            return self._purge(view, revocation, prepared, senders, now)

        try:
            return await self.storage.change_message(
                message_id,
                decide,
                recalls_since=now - DAY_MS,
                quota=self.config.user_quota,
                bind=bind_rule,
                membership=prepared.membership if prepared is not None else None,
            )
        except QuotaExceeded:  # the replacement would pass the quota: nothing was recalled
            raise quota_refusal() from None
        except MembershipMoved as moved:  # the replacement's group changed: nothing was recalled
            raise self.messaging.group_moved(revocation.conversation_id, moved) from None

    async def _replacement(
        self,
        session: Session,
        revocation: Revocation,
        envelope: bytes,
        wraps: list[Wrap],
        blobs: list[bytes],
    ) -> PreparedMessage:
        prepared = await self.messaging.prepare(session, envelope, wraps, blobs)
        header = prepared.header
        if header.kind is not MessageKind.REPLACEMENT or header.replaces != revocation.message_id:
            raise BadRequest(
                "The replacement must be a replacement of the recalled message.", "bad_replacement"
            )
        if revocation.replacement_id != header.message_id:
            raise BadRequest(
                "The revocation must name the replacement it comes with.", "bad_replacement"
            )
        if header.conversation_id != revocation.conversation_id:
            raise BadRequest("The replacement belongs to another conversation.", "bad_replacement")
        return prepared

    def _purge(
        self,
        view: MessageView,
        revocation: Revocation,
        replacement: PreparedMessage | None,
        senders: list[bytes],
        now: int,
    ) -> tuple[Changes, RecallOutcome]:
        message = view.message
        changes = Changes(purge=True, destroy_blobs=bool(view.files))
        deliveries = []
        for delivery in view.deliveries:
            deliveries.append(replace(_transition(delivery, Event.RECALLED, now), wrap=None))
        receipt = sign_purge_receipt(
            self.relay_key,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            revocation=revocation.digest,
            purged_at=now,
            devices=[
                PurgedDevice(d.user_id, d.device_id, d.state, d.fetched_at, _released(d))
                for d in deliveries
                if not d.own_device and d.state in _PURGE_STATES
            ],
        )
        recalled = replace(
            message,
            envelope=None,
            state=MessageState.RECALLED,
            recalled_at=now,
            revocation=revocation.signed,
            purge_receipt=receipt.signed,
        )
        changes.message = recalled
        changes.deliveries = deliveries
        for delivery in deliveries:
            if delivery.fetched_at is not None:
                changes.events.append(revocation_event(recalled, delivery.device_id))
            else:
                changes.drop_notices.append(delivery.device_id)
        if replacement is not None:
            changes.new_messages.append((replacement.record, replacement.deliveries))
            changes.new_blobs[replacement.record.message_id] = replacement.blobs
            changes.events.extend(replacement.events)
        after = _merge(view, changes)
        changes.events.extend(report_events(after, senders))
        outcome = RecallOutcome(False, report(after), revocation.replacement_id)
        return changes, outcome


def _expired_at(view: MessageView) -> int | None:
    """When the message was destroyed by expiry (timer or retention), if it was."""
    if view.message.state is not MessageState.EXPIRED:
        return None
    times = [d.expired_at for d in view.deliveries if d.expired_at is not None]
    return min(times, default=view.message.received_at)


def _involved(view: MessageView, user_id: bytes) -> bool:
    """The sender, or a user one of whose devices the message is addressed to."""
    return view.message.sender == user_id or any(d.user_id == user_id for d in view.deliveries)
