"""Property tests: codec round trips, structure round trips, and bit-flip rejection.

For every signed or encrypted structure, each single-bit flip of its wire
bytes (and of the associated data and context it is bound to) must be
refused with a :class:`ProtocolError` subclass: never accepted, never a raw
exception.  Every structure is flipped exhaustively, the X-Wing ones too
(about 10,000 flips each, a couple of seconds); hypothesis additionally
flips envelopes of any length and registrations with any relay and
challenge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from e2e_recall import (
    Body,
    DeletionCause,
    DeviceSecrets,
    DeviceState,
    Header,
    MessageKind,
    PurgedDevice,
    SeededRandom,
    SigningKey,
    WrapPrivateKey,
    WrapSuite,
    fingerprint,
    issue_device_certificate,
    open_envelope,
    seal_message,
    sign_deletion_receipt,
    sign_purge_receipt,
    sign_revocation,
    unwrap_message_key,
    verify_deletion_receipt,
    verify_device_certificate,
    verify_purge_receipt,
    verify_revocation,
    wire,
    wrap_message_key,
)
from e2e_recall.auth import sign_login, sign_registration, verify_login, verify_registration
from e2e_recall.body import decrypt_body, encrypt_body
from e2e_recall.errors import AuthenticationFailure, DecodeError, ProtocolError
from e2e_recall.keyfile import (
    dump_device_secrets,
    dump_signing_key,
    dump_verify_key,
    dump_wrap_public_key,
    load_device_secrets,
    load_signing_key,
    load_verify_key,
    load_wrap_public_key,
)

FAST = settings(max_examples=60, deadline=None, database=None)
MEDIUM = settings(max_examples=150, deadline=None, database=None)
MANY = settings(max_examples=400, deadline=None, database=None)

TIME_MAX = 2**63 - 1
ids16 = st.binary(min_size=16, max_size=16)
ids32 = st.binary(min_size=32, max_size=32)
times = st.integers(0, TIME_MAX)


# -- helpers -----------------------------------------------------------------------


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def same(a: Any, b: Any) -> bool:
    """Equality that also distinguishes True from 1 and bytes from str."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def decode_or_error(data: bytes) -> tuple[Any, ProtocolError | None]:
    """Decode ``data``; a ProtocolError is returned, anything rawer propagates."""
    try:
        return wire.decode(data), None
    except ProtocolError as exc:
        return None, exc


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_every_flip_refused(data: bytes, check: Callable[[bytes], Any]) -> None:
    check(data)  # the unflipped bytes are accepted
    accepted = []
    for bit in range(len(data) * 8):
        try:
            check(flip(data, bit))
        except ProtocolError:
            continue
        accepted.append(bit)
    assert accepted == [], f"{len(accepted)} bit flips accepted, first at bit {accepted[:5]}"


# -- the wire codec ----------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
wire_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


@MANY
@given(wire_values)
def test_wire_round_trip(value: Any) -> None:
    assume(depth(value) <= 32)
    data = wire.encode(value)
    decoded = wire.decode(data)
    assert same(decoded, value)
    assert wire.encode(decoded) == data


@MEDIUM
@given(st.dictionaries(st.text(max_size=6), scalars, max_size=8), st.randoms())
def test_map_encoding_ignores_insertion_order(value: dict[str, Any], rnd: Any) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert wire.encode(dict(items)) == wire.encode(value)


@MANY
@given(st.binary(max_size=64))
def test_decode_of_arbitrary_bytes_is_canonical_or_a_decode_error(data: bytes) -> None:
    value, error = decode_or_error(data)
    if error is not None:
        assert type(error) is DecodeError
    else:
        assert wire.encode(value) == data


@MANY
@given(wire_values, st.data())
def test_mutated_encodings_are_canonical_or_decode_errors(value: Any, data: st.DataObject) -> None:
    assume(depth(value) <= 32)
    encoded = bytearray(wire.encode(value))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    index = data.draw(st.integers(0, len(encoded) - (kind != "insert")))
    if kind == "replace":
        encoded[index] = data.draw(st.integers(0, 255))
    elif kind == "insert":
        encoded.insert(index, data.draw(st.integers(0, 255)))
    else:
        del encoded[index]
    decoded, error = decode_or_error(bytes(encoded))
    if error is not None:
        assert type(error) is DecodeError
    else:
        assert wire.encode(decoded) == bytes(encoded)


# -- structure round trips ---------------------------------------------------------


@st.composite
def headers(draw: st.DrawFn) -> Header:
    sent, opened, sealed = sorted(draw(st.lists(times, min_size=3, max_size=3)))
    message_id = draw(ids16)
    kind = draw(st.sampled_from(list(MessageKind)))
    replaces = None
    if kind is MessageKind.REPLACEMENT:
        replaces = draw(ids16.filter(lambda r: r != message_id))
    return Header(
        message_id=message_id,
        conversation_id=draw(ids16),
        sender=draw(ids32),
        sender_device=draw(ids16),
        sent_at=sent,
        recall_sealed_until=sealed,
        recall_opened_until=opened,
        kind=kind,
        replaces=replaces,
    )


@MANY
@given(headers())
def test_header_round_trip(header: Header) -> None:
    data = header.encode()
    decoded = Header.decode(data)
    assert decoded == header
    assert decoded.encode() == data


@MEDIUM
@given(ids16, ids16, times, st.none() | ids16)
def test_revocation_round_trip(
    world: Any, message_id: bytes, conversation_id: bytes, issued_at: int, replacement: bytes | None
) -> None:
    assume(replacement != message_id)
    revocation = sign_revocation(
        world.alice,
        message_id=message_id,
        conversation_id=conversation_id,
        issued_at=issued_at,
        replacement_id=replacement,
    )
    checked = verify_revocation(revocation.signed, world.alice.public_key)
    assert checked == revocation
    assert (checked.message_id, checked.conversation_id, checked.issued_at) == (
        message_id,
        conversation_id,
        issued_at,
    )
    assert checked.replacement_id == replacement


@FAST
@given(
    ids16,
    st.integers(0, 2**62),
    st.none() | st.integers(1, 2**62 - 1),  # created_at + lifetime stays <= 2**63 - 1
    st.sampled_from(["bob_device", "bob_device_xwing"]),
)
def test_device_certificate_round_trip(
    world: Any, device_id: bytes, created_at: int, lifetime: int | None, which: str
) -> None:
    device = getattr(world, which)
    expires_at = None if lifetime is None else created_at + lifetime
    cert = issue_device_certificate(
        world.bob,
        device_id,
        device.signing_key.public_key,
        device.wrap_key.public_key,
        created_at=created_at,
        expires_at=expires_at,
    )
    checked = verify_device_certificate(cert.signed, world.bob.public_key, now=created_at)
    assert checked == cert
    assert checked.device_id == device_id
    assert checked.expires_at == expires_at
    assert checked.wrap_key == device.wrap_key.public_key


@MEDIUM
@given(
    ids16,
    ids16,
    st.sampled_from(list(DeletionCause)),
    ids32,
    st.none() | times,
    times,
)
def test_deletion_receipt_round_trip(
    world: Any,
    message_id: bytes,
    conversation_id: bytes,
    cause: DeletionCause,
    digest: bytes,
    opened_at: int | None,
    deleted_at: int,
) -> None:
    revocation = digest if cause is DeletionCause.RECALL else None
    receipt = sign_deletion_receipt(
        world.bob_device.signing_key,
        user=world.bob_id,
        device_id=world.bob_device.device_id,
        message_id=message_id,
        conversation_id=conversation_id,
        deleted_at=deleted_at,
        opened_at=opened_at,
        cause=cause,
        revocation=revocation,
    )
    checked = verify_deletion_receipt(
        receipt.signed,
        world.bob_cert,
        message_id=message_id,
        conversation_id=conversation_id,
        revocation=revocation,
    )
    assert checked == receipt
    assert (checked.cause, checked.revocation, checked.opened_at, checked.deleted_at) == (
        cause,
        revocation,
        opened_at,
        deleted_at,
    )


@st.composite
def purged_devices(draw: st.DrawFn) -> PurgedDevice:
    state = draw(
        st.sampled_from(
            [
                DeviceState.NEVER_DELIVERED,
                DeviceState.DELIVERED_SEALED,
                DeviceState.PENDING,
                DeviceState.EXPIRED,
            ]
        )
    )
    fetched: int | None
    released: int | None
    if state is DeviceState.NEVER_DELIVERED:
        fetched, released = None, None
    elif state is DeviceState.DELIVERED_SEALED:
        fetched, released = draw(times), None
    elif state is DeviceState.PENDING:
        fetched, released = draw(st.none() | times), draw(times)
    else:
        fetched, released = draw(st.none() | times), None
    return PurgedDevice(draw(ids32), draw(ids16), state, fetched, released)


@MEDIUM
@given(
    ids16,
    ids16,
    ids32,
    times,
    st.lists(purged_devices(), max_size=6, unique_by=lambda d: (d.user, d.device_id)),
)
def test_purge_receipt_round_trip(
    world: Any,
    message_id: bytes,
    conversation_id: bytes,
    revocation: bytes,
    purged_at: int,
    devices: list[PurgedDevice],
) -> None:
    receipt = sign_purge_receipt(
        world.relay,
        message_id=message_id,
        conversation_id=conversation_id,
        revocation=revocation,
        purged_at=purged_at,
        devices=devices,
    )
    checked = verify_purge_receipt(
        receipt.signed,
        world.relay.public_key,
        message_id=message_id,
        conversation_id=conversation_id,
        revocation=revocation,
    )
    assert checked == receipt
    assert sorted(checked.devices, key=lambda d: (d.user, d.device_id)) == list(checked.devices)
    assert set(checked.devices) == set(devices)
    assert checked.relay == fingerprint(world.relay.public_key)


@MANY
@given(st.text(max_size=600))
def test_body_round_trip(text: str) -> None:
    body = Body(text)
    assert Body.decode(body.encode()) == body


@MEDIUM
@given(st.text(max_size=600), st.binary(max_size=64), st.binary(min_size=8, max_size=8))
def test_body_encryption_round_trip(text: str, header: bytes, seed: bytes) -> None:
    key = SeededRandom(seed)(32)
    nonce, ciphertext = encrypt_body(Body(text), key, header, SeededRandom(seed + b"n"))
    assert decrypt_body(nonce, ciphertext, key, header) == Body(text)
    assert (len(ciphertext) - 16) % 256 == 0  # below 8 KiB: whole 256-byte buckets


@FAST
@given(
    st.text(max_size=3000),
    ids16,
    st.integers(0, 2**62),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.booleans(),
    st.binary(min_size=8, max_size=8),
)
def test_seal_open_decrypt_round_trip(
    world: Any,
    text: str,
    message_id: bytes,
    sent_at: int,
    opened_window: int,
    extra_sealed: int,
    replacement: bool,
    seed: bytes,
) -> None:
    replaces = None
    if replacement:
        replaces = world.other_message_id
        assume(replaces != message_id)
    header = world.header(
        message_id=message_id,
        sent_at=sent_at,
        recall_opened_until=sent_at + opened_window,
        recall_sealed_until=sent_at + opened_window + extra_sealed,
        kind=MessageKind.REPLACEMENT if replacement else MessageKind.TEXT,
        replaces=replaces,
    )
    sealed = seal_message(header, Body(text), world.alice, rng=SeededRandom(seed))
    envelope = open_envelope(sealed.envelope, world.alice.public_key)
    assert envelope.header == header
    assert envelope.header_bytes == header.encode()
    assert envelope.decrypt(sealed.message_key) == Body(text)
    # Sealing is reproducible from the same randomness: the vectors rely on it.
    again = seal_message(header, Body(text), world.alice, rng=SeededRandom(seed))
    assert again.envelope == sealed.envelope


wrap_suites = st.sampled_from([WrapSuite.X25519, WrapSuite.XWING])


@FAST
@given(wrap_suites, st.binary(min_size=32, max_size=32), ids16, ids16, ids16, st.data())
def test_wrap_round_trip(
    suite: WrapSuite,
    message_key: bytes,
    message_id: bytes,
    conversation_id: bytes,
    device_id: bytes,
    data: st.DataObject,
) -> None:
    private = WrapPrivateKey.generate(suite, SeededRandom(data.draw(st.binary(max_size=8))))
    ids = {"message_id": message_id, "conversation_id": conversation_id, "device_id": device_id}
    wrap = wrap_message_key(message_key, private.public_key, **ids)
    assert unwrap_message_key(wrap, private, **ids) == message_key
    field = data.draw(st.sampled_from(sorted(ids)))
    other = data.draw(ids16.filter(lambda value: value != ids[field]))
    with pytest.raises(AuthenticationFailure):
        unwrap_message_key(wrap, private, **{**ids, field: other})


@MEDIUM
@given(st.binary(min_size=32, max_size=32))
def test_signing_and_verify_key_serialisation_round_trip(seed: bytes) -> None:
    key = SigningKey(seed)
    assert load_signing_key(dump_signing_key(key)).seed == seed
    assert load_verify_key(dump_verify_key(key.public_key)) == key.public_key


@FAST
@given(wrap_suites, st.binary(max_size=16))
def test_device_key_serialisation_round_trip(suite: WrapSuite, seed: bytes) -> None:
    secrets = DeviceSecrets.generate(suite, SeededRandom(seed))
    data = dump_device_secrets(secrets)
    loaded = load_device_secrets(data)
    assert loaded.device_id == secrets.device_id
    assert loaded.signing_key.seed == secrets.signing_key.seed
    assert loaded.wrap_key.raw == secrets.wrap_key.raw
    assert loaded.wrap_key.public_key == secrets.wrap_key.public_key
    assert dump_device_secrets(loaded) == data
    public = secrets.wrap_key.public_key
    assert load_wrap_public_key(dump_wrap_public_key(public)) == public


def _registration(world: Any, relay: bytes, challenge: bytes) -> dict[str, Any]:
    cert = world.bob_cert.signed
    identity_signature, device_signature = sign_registration(
        world.bob, world.bob_device.signing_key, relay=relay, challenge=challenge, certificate=cert
    )
    return {
        "identity": world.bob.public_key,
        "certificate": cert,
        "relay": relay,
        "challenge": challenge,
        "identity_signature": identity_signature,
        "device_signature": device_signature,
        "now": world.now,
    }


_REGISTRATION_BYTES = [
    "certificate",
    "relay",
    "challenge",
    "identity_signature",
    "device_signature",
]


@MEDIUM
@given(ids32, ids32, st.sampled_from(_REGISTRATION_BYTES), st.data())
def test_registration_round_trip_and_bit_flips(
    world: Any, relay: bytes, challenge: bytes, field: str, data: st.DataObject
) -> None:
    args = _registration(world, relay, challenge)
    assert verify_registration(**args).device_id == world.bob_device.device_id
    bit = data.draw(st.integers(0, len(args[field]) * 8 - 1))
    with pytest.raises(ProtocolError):
        verify_registration(**{**args, field: flip(args[field], bit)})


@MEDIUM
@given(ids32, ids32, st.sampled_from(["signature", "relay", "device_id", "challenge"]), st.data())
def test_login_round_trip_and_bit_flips(
    world: Any, relay: bytes, challenge: bytes, field: str, data: st.DataObject
) -> None:
    device_id = world.bob_device.device_id
    signature = sign_login(
        world.bob_device.signing_key, relay=relay, device_id=device_id, challenge=challenge
    )
    args = {"signature": signature, "relay": relay, "device_id": device_id, "challenge": challenge}
    verify_login(world.bob_cert, **args)
    bit = data.draw(st.integers(0, len(args[field]) * 8 - 1))
    with pytest.raises(ProtocolError):
        verify_login(world.bob_cert, **{**args, field: flip(args[field], bit)})


def test_every_bit_flip_of_a_registration_is_refused(world: Any) -> None:
    args = _registration(world, bytes(range(32)), bytes(range(32, 64)))
    for field in _REGISTRATION_BYTES:
        assert_every_flip_refused(
            args[field], lambda value, field=field: verify_registration(**{**args, field: value})
        )


# -- single-bit flips: exhaustive ---------------------------------------------------


def test_every_bit_flip_of_an_envelope_is_refused(world: Any) -> None:
    sealed = world.seal("bit flips", seed=b"flip")
    key = world.alice.public_key
    assert_every_flip_refused(sealed.envelope, lambda data: open_envelope(data, key))


def test_every_bit_flip_of_a_replacement_envelope_is_refused(world: Any) -> None:
    header = world.header(
        message_id=world.other_message_id, kind=MessageKind.REPLACEMENT, replaces=world.message_id
    )
    sealed = world.seal("fixed", header=header, seed=b"flip2")
    key = world.alice.public_key
    assert_every_flip_refused(sealed.envelope, lambda data: open_envelope(data, key))


def test_every_bit_flip_of_a_revocation_is_refused(world: Any) -> None:
    for revocation in (world.revocation(), world.revocation(replacement_id=world.other_message_id)):
        key = world.alice.public_key
        assert_every_flip_refused(revocation.signed, lambda data: verify_revocation(data, key))


def test_every_bit_flip_of_a_device_certificate_is_refused(world: Any) -> None:
    key = world.bob.public_key
    assert_every_flip_refused(
        world.bob_cert.signed, lambda data: verify_device_certificate(data, key, now=world.now)
    )


def test_every_bit_flip_of_a_deletion_receipt_is_refused(world: Any) -> None:
    digest = world.revocation().digest
    receipt = sign_deletion_receipt(
        world.bob_device.signing_key,
        user=world.bob_id,
        device_id=world.bob_device.device_id,
        message_id=world.message_id,
        conversation_id=world.conversation,
        deleted_at=world.now + 5,
        opened_at=world.now + 2,
        revocation=digest,
    )

    def check(data: bytes) -> Any:
        return verify_deletion_receipt(
            data,
            world.bob_cert,
            message_id=world.message_id,
            conversation_id=world.conversation,
            revocation=digest,
        )

    assert_every_flip_refused(receipt.signed, check)


def test_every_bit_flip_of_a_purge_receipt_is_refused(world: Any) -> None:
    digest = world.revocation().digest
    receipt = sign_purge_receipt(
        world.relay,
        message_id=world.message_id,
        conversation_id=world.conversation,
        revocation=digest,
        purged_at=world.now + 5,
        devices=[
            PurgedDevice(world.bob_id, world.bob_device.device_id, DeviceState.PENDING, 1, 2),
            PurgedDevice(
                world.bob_id, world.bob_device2.device_id, DeviceState.DELIVERED_SEALED, 1, None
            ),
        ],
    )

    def check(data: bytes) -> Any:
        return verify_purge_receipt(
            data,
            world.relay.public_key,
            message_id=world.message_id,
            conversation_id=world.conversation,
            revocation=digest,
        )

    assert_every_flip_refused(receipt.signed, check)


def test_every_bit_flip_of_an_x25519_wrap_is_refused(world: Any) -> None:
    device = world.bob_device
    ids = {
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "device_id": device.device_id,
    }
    wrap = wrap_message_key(b"K" * 32, device.wrap_key.public_key, **ids)
    assert_every_flip_refused(wrap, lambda data: unwrap_message_key(data, device.wrap_key, **ids))


def test_every_bit_flip_of_a_body_ciphertext_is_refused() -> None:
    key, header = b"k" * 32, b"header bytes"
    nonce, ciphertext = encrypt_body(Body("flip me"), key, header, SeededRandom(b"body flips"))
    assert_every_flip_refused(ciphertext, lambda data: decrypt_body(nonce, data, key, header))
    assert_every_flip_refused(nonce, lambda data: decrypt_body(data, ciphertext, key, header))
    # The associated data (the signed header bytes) is bound too.
    assert_every_flip_refused(header, lambda data: decrypt_body(nonce, ciphertext, key, data))


# -- single-bit flips: the large X-Wing structures, also exhaustively -------------------


@pytest.fixture(scope="module")
def xwing_wrap(world: Any) -> tuple[bytes, dict[str, bytes]]:
    device = world.bob_device_xwing
    ids = {
        "message_id": world.message_id,
        "conversation_id": world.conversation,
        "device_id": device.device_id,
    }
    return wrap_message_key(b"K" * 32, device.wrap_key.public_key, **ids), ids


def test_every_bit_flip_of_an_xwing_wrap_is_refused(
    world: Any, xwing_wrap: tuple[bytes, dict[str, bytes]]
) -> None:
    wrap, ids = xwing_wrap
    assert len(wrap) == 1168
    key = world.bob_device_xwing.wrap_key
    assert unwrap_message_key(wrap, key, **ids) == b"K" * 32
    assert_every_flip_refused(wrap, lambda data: unwrap_message_key(data, key, **ids))


def test_every_bit_flip_of_an_xwing_device_certificate_is_refused(world: Any) -> None:
    key = world.bob.public_key
    assert_every_flip_refused(
        world.bob_cert_xwing.signed,
        lambda data: verify_device_certificate(data, key, now=world.now),
    )


@pytest.mark.parametrize("field", ["message_id", "conversation_id", "device_id"])
def test_every_bit_flip_of_a_wrap_context_is_refused(world: Any, field: str) -> None:
    """The HPKE info binds each id: a wrap presented for any other one does not open."""
    for device in (world.bob_device, world.bob_device_xwing):
        ids = {
            "message_id": world.message_id,
            "conversation_id": world.conversation,
            "device_id": device.device_id,
        }
        wrap = wrap_message_key(b"K" * 32, device.wrap_key.public_key, **ids)

        def unwrap(value: bytes, device: Any = device, ids: Any = ids, wrap: bytes = wrap) -> Any:
            return unwrap_message_key(wrap, device.wrap_key, **{**ids, field: value})

        assert_every_flip_refused(ids[field], unwrap)


@FAST
@given(st.text(min_size=1, max_size=3000), st.data())
def test_bit_flip_of_any_envelope_is_refused(world: Any, text: str, data: st.DataObject) -> None:
    sealed = world.seal(text, seed=b"any")
    bit = data.draw(st.integers(0, len(sealed.envelope) * 8 - 1))
    with pytest.raises(ProtocolError):
        open_envelope(flip(sealed.envelope, bit), world.alice.public_key)
