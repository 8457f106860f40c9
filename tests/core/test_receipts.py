"""Deletion receipts (signed by a device) and purge receipts (signed by the relay)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e_recall import (
    DeletionCause,
    DeviceCertificate,
    DeviceState,
    PurgedDevice,
    SeededRandom,
    fingerprint,
    sign_deletion_receipt,
    sign_purge_receipt,
    verify_deletion_receipt,
    verify_purge_receipt,
)
from e2e_recall.domains import SIG_DELETION_RECEIPT, SIG_PURGE_RECEIPT
from e2e_recall.errors import (
    DecodeError,
    SignatureInvalid,
    UnsupportedVersion,
    UsageError,
    WrongContext,
    WrongSigner,
)
from e2e_recall.receipts import MAX_PURGED_DEVICES
from e2e_recall.signed import seal_signed

# -- deletion receipts -------------------------------------------------------------


def deletion_kwargs(world: Any, **changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "user": world.bob_id,
        "device_id": world.bob_device.device_id,
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "deleted_at": world.now + 2 * world.minute,
        "opened_at": world.now + 30_000,
        "cause": DeletionCause.RECALL,
        "revocation": world.revocation().digest,
    }
    kwargs.update(changes)
    return kwargs


def deletion_body(world: Any, **changes: Any) -> dict[str, Any]:
    body = deletion_kwargs(world)
    body["cause"] = str(body["cause"])
    body["version"] = 1
    body.update(changes)
    return body


def verify_deletion(world: Any, data: bytes, **changes: Any) -> Any:
    kwargs = {
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "revocation": world.revocation().digest,
    }
    kwargs.update(changes)
    return verify_deletion_receipt(data, world.bob_cert, **kwargs)


def test_deletion_receipt_round_trip(world: Any) -> None:
    receipt = sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world))
    checked = verify_deletion(world, receipt.signed)
    assert checked == receipt
    assert checked.cause is DeletionCause.RECALL
    assert checked.revocation == world.revocation().digest
    assert checked.deleted_at == world.now + 2 * world.minute
    assert checked.opened_at == world.now + 30_000
    assert checked.user == world.bob_id
    assert checked.device_id == world.bob_device.device_id


def test_documented_deletion_body(world: Any) -> None:
    receipt = sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world))
    body = deletion_body(world)
    assert seal_signed(body, SIG_DELETION_RECEIPT, world.bob_device.signing_key) == receipt.signed


def test_expiry_receipt_round_trip(world: Any) -> None:
    receipt = sign_deletion_receipt(
        world.bob_device.signing_key,
        **deletion_kwargs(world, cause=DeletionCause.EXPIRY, revocation=None, opened_at=None),
    )
    checked = verify_deletion(world, receipt.signed, revocation=None)
    assert checked.cause is DeletionCause.EXPIRY
    assert checked.revocation is None
    assert checked.opened_at is None


def test_verify_without_a_revocation_digest_accepts_any(world: Any) -> None:
    receipt = sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world))
    assert verify_deletion(world, receipt.signed, revocation=None) == receipt


@pytest.mark.parametrize(
    ("cause", "revocation"),
    [(DeletionCause.RECALL, None), (DeletionCause.EXPIRY, b"\x01" * 32)],
)
def test_cause_and_revocation_must_agree(world: Any, cause: DeletionCause, revocation: Any) -> None:
    with pytest.raises(UsageError) as info:
        sign_deletion_receipt(
            world.bob_device.signing_key,
            **deletion_kwargs(world, cause=cause, revocation=revocation),
        )
    assert info.value.reason == "bad_cause"
    body = deletion_body(world, cause=str(cause), revocation=revocation)
    data = seal_signed(body, SIG_DELETION_RECEIPT, world.bob_device.signing_key)
    with pytest.raises(DecodeError) as decode_info:
        verify_deletion(world, data, revocation=None)
    assert decode_info.value.reason == "bad_cause"


def test_receipt_from_another_device_is_a_bad_signature(world: Any) -> None:
    receipt = sign_deletion_receipt(
        world.bob_device2.signing_key,
        **deletion_kwargs(world, device_id=world.bob_device2.device_id),
    )
    with pytest.raises(SignatureInvalid):
        verify_deletion(world, receipt.signed)  # checked against bob_device's certificate
    assert verify_deletion_receipt(
        receipt.signed,
        world.bob_cert2,
        message_id=world.message_id,
        conversation_id=world.conversation,
    )


def test_relay_cannot_forge_a_deletion_receipt(world: Any) -> None:
    data = seal_signed(deletion_body(world), SIG_DELETION_RECEIPT, world.relay)
    with pytest.raises(SignatureInvalid):
        verify_deletion(world, data)


@pytest.mark.parametrize("field", ["device_id", "user"])
def test_receipt_naming_another_device_is_wrong_signer(world: Any, field: str) -> None:
    other = {"device_id": world.bob_device2.device_id, "user": world.alice_id}[field]
    receipt = sign_deletion_receipt(
        world.bob_device.signing_key, **deletion_kwargs(world, **{field: other})
    )
    with pytest.raises(WrongSigner) as info:
        verify_deletion(world, receipt.signed)
    assert info.value.reason == "not_device"


@pytest.mark.parametrize(
    ("field", "reason"),
    [("message_id", "other_message"), ("conversation_id", "other_conversation")],
)
def test_receipt_for_another_message(world: Any, field: str, reason: str) -> None:
    receipt = sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world))
    with pytest.raises(WrongContext) as info:
        verify_deletion(world, receipt.signed, **{field: world.other_message_id})
    assert info.value.reason == reason


def test_receipt_answering_another_revocation(world: Any) -> None:
    receipt = sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world))
    with pytest.raises(WrongContext) as info:
        verify_deletion(
            world, receipt.signed, revocation=world.revocation(issued_at=world.now).digest
        )
    assert info.value.reason == "other_revocation"


def test_deletion_receipt_version(world: Any) -> None:
    data = seal_signed(
        deletion_body(world, version=2), SIG_DELETION_RECEIPT, world.bob_device.signing_key
    )
    with pytest.raises(UnsupportedVersion):
        verify_deletion(world, data)


@pytest.mark.parametrize(
    "changes",
    [
        {"cause": "lost"},
        {"revocation": bytes(31)},
        {"deleted_at": -5},
        {"opened_at": "earlier"},
        {"opened_at": 2**63},
        {"device_id": bytes(32)},
        {"user": None},
    ],
)
def test_malformed_deletion_receipt(world: Any, changes: dict[str, Any]) -> None:
    data = seal_signed(
        deletion_body(world, **changes), SIG_DELETION_RECEIPT, world.bob_device.signing_key
    )
    with pytest.raises(DecodeError):
        verify_deletion(world, data)


def test_sign_deletion_refuses_malformed_arguments(world: Any) -> None:
    with pytest.raises(UsageError):
        sign_deletion_receipt(
            world.bob_device.signing_key, **deletion_kwargs(world, device_id=b"x")
        )
    with pytest.raises(UsageError):
        sign_deletion_receipt(world.bob_device.signing_key, **deletion_kwargs(world, deleted_at=-1))


# -- purge receipts -----------------------------------------------------------------


def devices(world: Any) -> list[PurgedDevice]:
    return [
        PurgedDevice(world.bob_id, world.bob_device2.device_id, DeviceState.PENDING, 5, 6),
        PurgedDevice(
            world.bob_id, world.bob_device.device_id, DeviceState.DELIVERED_SEALED, 5, None
        ),
        PurgedDevice(
            world.alice_id, world.alice_device_id, DeviceState.NEVER_DELIVERED, None, None
        ),
    ]


def purge_kwargs(world: Any, **changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "revocation": world.revocation().digest,
        "purged_at": world.now + world.minute,
        "devices": devices(world),
    }
    kwargs.update(changes)
    return kwargs


def purge_body(world: Any, **changes: Any) -> dict[str, Any]:
    body = purge_kwargs(world)
    ordered = sorted(body["devices"], key=lambda d: (d.user, d.device_id))
    body["devices"] = [d.to_wire() for d in ordered]
    body["relay"] = fingerprint(world.relay.public_key)
    body["version"] = 1
    body.update(changes)
    return body


def verify_purge(world: Any, data: bytes, key: Any = None, **changes: Any) -> Any:
    kwargs = {
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "revocation": world.revocation().digest,
    }
    kwargs.update(changes)
    return verify_purge_receipt(data, key or world.relay.public_key, **kwargs)


def test_purge_receipt_round_trip(world: Any) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world))
    checked = verify_purge(world, receipt.signed)
    assert checked == receipt
    assert checked.relay == fingerprint(world.relay.public_key)
    assert checked.purged_at == world.now + world.minute
    assert {d.state for d in checked.devices} == {
        DeviceState.PENDING,
        DeviceState.DELIVERED_SEALED,
        DeviceState.NEVER_DELIVERED,
    }
    by_device = {d.device_id: d for d in checked.devices}
    assert by_device[world.bob_device2.device_id].key_released_at == 6
    assert by_device[world.alice_device_id].fetched_at is None


def test_devices_are_listed_in_canonical_order(world: Any) -> None:
    forward = sign_purge_receipt(world.relay, **purge_kwargs(world))
    backward = sign_purge_receipt(world.relay, **purge_kwargs(world, devices=devices(world)[::-1]))
    assert forward.signed == backward.signed
    keys = [(d.user, d.device_id) for d in forward.devices]
    assert keys == sorted(keys)
    assert seal_signed(purge_body(world), SIG_PURGE_RECEIPT, world.relay) == forward.signed


def test_empty_device_list(world: Any) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world, devices=[]))
    assert verify_purge(world, receipt.signed).devices == ()


def test_duplicate_devices_are_refused(world: Any) -> None:
    twice = [*devices(world), devices(world)[0]]
    with pytest.raises(UsageError) as info:
        sign_purge_receipt(world.relay, **purge_kwargs(world, devices=twice))
    assert info.value.reason == "unsorted_devices"


@pytest.mark.parametrize("order", ["unsorted", "duplicate"])
def test_crafted_device_order_is_refused(world: Any, order: str) -> None:
    body = purge_body(world)
    if order == "unsorted":
        body["devices"] = body["devices"][::-1]
    else:
        body["devices"] = [body["devices"][0], body["devices"][0]]
    data = seal_signed(body, SIG_PURGE_RECEIPT, world.relay)
    with pytest.raises(DecodeError) as info:
        verify_purge(world, data)
    assert info.value.reason == "unsorted_devices"


def test_wrong_relay_key(world: Any) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world))
    with pytest.raises(SignatureInvalid):
        verify_purge(world, receipt.signed, key=world.alice.public_key)


def test_device_cannot_forge_a_purge_receipt(world: Any) -> None:
    key = world.bob_device.signing_key
    data = seal_signed(purge_body(world, relay=fingerprint(key.public_key)), SIG_PURGE_RECEIPT, key)
    with pytest.raises(SignatureInvalid):
        verify_purge(world, data)


def test_receipt_naming_another_relay(world: Any) -> None:
    data = seal_signed(purge_body(world), SIG_PURGE_RECEIPT, world.mallory)  # names the real relay
    with pytest.raises(WrongSigner) as info:
        verify_purge(world, data, key=world.mallory.public_key)
    assert info.value.reason == "not_relay"


@pytest.mark.parametrize(
    ("field", "reason"),
    [("message_id", "other_message"), ("conversation_id", "other_conversation")],
)
def test_purge_receipt_for_another_message(world: Any, field: str, reason: str) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world))
    with pytest.raises(WrongContext) as info:
        verify_purge(world, receipt.signed, **{field: world.other_message_id})
    assert info.value.reason == reason


def test_purge_receipt_for_another_revocation(world: Any) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world))
    with pytest.raises(WrongContext) as info:
        verify_purge(world, receipt.signed, revocation=bytes(32))
    assert info.value.reason == "other_revocation"
    assert verify_purge(world, receipt.signed, revocation=None) == receipt


def test_deletion_and_purge_labels_are_not_interchangeable(world: Any) -> None:
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world))
    relay_as_device = DeviceCertificate(
        user=world.bob_id,
        device_id=world.bob_device.device_id,
        signing_key=world.relay.public_key,
        wrap_key=world.bob_cert.wrap_key,
        created_at=0,
        expires_at=None,
        signed=b"",
    )
    with pytest.raises(SignatureInvalid):
        verify_deletion_receipt(
            receipt.signed,
            relay_as_device,
            message_id=world.message_id,
            conversation_id=world.conversation,
        )


def test_purge_receipt_version(world: Any) -> None:
    data = seal_signed(purge_body(world, version=2), SIG_PURGE_RECEIPT, world.relay)
    with pytest.raises(UnsupportedVersion):
        verify_purge(world, data)


@pytest.mark.parametrize(
    "device_changes",
    [
        {"state": "vanished"},
        {"state": b"deleted"},
        {"fetched_at": -1},
        {"device_id": bytes(8)},
        {"extra": 1},
    ],
)
def test_malformed_purged_device(world: Any, device_changes: dict[str, Any]) -> None:
    body = purge_body(world)
    body["devices"][0] = {**body["devices"][0], **device_changes}
    data = seal_signed(body, SIG_PURGE_RECEIPT, world.relay)
    with pytest.raises(DecodeError):
        verify_purge(world, data)


def test_devices_must_be_a_list_of_maps(world: Any) -> None:
    for value in ({}, [1], None):
        data = seal_signed(purge_body(world, devices=value), SIG_PURGE_RECEIPT, world.relay)
        with pytest.raises(DecodeError):
            verify_purge(world, data)


def test_sign_purge_refuses_malformed_arguments(world: Any) -> None:
    with pytest.raises(UsageError):
        sign_purge_receipt(world.relay, **purge_kwargs(world, revocation=bytes(16)))
    with pytest.raises(UsageError):
        sign_purge_receipt(world.relay, **purge_kwargs(world, purged_at=-1))


def test_every_purge_receipt_the_relay_may_sign_verifies(world: Any) -> None:
    """A receipt listing MAX_PURGED_DEVICES devices (the schema's own limit) must verify.

    Otherwise the relay signs, for a large group, evidence no sender can check.
    """
    rng = SeededRandom(b"many devices")
    many = [
        PurgedDevice(rng(32), rng(16), DeviceState.DELIVERED_SEALED, 2**40, None)
        for _ in range(MAX_PURGED_DEVICES)
    ]
    try:
        receipt = sign_purge_receipt(world.relay, **purge_kwargs(world, devices=many))
    except UsageError:
        return  # refusing to sign is a consistent answer too
    checked = verify_purge(world, receipt.signed)
    assert len(checked.devices) == MAX_PURGED_DEVICES


@pytest.mark.parametrize(
    ("state", "fetched_at", "key_released_at", "reason"),
    [
        (DeviceState.DELETED, 1, 2, "bad_state"),  # only a device can attest a deletion
        (DeviceState.QUEUED, None, None, "bad_state"),
        (DeviceState.SEALED, 1, None, "bad_state"),
        (DeviceState.OPENED, 1, 2, "bad_state"),
        (DeviceState.NEVER_DELIVERED, 1, None, "inconsistent_device"),
        (DeviceState.NEVER_DELIVERED, None, 2, "inconsistent_device"),
        (DeviceState.DELIVERED_SEALED, None, None, "inconsistent_device"),
        (DeviceState.DELIVERED_SEALED, 1, 2, "inconsistent_device"),
        (DeviceState.PENDING, 1, None, "inconsistent_device"),
        (DeviceState.EXPIRED, 1, 2, "inconsistent_device"),
    ],
)
def test_relay_can_only_attest_consistent_states(
    world: Any, state: DeviceState, fetched_at: Any, key_released_at: Any, reason: str
) -> None:
    device = PurgedDevice(
        world.bob_id, world.bob_device.device_id, state, fetched_at, key_released_at
    )
    with pytest.raises(UsageError) as info:
        sign_purge_receipt(world.relay, **purge_kwargs(world, devices=[device]))
    assert info.value.reason == reason
    body = purge_body(world, devices=[device.to_wire()])
    data = seal_signed(body, SIG_PURGE_RECEIPT, world.relay)
    with pytest.raises(DecodeError) as decode_info:
        verify_purge(world, data)
    assert decode_info.value.reason == reason


@pytest.mark.parametrize(
    ("state", "fetched_at", "key_released_at"),
    [
        (DeviceState.NEVER_DELIVERED, None, None),
        (DeviceState.DELIVERED_SEALED, 1, None),
        (DeviceState.PENDING, None, 2),
        (DeviceState.PENDING, 1, 2),
        (DeviceState.EXPIRED, None, None),
        (DeviceState.EXPIRED, 1, None),
    ],
)
def test_consistent_states_are_signed_and_verified(
    world: Any, state: DeviceState, fetched_at: Any, key_released_at: Any
) -> None:
    device = PurgedDevice(
        world.bob_id, world.bob_device.device_id, state, fetched_at, key_released_at
    )
    receipt = sign_purge_receipt(world.relay, **purge_kwargs(world, devices=[device]))
    assert verify_purge(world, receipt.signed).devices == (device,)
