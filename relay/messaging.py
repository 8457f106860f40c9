"""Sending, fetching, opening and deletion receipts: the escrow rules.

The relay holds each device's wrap until that device opens the message and
records when it released it; that moment is what separates "sealed" from
"opened" in the report.  Every state change goes through
:func:`e2e_recall.report.apply_event` inside one storage transaction, and
queues the events (notices, report updates) in the same transaction, so a
crash can lose neither the change nor its announcement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from e2e_recall.envelope import Header, VerifiedEnvelope, open_envelope
from e2e_recall.errors import ImpossibleTransition, ProtocolError
from e2e_recall.expiry import copy_expires_at, message_expires_at
from e2e_recall.receipts import DeletionCause, verify_deletion_receipt
from e2e_recall.report import DeviceReport, DeviceState, Event, apply_event
from e2e_recall.revocation import revocation_digest
from e2e_recall.signing import VerifyKey

from .accounts import Accounts, Session
from .blobs.rules import bind_rule, check_blob_list, settled
from .config import Config
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    RelayError,
    from_protocol_error,
)
from .groups.rules import MembershipMoved, membership_moved, membership_rule
from .keys.service import WrapKeys
from .recipients import GroupLookup, Recipients, Wrap
from .reports import message_notice, report, report_events
from .storage.base import (
    Changes,
    DeliveryRecord,
    EventKind,
    MessageRecord,
    MessageState,
    MessageView,
    NewEvent,
    QuotaExceeded,
    Storage,
)
from .storage.group_records import GroupRecord, MembershipRule

__all__ = ["RETRY_RECHECKS", "Messaging", "PreparedMessage", "Wrap", "quota_refusal"]

# Refusals of a send that a retry of a stored one can meet although its first attempt passed:
# the recipients' keys, devices or group changed in between (found by the crash suite's review).
RETRY_RECHECKS = frozenset(
    {
        "stale_key",
        "missing_devices",
        "unknown_device",
        "not_a_member",
        "bad_recipients",
        "group_changed",
    }
)


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A checked send, ready to store: rows, notices and who to wake."""

    header: Header
    record: MessageRecord
    deliveries: list[DeliveryRecord]
    events: list[NewEvent]
    blobs: tuple[bytes, ...] = ()  # bound to the message in the transaction that stores it
    group: GroupRecord | None = None  # the group's head the wraps were checked against

    @property
    def membership(self) -> MembershipRule | None:
        """The rule the storing transaction runs: the group has not moved since the check."""
        return None if self.group is None else membership_rule(self.group)


def _transition(delivery: DeliveryRecord, event: Event, at: int) -> DeliveryRecord:
    """Apply one report event to a delivery row, through the core table."""
    line = DeviceReport(
        user=delivery.user_id,
        device_id=delivery.device_id,
        state=delivery.state,
        fetched_at=delivery.fetched_at,
        key_released_at=delivery.key_released_at,
        recalled_at=delivery.recalled_at,
        deleted_at=delivery.deleted_at,
        expired_at=delivery.expired_at,
    )
    try:
        after = apply_event(line, event, at)
    except ImpossibleTransition:
        raise Conflict(
            f"That cannot happen to this message now ({delivery.state}).", "bad_state"
        ) from None
    return replace(
        delivery,
        state=after.state,
        fetched_at=after.fetched_at,
        key_released_at=after.key_released_at,
        recalled_at=after.recalled_at,
        deleted_at=after.deleted_at,
        expired_at=after.expired_at,
    )


def completion(
    view: MessageView, message: MessageRecord, deliveries: list[DeliveryRecord]
) -> Changes:
    """Every device has its key (and every file): drop ciphertext, wraps and blobs."""
    return Changes(
        message=replace(message, envelope=None, state=MessageState.COMPLETE),
        deliveries=[replace(d, wrap=None) for d in deliveries],
        purge=True,
        destroy_blobs=bool(view.files),
    )


class Messaging:
    """Send, fetch, open, receipt, report and sync."""

    def __init__(
        self,
        storage: Storage,
        accounts: Accounts,
        config: Config,
        clock: Callable[[], int],
        groups: GroupLookup | None = None,
        keys: WrapKeys | None = None,
    ):
        self.storage = storage
        self.keys = keys or WrapKeys(storage, accounts, clock, config.max_certificate_lifetime)
        self.groups = groups  # the group whose conversation a send names, if any
        self.recipients = Recipients(accounts, self.keys, groups)
        self.accounts = accounts
        self.config = config
        self.clock = clock
        self.on_expiry: Callable[[int], None] | None = None  # tells the timer job of a new expiry

    async def _identity(self, user_id: bytes) -> VerifyKey:
        identity = await self.accounts.cache.identity(user_id)
        if identity is None:
            raise NotFound("No such user.")
        return identity

    async def prepare(
        self,
        session: Session,
        envelope: bytes,
        wraps: list[Wrap],
        blobs: list[bytes] | tuple[bytes, ...] = (),
    ) -> PreparedMessage:
        """Check a send completely, before anything is stored (the blobs' rows aside).

        The blobs themselves are checked by the transaction that binds them,
        so a blob cannot be bound twice by two sends at once.
        """
        blob_ids = check_blob_list(blobs)
        if len(envelope) > self.config.max_message_size:
            raise PayloadTooLarge(
                f"A message may be at most {self.config.max_message_size} bytes.",
                "message_too_large",
            )
        if not wraps or len(wraps) > self.config.max_devices_per_message:
            raise BadRequest("A message needs between one wrap and the device limit.", "bad_wraps")
        try:
            verified: VerifiedEnvelope = open_envelope(
                envelope, await self._identity(session.user_id)
            )
        except ProtocolError as exc:
            if exc.reason == "bad_expiry":
                raise BadRequest(
                    "The message's timer is not one the protocol allows: expire_after and "
                    "expire_from are set together, from 1 second to one year, counted from "
                    "'sent' or 'opened'.",
                    "bad_expiry",
                ) from None
            raise from_protocol_error(exc) from None
        header, now = verified.header, self.clock()
        if header.sender_device != session.device_id:
            raise Forbidden(
                "The envelope names another sending device than this session.", "wrong_device"
            )
        if header.sent_at > now + self.config.policy.max_clock_skew_ms:
            raise BadRequest(
                "The message is dated in the future; check the device's clock.", "clock_skew"
            )
        checked = await self.recipients.check(session, header, wraps)
        deliveries = checked.deliveries
        record = MessageRecord(
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            sender=header.sender,
            sender_device=header.sender_device,
            header=verified.header_bytes,
            envelope=envelope,
            size=len(envelope),
            sent_at=header.sent_at,
            received_at=now,
        )
        events = [
            NewEvent(d.device_id, EventKind.MESSAGE, header.message_id, message_notice(record, d))
            for d in deliveries
        ]
        return PreparedMessage(header, record, deliveries, events, blob_ids, checked.group)

    async def send(
        self,
        session: Session,
        envelope: bytes,
        wraps: list[Wrap],
        blobs: list[bytes] | tuple[bytes, ...] = (),
    ) -> tuple[MessageRecord, bool]:
        """Store a message; a retry of the same send returns the stored one (``False``).

        The quota is checked by the transaction that inserts the message, so
        concurrent sends at the edge of the quota cannot together pass it.
        """
        try:
            prepared = await self.prepare(session, envelope, wraps, blobs)
        except RelayError as refusal:
            # A retry whose first attempt was stored: the recipient's devices or keys may
            # have changed since, so the checks the first attempt passed can fail now.
            earlier = await self._stored_send(session, envelope, refusal)
            if earlier is None:
                raise
            return earlier, False
        try:
            stored = await self._insert(prepared)
        except MembershipMoved:
            # The check may have read this process's cached membership, behind a change
            # another relay process committed: the sender's wraps can be right all the
            # same.  Checked once more on the database's membership before refusing.
            conversation_id = prepared.record.conversation_id
            if self.groups is not None:
                self.groups.forget(conversation_id)
            prepared = await self.prepare(session, envelope, wraps, blobs)
            try:
                stored = await self._insert(prepared)
            except MembershipMoved as moved:
                raise self.group_moved(conversation_id, moved) from None
        if stored is prepared.record:
            expires_at = message_expires_at(prepared.header)
            if expires_at is not None and self.on_expiry is not None:
                self.on_expiry(expires_at)
            return stored, True
        if stored.sender != prepared.record.sender or stored.header != prepared.record.header:
            raise Conflict("Another message already has this id.", "message_exists")
        return stored, False

    async def _insert(self, prepared: PreparedMessage) -> MessageRecord:
        """Store a prepared send (the stored one, for a repeat of its id)."""
        try:
            return await self.storage.insert_message(
                prepared.record,
                prepared.deliveries,
                prepared.events,
                quota=self.config.user_quota,
                blobs=prepared.blobs,
                bind=bind_rule,
                membership=prepared.membership,
            )
        except QuotaExceeded:
            raise quota_refusal() from None

    def group_moved(self, conversation_id: bytes, moved: MembershipMoved) -> Conflict:
        """The answer to a send whose group changed before it was stored.

        The cached membership is dropped too, so the retry (wrapped to the
        members the client then fetches) is checked against the database.
        """
        if self.groups is not None:
            self.groups.forget(conversation_id)
        return membership_moved(moved.current)

    async def _stored_send(
        self, session: Session, envelope: bytes, refusal: RelayError
    ) -> MessageRecord | None:
        """The stored message this refused send repeats (same signed header), if any.

        Only for refusals about the recipients' devices and keys, which change
        between a send and its retry; the envelope is verified again before
        anything stored is looked at.
        """
        if refusal.code not in RETRY_RECHECKS:
            return None
        try:
            verified = open_envelope(envelope, await self._identity(session.user_id))
        except ProtocolError:
            return None
        view = await self.storage.get_message(verified.header.message_id)
        if view is None:
            return None
        stored = view.message
        if (
            stored.sender != session.user_id
            or stored.sender_device != session.device_id
            or stored.header != verified.header_bytes
            or (stored.envelope is not None and stored.envelope != envelope)
        ):
            return None
        return stored

    async def sender_devices(self, user_id: bytes) -> list[bytes]:
        return [
            d.device_id for d in await self.accounts.cache.devices(user_id) if d.revoked_at is None
        ]

    async def _change(
        self,
        session: Session,
        message_id: bytes,
        step: Callable[[MessageView, DeliveryRecord, int], tuple[Changes, Any]],
    ) -> Any:
        """Run ``step`` on this device's delivery of the message, in one transaction."""
        view = await self.storage.get_message(message_id)
        if view is None:
            raise NotFound("No such message.")
        senders = await self.sender_devices(view.message.sender)
        now = self.clock()

        def decide(view: MessageView) -> tuple[Changes, Any]:
            delivery = view.delivery(session.device_id)
            if delivery is None:
                raise NotFound("No such message.")
            changes, result = step(view, delivery, now)
            if changes.deliveries:
                after = _merge(view, changes)
                changes.events.extend(report_events(after, senders))
            return changes, result

        return await self.storage.change_message(message_id, decide)

    async def fetch(self, session: Session, message_id: bytes) -> tuple[bytes, bytes | None]:
        """The envelope and the key id of this device's wrap; records the first fetch.

        The key id is the one the notice and the open answer name too, so a
        device that fetched knows which of its private keys will open the
        message before it asks for the wrap.
        """

        def step(
            view: MessageView, delivery: DeliveryRecord, now: int
        ) -> tuple[Changes, tuple[bytes, bytes | None]]:
            message = view.message
            if message.envelope is None:
                if delivery.state in (DeviceState.QUEUED, DeviceState.NEVER_DELIVERED):
                    raise NotFound(
                        "No such message."
                    )  # recalled before it arrived: no trace at all
                raise Gone(_gone_sentence(message), f"message_{message.state}")
            _refuse_if_expired(delivery, now)
            changes = Changes()
            if delivery.fetched_at is None:
                changes.deliveries.append(_transition(delivery, Event.FETCHED, now))
            return changes, (message.envelope, delivery.key_id)

        result: tuple[bytes, bytes | None] = await self._change(session, message_id, step)
        return result

    async def open(self, session: Session, message_id: bytes) -> tuple[bytes, bytes | None]:
        """Release this device's wrap (and the key id it names); the message is then 'opened'.

        A timer counted from opening starts for this device at its first key
        release: its copy's ``expires_at`` is set in the same transaction.
        """
        timer: list[int] = []

        def step(
            view: MessageView, delivery: DeliveryRecord, now: int
        ) -> tuple[Changes, tuple[bytes, bytes | None]]:
            message = view.message
            if message.state is MessageState.LIVE:
                _refuse_if_expired(delivery, now)
            if message.state is not MessageState.LIVE or delivery.wrap is None:
                if delivery.state in (DeviceState.QUEUED, DeviceState.NEVER_DELIVERED):
                    raise NotFound("No such message.")
                raise Gone(_gone_sentence(message), f"message_{message.state}")
            wrap = delivery.wrap
            opened = _transition(delivery, Event.KEY_RELEASED, now)
            if opened == delivery:
                return Changes(), (wrap, delivery.key_id)
            if delivery.key_released_at is None and opened.expires_at is None:
                expires_at = copy_expires_at(Header.decode(message.header), now)
                if expires_at is not None:
                    opened = replace(opened, expires_at=expires_at)
                    timer.append(expires_at)
            changes = Changes(deliveries=[opened])
            first = message.first_opened_at
            if not delivery.own_device and first is None:
                first = now
            others = [d for d in view.deliveries if d.device_id != delivery.device_id]
            if settled([opened, *others], bool(view.files)):
                # Every device has its key (and its files): nothing left to escrow.  Keep it
                # only for open_grace, so that a device whose answer was lost can ask again.
                changes.message = replace(message, first_opened_at=first, all_opened_at=now)
                if self.config.open_grace <= 0:
                    return completion(view, changes.message, [opened, *others]), (
                        wrap,
                        delivery.key_id,
                    )
            elif first != message.first_opened_at:
                changes.message = replace(message, first_opened_at=first)
            return changes, (wrap, delivery.key_id)

        result: tuple[bytes, bytes | None] = await self._change(session, message_id, step)
        if timer and self.on_expiry is not None:
            self.on_expiry(timer[0])
        return result

    async def receipt(self, session: Session, message_id: bytes, receipt: bytes) -> None:
        """A device's signed deletion receipt: its line becomes 'deleted'."""
        view = await self.storage.get_message(message_id)
        device = await self.storage.get_device(session.device_id)
        if view is None or device is None or view.delivery(session.device_id) is None:
            raise NotFound("No such message.")
        cert = await self.accounts.certificate(device)
        digest = None
        if view.message.revocation is not None:
            digest = revocation_digest(view.message.revocation)
        try:
            verified = verify_deletion_receipt(
                receipt,
                cert,
                message_id=message_id,
                conversation_id=view.message.conversation_id,
            )
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        if verified.cause is DeletionCause.RECALL and verified.revocation != digest:
            raise BadRequest(
                "The receipt answers a revocation this message does not have.", "wrong_revocation"
            )

        def step(view: MessageView, delivery: DeliveryRecord, now: int) -> tuple[Changes, None]:
            if delivery.receipt is not None:
                return Changes(), None
            after = _transition(delivery, Event.DELETION_RECEIPT, now)
            return Changes(deliveries=[replace(after, receipt=receipt)]), None

        await self._change(session, message_id, step)

    async def report(self, session: Session, message_id: bytes) -> dict[str, Any]:
        """The report of one of the session user's own messages."""
        view = await self.storage.get_message(message_id)
        if view is None or view.message.sender != session.user_id:
            raise NotFound("No such message.")
        return report(view)


def _merge(view: MessageView, changes: Changes) -> MessageView:
    """The view as it will be after ``changes``, for the report event."""
    updated = {d.device_id: d for d in changes.deliveries}
    files = view.files
    if changes.destroy_blobs:
        files = tuple(replace(f, present=False) for f in files)
    return MessageView(
        changes.message or view.message,
        tuple(updated.get(d.device_id, d) for d in view.deliveries),
        view.recalls_since,
        files,
        view.downloads | {(blob, device) for blob, device, _ in changes.blob_downloads},
    )


def quota_refusal() -> PayloadTooLarge:
    return PayloadTooLarge(
        "Your messages waiting at the relay have reached the storage quota.", "quota_exceeded"
    )


def _refuse_if_expired(delivery: DeliveryRecord, now: int) -> None:
    """A copy whose timer ran out is gone for its device, even before the job destroys it."""
    if delivery.state is DeviceState.EXPIRED or (
        delivery.expires_at is not None and now >= delivery.expires_at
    ):
        raise Gone("This message expired.", "message_expired")


def _gone_sentence(message: MessageRecord) -> str:
    if message.state is MessageState.RECALLED:
        return "The sender recalled this message."
    if message.state is MessageState.EXPIRED:
        return "This message expired."
    return "This message is no longer held by the relay."
