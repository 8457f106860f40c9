"""Receipts: what a device and what the relay sign about a recall.

The sender ends up holding two kinds of evidence, kept apart on purpose:

* a **deletion receipt**, signed by a recipient device's own signing key,
  saying that device deleted its copy (cooperative: it cannot prove there are
  no other copies);
* a **purge receipt**, signed by the relay's key, saying what the relay
  destroyed and, per device, how far delivery had gone (fetched, key released).

A relay cannot forge the first; a device cannot forge the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from .device import DeviceCertificate
from .domains import (
    FINGERPRINT_LEN,
    ID_LEN,
    PROTOCOL_VERSION,
    SIG_DELETION_RECEIPT,
    SIG_PURGE_RECEIPT,
)
from .errors import DecodeError, UsageError, WrongContext, WrongSigner
from .identity import fingerprint
from .report import DeviceState
from .schema import Field, check_map, check_version
from .signed import open_signed, seal_signed
from .signing import SigningKey, VerifyKey

__all__ = [
    "DeletionCause",
    "DeletionReceipt",
    "PurgeReceipt",
    "PurgedDevice",
    "sign_deletion_receipt",
    "sign_purge_receipt",
    "verify_deletion_receipt",
    "verify_purge_receipt",
]

_TIME = 2**63 - 1
MAX_PURGED_DEVICES = 4096


class DeletionCause(StrEnum):
    """Why a device deleted its copy."""

    RECALL = "recall"
    EXPIRY = "expiry"


_DELETION_FIELDS = (
    Field("version", "uint"),
    Field("user", "bin", size=FINGERPRINT_LEN),
    Field("device_id", "bin", size=ID_LEN),
    Field("message_id", "bin", size=ID_LEN),
    Field("conversation_id", "bin", size=ID_LEN),
    Field("cause", "str", choices=frozenset(DeletionCause)),
    Field("revocation", "bin", size=FINGERPRINT_LEN, optional=True),
    Field("opened_at", "uint", max_value=_TIME, optional=True),
    Field("deleted_at", "uint", max_value=_TIME),
)
_PURGED_DEVICE_FIELDS = (
    Field("user", "bin", size=FINGERPRINT_LEN),
    Field("device_id", "bin", size=ID_LEN),
    Field("state", "str", choices=frozenset(DeviceState)),
    Field("fetched_at", "uint", max_value=_TIME, optional=True),
    Field("key_released_at", "uint", max_value=_TIME, optional=True),
)
_PURGE_FIELDS = (
    Field("version", "uint"),
    Field("relay", "bin", size=FINGERPRINT_LEN),
    Field("message_id", "bin", size=ID_LEN),
    Field("conversation_id", "bin", size=ID_LEN),
    Field("revocation", "bin", size=FINGERPRINT_LEN),
    Field("purged_at", "uint", max_value=_TIME),
    Field("devices", "list", max_len=MAX_PURGED_DEVICES, item=_PURGED_DEVICE_FIELDS),
)


def _check_context(fields: dict[str, Any], message_id: bytes, conversation_id: bytes) -> None:
    """Refuse a receipt about another message or conversation, each with its own reason.

    Kept apart (as in revocation matching) so a log or a relay error says
    which one a misdirected receipt got wrong.
    """
    if fields["message_id"] != message_id:
        raise WrongContext("other_message", "the receipt is for another message")
    if fields["conversation_id"] != conversation_id:
        raise WrongContext("other_conversation", "the receipt is for another conversation")


@dataclass(frozen=True, slots=True)
class DeletionReceipt:
    """A device's signed statement that it deleted its copy of a message.

    ``opened_at`` is the device's own account of when it received the key
    (``None``: it never did), so a sender can compare it with what the relay
    reported instead of taking the relay's word alone.
    """

    user: bytes
    device_id: bytes
    message_id: bytes
    conversation_id: bytes
    cause: DeletionCause
    revocation: bytes | None
    opened_at: int | None
    deleted_at: int
    signed: bytes


def sign_deletion_receipt(
    device_key: SigningKey,
    *,
    user: bytes,
    device_id: bytes,
    message_id: bytes,
    conversation_id: bytes,
    deleted_at: int,
    opened_at: int | None,
    cause: DeletionCause = DeletionCause.RECALL,
    revocation: bytes | None = None,
) -> DeletionReceipt:
    """Sign, with the device's own key, that this device deleted a message."""
    if (cause is DeletionCause.RECALL) != (revocation is not None):
        raise UsageError("bad_cause", "a recall receipt names its revocation, an expiry one none")
    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "user": user,
        "device_id": device_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "cause": str(cause),
        "revocation": revocation,
        "opened_at": opened_at,
        "deleted_at": deleted_at,
    }
    try:
        check_map(body, _DELETION_FIELDS, "deletion receipt")
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signed = seal_signed(body, SIG_DELETION_RECEIPT, device_key)
    return DeletionReceipt(
        user,
        device_id,
        message_id,
        conversation_id,
        cause,
        revocation,
        opened_at,
        deleted_at,
        signed,
    )


def verify_deletion_receipt(
    data: bytes,
    device: DeviceCertificate,
    *,
    message_id: bytes,
    conversation_id: bytes,
    revocation: bytes | None = None,
) -> DeletionReceipt:
    """Verify a receipt from the device ``device`` about the given message.

    ``revocation``, when given, is the digest of the revocation the receipt
    must answer.
    """
    _, obj = open_signed(data, SIG_DELETION_RECEIPT, device.signing_key)
    check_version(obj, "deletion receipt", PROTOCOL_VERSION)
    fields = check_map(obj, _DELETION_FIELDS, "deletion receipt")
    cause = DeletionCause(fields["cause"])
    if (cause is DeletionCause.RECALL) != (fields["revocation"] is not None):
        raise DecodeError("bad_cause", "a recall receipt names its revocation, an expiry one none")
    if fields["user"] != device.user or fields["device_id"] != device.device_id:
        raise WrongSigner("not_device", "the receipt names another device than its signer")
    _check_context(fields, message_id, conversation_id)
    if revocation is not None and fields["revocation"] != revocation:
        raise WrongContext("other_revocation", "the receipt answers another revocation")
    return DeletionReceipt(
        user=fields["user"],
        device_id=fields["device_id"],
        message_id=fields["message_id"],
        conversation_id=fields["conversation_id"],
        cause=cause,
        revocation=fields["revocation"],
        opened_at=fields["opened_at"],
        deleted_at=fields["deleted_at"],
        signed=data,
    )


@dataclass(frozen=True, slots=True)
class PurgedDevice:
    """The relay's account of one recipient device at the moment of the purge."""

    user: bytes
    device_id: bytes
    state: DeviceState
    fetched_at: int | None
    key_released_at: int | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "device_id": self.device_id,
            "state": str(self.state),
            "fetched_at": self.fetched_at,
            "key_released_at": self.key_released_at,
        }


@dataclass(frozen=True, slots=True)
class PurgeReceipt:
    """The relay's signed statement of what it destroyed for one recall."""

    relay: bytes
    message_id: bytes
    conversation_id: bytes
    revocation: bytes
    purged_at: int
    devices: tuple[PurgedDevice, ...]
    signed: bytes


def _device_order(device: PurgedDevice) -> tuple[bytes, bytes]:
    return (device.user, device.device_id)


def sign_purge_receipt(
    relay_key: SigningKey,
    *,
    message_id: bytes,
    conversation_id: bytes,
    revocation: bytes,
    purged_at: int,
    devices: list[PurgedDevice] | tuple[PurgedDevice, ...],
) -> PurgeReceipt:
    """Sign the relay's account of a purge; devices are listed in canonical order."""
    ordered = tuple(sorted(devices, key=_device_order))
    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "relay": fingerprint(relay_key.public_key),
        "message_id": message_id,
        "conversation_id": conversation_id,
        "revocation": revocation,
        "purged_at": purged_at,
        "devices": [device.to_wire() for device in ordered],
    }
    try:
        check_map(body, _PURGE_FIELDS, "purge receipt")
        _check_devices(ordered)
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    signed = seal_signed(body, SIG_PURGE_RECEIPT, relay_key)
    return PurgeReceipt(
        body["relay"], message_id, conversation_id, revocation, purged_at, ordered, signed
    )


_PURGE_STATES = {
    # state -> (fetched_at must be set, key_released_at must be set); None = either
    DeviceState.NEVER_DELIVERED: (False, False),
    DeviceState.DELIVERED_SEALED: (True, False),
    DeviceState.PENDING: (None, True),
    DeviceState.EXPIRED: (None, False),
}


def _check_devices(devices: tuple[PurgedDevice, ...]) -> None:
    """Sorted, unique, and each entry a state the relay can attest, consistent with its times.

    A relay cannot sign ``deleted`` (only a device can attest that), nor
    ``delivered_sealed`` with a key-release time.
    """
    keys = [_device_order(device) for device in devices]
    if any(a >= b for a, b in pairwise(keys)):
        raise DecodeError("unsorted_devices", "devices must be sorted and unique")
    for device in devices:
        rule = _PURGE_STATES.get(device.state)
        if rule is None:
            raise DecodeError(
                "bad_state", f"a relay cannot attest {device.state} in a purge receipt"
            )
        fetched, released = rule
        if fetched is not None and (device.fetched_at is not None) != fetched:
            raise DecodeError("inconsistent_device", f"{device.state} contradicts fetched_at")
        if (device.key_released_at is not None) != released:
            raise DecodeError("inconsistent_device", f"{device.state} contradicts key_released_at")


def verify_purge_receipt(
    data: bytes,
    relay_key: VerifyKey,
    *,
    message_id: bytes,
    conversation_id: bytes,
    revocation: bytes | None = None,
) -> PurgeReceipt:
    """Verify the relay's purge receipt for the given message."""
    _, obj = open_signed(data, SIG_PURGE_RECEIPT, relay_key)
    check_version(obj, "purge receipt", PROTOCOL_VERSION)
    fields = check_map(obj, _PURGE_FIELDS, "purge receipt")
    if fields["relay"] != fingerprint(relay_key):
        raise WrongSigner("not_relay", "the receipt names another relay than its signer")
    devices = tuple(
        PurgedDevice(
            user=item["user"],
            device_id=item["device_id"],
            state=DeviceState(item["state"]),
            fetched_at=item["fetched_at"],
            key_released_at=item["key_released_at"],
        )
        for item in fields["devices"]
    )
    _check_devices(devices)
    _check_context(fields, message_id, conversation_id)
    if revocation is not None and fields["revocation"] != revocation:
        raise WrongContext("other_revocation", "the receipt answers another revocation")
    return PurgeReceipt(
        relay=fields["relay"],
        message_id=fields["message_id"],
        conversation_id=fields["conversation_id"],
        revocation=fields["revocation"],
        purged_at=fields["purged_at"],
        devices=devices,
        signed=data,
    )
