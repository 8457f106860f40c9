"""What the relay stores, and the small interfaces every backend implements.

Three stores of a few methods each -- accounts, messages, events -- plus a
lifecycle.  The relay's rules never write SQL: a change to a message is a
pure function from what is stored (:class:`MessageView`) to what must change
(:class:`Changes`), and the backend runs read, function and write in one
transaction.  So the SQLite and PostgreSQL backends share every rule and
differ only in how they keep the rows, and a decision (for example whether a
recall is still inside its window) can never act on stale facts.

Nothing stored here is readable by the relay: ``envelope`` is the signed,
encrypted message, ``wrap`` an HPKE ciphertext for one device.  The header
(ids, times, sender) is metadata the relay needs and can read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from e2e_recall.report import DeviceState

from .blob_records import BindRule, BlobMetaStore, BoundFile
from .device_records import DeviceStore
from .group_records import GroupStore, MembershipRule
from .wrap_key_records import WrapKeyStore

__all__ = [
    "AccountStore",
    "Changes",
    "DeliveryRecord",
    "DeviceRecord",
    "EventKind",
    "EventRecord",
    "EventStore",
    "MessageRecord",
    "MessageState",
    "MessageStore",
    "MessageView",
    "NewEvent",
    "QuotaExceeded",
    "SchemaTooNew",
    "SessionRecord",
    "Storage",
    "StorageError",
    "UserRecord",
]

T = TypeVar("T")


class StorageError(Exception):
    """The database failed (disk full, I/O error, locked too long); nothing was committed."""


class SchemaTooNew(StorageError):
    """The database was written by a newer relay; it is refused, untouched, not misread."""


class QuotaExceeded(Exception):
    """A new message would take its sender past the storage quota; nothing was written.

    Raised inside the transaction that would store the message, so the check
    and the insert see the same total and concurrent sends cannot overshoot.
    """

    def __init__(self, used: int, quota: int) -> None:
        super().__init__(f"{used} of {quota} bytes in use")
        self.used = used
        self.quota = quota


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: bytes
    identity_key: bytes
    handle: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: bytes
    user_id: bytes
    certificate: bytes  # the signed device certificate, verified at registration
    signing_key: bytes
    created_at: int
    revoked_at: int | None = None
    acked_seq: int = 0  # highest event sequence number the device confirmed


@dataclass(frozen=True, slots=True)
class SessionRecord:
    token_hash: bytes  # SHA-256 of the bearer token; the token itself is never stored
    user_id: bytes
    device_id: bytes
    created_at: int
    expires_at: int


class MessageState(StrEnum):
    """Where a message is in its life at the relay."""

    LIVE = "live"  # ciphertext and at least one wrap are held
    COMPLETE = "complete"  # every device opened it; ciphertext and wraps are gone
    RECALLED = "recalled"  # a revocation destroyed it; a content-free tombstone remains
    EXPIRED = "expired"  # retention ran out before every device opened it


@dataclass(frozen=True, slots=True)
class MessageRecord:
    message_id: bytes
    conversation_id: bytes
    sender: bytes
    sender_device: bytes
    header: bytes
    envelope: bytes | None  # None once purged
    size: int
    sent_at: int
    received_at: int
    state: MessageState = MessageState.LIVE
    first_opened_at: int | None = (
        None  # earliest key release to a recipient (not the sender's devices)
    )
    recalled_at: int | None = None
    revocation: bytes | None = None
    purge_receipt: bytes | None = None
    all_opened_at: int | None = None  # when the last device got its key (and every file)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One device's copy of one message: its wrap (until opened) and its report line."""

    message_id: bytes
    device_id: bytes
    user_id: bytes
    wrap: bytes | None
    own_device: bool  # a copy for the sender's other device, not a recipient
    state: DeviceState = DeviceState.QUEUED
    fetched_at: int | None = None
    key_released_at: int | None = None
    recalled_at: int | None = None
    deleted_at: int | None = None
    receipt: bytes | None = None
    downloaded_at: int | None = None  # when the device had received every blob of the message
    key_id: bytes | None = None  # the wrapping key the wrap was made to (None: stored before 0008)
    expires_at: int | None = None  # when the sender's timer ends this copy (None: no timer yet)
    expired_at: int | None = None  # when the relay destroyed this copy (timer or retention)


class EventKind(StrEnum):
    """What a device is told, in order, over its websocket or ``/v1/sync``."""

    MESSAGE = "message"  # a notice: a message waits (sender, conversation, size, time; no content)
    REVOCATION = "revocation"  # a signed revocation for a message the device fetched
    REPORT = "report"  # the report of one of the user's own messages changed
    GROUP = "group"  # a group the user is or was in took a change (message_id: the group id)
    LINK = "link"  # a new device's request reached a link slot (message_id: the link id)
    DEVICE = "device"  # one of the user's devices was revoked (message_id: its device id)
    EXPIRED = "expired"  # the sender's timer (or retention) destroyed this device's copy


@dataclass(frozen=True, slots=True)
class NewEvent:
    device_id: bytes
    kind: EventKind
    message_id: bytes
    payload: bytes  # canonical msgpack, built by the relay's rules


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    device_id: bytes
    kind: EventKind
    message_id: bytes
    payload: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class MessageView:
    """Everything stored about one message, as one transaction sees it."""

    message: MessageRecord
    deliveries: tuple[DeliveryRecord, ...]
    recalls_since: int = 0  # recalls by this sender in this conversation since the asked time
    files: tuple[BoundFile, ...] = ()  # the blobs the send bound, in their order
    downloads: frozenset[tuple[bytes, bytes]] = frozenset()  # (blob id, device id) served whole

    def delivery(self, device_id: bytes) -> DeliveryRecord | None:
        for delivery in self.deliveries:
            if delivery.device_id == device_id:
                return delivery
        return None


@dataclass
class Changes:
    """What one transaction writes: whole rows to replace, rows to add, events."""

    message: MessageRecord | None = None
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    drop_notices: list[bytes] = field(default_factory=list)  # devices whose notice is withdrawn
    new_messages: list[tuple[MessageRecord, list[DeliveryRecord]]] = field(default_factory=list)
    purge: bool = False  # ciphertext or wraps were destroyed: checkpoint soon
    new_blobs: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)  # for new_messages
    destroy_blobs: bool = False  # delete the message's blob rows; files go after the commit
    blob_downloads: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # blob, device, at

    @property
    def empty(self) -> bool:
        return not (
            self.message
            or self.deliveries
            or self.events
            or self.drop_notices
            or self.new_messages
            or self.destroy_blobs
            or self.blob_downloads
        )


class AccountStore(Protocol):
    async def add_device(self, user: UserRecord, device: DeviceRecord) -> None:
        """Create the user if new, then the device; raise ``Conflict`` on a clash."""

    async def get_user(
        self, user_id: bytes | None = None, handle: str | None = None
    ) -> UserRecord | None: ...

    async def release_handle(self, handle: str) -> bytes | None:
        """Detach ``handle`` from whoever holds it (an operator action); their user id, or None.

        The account itself stays, reachable by user id; the handle becomes free
        for a new identity, which every contact's client then reports as a
        changed key.
        """

    async def get_devices(self, user_id: bytes) -> list[DeviceRecord]: ...

    async def get_device(self, device_id: bytes) -> DeviceRecord | None: ...

    async def put_challenge(self, challenge: bytes, expires_at: int, limit: int) -> bool:
        """Store a challenge unless ``limit`` unexpired ones are outstanding (then False)."""

    async def take_challenge(self, challenge: bytes, now: int) -> bool:
        """Consume a challenge once; False if unknown, used or expired."""

    async def forget_challenges(self, now: int) -> int:
        """Delete the challenges that expired before ``now``; return how many."""

    async def put_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, token_hash: bytes) -> SessionRecord | None: ...

    async def delete_session(self, token_hash: bytes) -> None: ...


class MessageStore(Protocol):
    async def insert_message(
        self,
        message: MessageRecord,
        deliveries: list[DeliveryRecord],
        events: list[NewEvent],
        quota: int | None = None,
        blobs: tuple[bytes, ...] = (),
        bind: BindRule | None = None,
        membership: MembershipRule | None = None,
    ) -> MessageRecord:
        """Store a new message; if its id exists, return the stored row unchanged.

        With ``quota``, raise :class:`QuotaExceeded` (writing nothing) when the
        sender's live ciphertext plus this message would exceed it.  ``blobs``
        are bound to the message in the same transaction, after ``bind`` (the
        rule) accepted the rows found; a refusal writes nothing.  With
        ``membership``, the group row of the message's conversation (by
        ``conversation_id``, None if there is none) is read in the same
        transaction and given to the rule before anything is written; a
        retry of a stored message is answered before the rule runs.
        """

    async def get_message(self, message_id: bytes) -> MessageView | None: ...

    async def change_message(
        self,
        message_id: bytes,
        decide: Callable[[MessageView], tuple[Changes, T]],
        recalls_since: int | None = None,
        quota: int | None = None,
        bind: BindRule | None = None,
        membership: MembershipRule | None = None,
    ) -> T:
        """Read, decide, write, in one transaction; ``decide`` may raise to change nothing.

        ``quota`` applies to the messages the changes add (a recall's
        replacement), counted after the changed message's own bytes are freed;
        ``bind`` checks the blobs they bind (``Changes.new_blobs``), and
        ``membership`` their conversation's group row, as for
        :meth:`insert_message`.
        """

    async def messages_to_expire(self, received_before: int, limit: int) -> list[bytes]: ...

    async def messages_to_complete(self, opened_before: int, limit: int) -> list[bytes]:
        """Live messages every recipient device opened before ``opened_before``."""

    async def copies_to_expire(self, now: int, limit: int) -> list[bytes]:
        """Messages with a device copy whose timer is due at ``now`` (deliveries_expiring)."""
        ...

    async def next_expiry(self) -> int | None:
        """The earliest timer not yet dealt with, for the job to sleep until."""
        ...

    async def message_senders(self, message_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """The sender (user id) of each of these messages; ids not stored are left out.

        The timer job reads them before :meth:`change_messages`, since the
        report events its rule writes go to the sender's current devices,
        which the relay looks up (cached) outside the transaction.
        """
        ...

    async def change_messages(
        self,
        message_ids: Sequence[bytes],
        decide: Callable[[MessageView], tuple[Changes, T]],
    ) -> list[T | Exception]:
        """``change_message`` for many messages, all in one write transaction.

        For each id in turn: read its view, call ``decide``, write the
        changes and queue the events, inside a savepoint of its own.  The
        answer has one outcome per id, in order: what ``decide`` returned, or
        the exception that rolled that message back (``NotFound`` for an id
        not stored, the rule's own error, a :class:`StorageError` for its
        rows), while the other messages are still written.  If the commit
        itself fails nothing is written and the call raises
        :class:`StorageError`.  Events are announced, blobs destroyed and a
        checkpoint (and scrub) requested after the commit, as for one message.
        This is what lets the timer job keep up with hundreds of timers a
        second: one transaction (one fsync) for a batch, not one per message.
        """
        ...

    async def forget_tombstones(self, before: int) -> int:
        """Delete content-free rows and events older than ``before``; return how many."""

    async def stored_bytes(self, user_id: bytes) -> int:
        """Ciphertext the user has waiting at the relay, for the quota."""


class EventStore(Protocol):
    async def events_since(self, device_id: bytes, after: int, limit: int) -> list[EventRecord]: ...

    async def ack_events(self, acks: Mapping[bytes, int]) -> None:
        """For each device, drop its events up to the sequence number given, in one write."""


EventListener = Callable[[set[bytes], "list[EventRecord] | None"], None]


class Storage(
    AccountStore,
    MessageStore,
    EventStore,
    BlobMetaStore,
    GroupStore,
    DeviceStore,
    WrapKeyStore,
    Protocol,
):
    """A whole backend: the stores and their lifecycle."""

    # Whether ``on_events`` hands this process's commits over in sequence order for each
    # device, so that a live connection may push them as they are (SQLite's one writer).
    # Where not (PostgreSQL), listeners must read the queue on every wake instead.
    announces_in_order: bool

    def on_events(self, listener: EventListener) -> None:
        """Call ``listener`` after each commit that queued events.

        With the committed events themselves (their sequence numbers
        included) when this process wrote them, so live connections can
        push them without reading them back; with ``None`` when only the
        devices are known (events another process committed), and the
        listener reads their queues.
        """

    async def signal(self, kind: str, values: list[bytes]) -> None:
        """Tell the other relay processes on this database (relay/cluster.py); not stored.

        A backend that serves one process (SQLite) has no one to tell.
        """

    def on_signal(self, listener: Callable[[str, list[bytes]], None]) -> None:
        """Call ``listener(kind, values)`` for each signal another process sends."""

    async def lead(self, job: int) -> bool:
        """Whether this process should run background job ``job`` now (one process does).

        Once True it stays True while this process keeps its connection;
        a process that stops or loses the database hands the job on.
        """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> list[str]:
        """Integrity problems found (empty when healthy)."""

    async def ping(self) -> float:
        """Round-trip a trivial query; return its latency in seconds (for readiness)."""

    async def stats(self) -> dict[str, int]: ...

    async def scrub(self) -> float:
        """Rewrite the stored data so no fragment of purged content remains; seconds taken."""

    async def checkpoint(self) -> None:
        """Make destroyed bytes leave every file the backend keeps (WAL, journal)."""
