"""Envelopes: the signed header, the encrypted body, and the header rules."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from typing import Any

import nacl.bindings as sodium
import pytest

from e2e_recall import (
    Body,
    Header,
    MessageKind,
    SeededRandom,
    open_envelope,
    seal_message,
    wire,
)
from e2e_recall.body import encrypt_body
from e2e_recall.domains import HASH_CIPHERTEXT, SIG_ENVELOPE
from e2e_recall.envelope import signed_envelope_bytes
from e2e_recall.errors import (
    AuthenticationFailure,
    DecodeError,
    SignatureInvalid,
    UnsupportedVersion,
    UsageError,
    WrongSigner,
)


def envelope_fields(data: bytes) -> dict[str, Any]:
    return wire.decode(data, limits=wire.Limits(max_size=1 << 20, max_bin=1 << 20))


def forge(world: Any, header: Header, signer: Any, text: str = "forged") -> bytes:
    """An envelope for ``header`` signed by ``signer`` (bypassing seal_message's checks)."""
    header_bytes = header.encode()
    nonce, ciphertext = encrypt_body(Body(text), bytes(32), header_bytes, SeededRandom(b"forge"))
    payload = signed_envelope_bytes(header_bytes, nonce, ciphertext)[len(SIG_ENVELOPE) :]
    signature = signer.sign(SIG_ENVELOPE, payload)
    return wire.encode(
        {"header": header_bytes, "nonce": nonce, "ciphertext": ciphertext, "signature": signature}
    )


def test_seal_open_decrypt(world: Any) -> None:
    sealed = world.seal("hello Bob")
    assert sealed.header == world.header()
    assert len(sealed.message_key) == 32
    verified = open_envelope(sealed.envelope, world.alice.public_key)
    assert verified.header == world.header()
    assert verified.header_bytes == world.header().encode()
    assert verified.decrypt(sealed.message_key) == Body("hello Bob")


def test_envelope_layout(world: Any) -> None:
    sealed = world.seal()
    fields = envelope_fields(sealed.envelope)
    assert sorted(fields) == ["ciphertext", "header", "nonce", "signature"]
    assert Header.decode(fields["header"]) == world.header()
    assert b"hello Bob" not in sealed.envelope


def test_signature_covers_the_documented_bytes(world: Any) -> None:
    sealed = world.seal()
    f = envelope_fields(sealed.envelope)
    expected = (
        SIG_ENVELOPE
        + struct.pack(">I", len(f["header"]))
        + f["header"]
        + hashlib.sha256(HASH_CIPHERTEXT + f["nonce"] + f["ciphertext"]).digest()
    )
    assert signed_envelope_bytes(f["header"], f["nonce"], f["ciphertext"]) == expected
    assert (
        sodium.crypto_sign_open(f["signature"] + expected, world.alice.public_key.raw) == expected
    )


def test_sealing_is_reproducible(world: Any) -> None:
    assert world.seal(seed=b"a").envelope == world.seal(seed=b"a").envelope
    assert world.seal(seed=b"a").envelope != world.seal(seed=b"b").envelope


def test_explicit_message_key_is_used(world: Any) -> None:
    key = b"\x07" * 32
    sealed = seal_message(world.header(), Body("k"), world.alice, message_key=key)
    assert sealed.message_key == key
    assert open_envelope(sealed.envelope, world.alice.public_key).decrypt(key).text == "k"


def test_wrong_sender_key_is_a_bad_signature(world: Any) -> None:
    sealed = world.seal()
    for key in (world.bob.public_key, world.mallory.public_key):
        with pytest.raises(SignatureInvalid):
            open_envelope(sealed.envelope, key)


def test_header_naming_someone_else_is_wrong_signer(world: Any) -> None:
    data = forge(world, world.header(), world.mallory)  # names Alice, signed by Mallory
    with pytest.raises(WrongSigner) as info:
        open_envelope(data, world.mallory.public_key)
    assert info.value.reason == "not_sender"
    with pytest.raises(SignatureInvalid):
        open_envelope(data, world.alice.public_key)


def test_seal_refuses_a_header_naming_another_sender(world: Any) -> None:
    with pytest.raises(UsageError) as info:
        seal_message(world.header(sender=world.bob_id), Body("x"), world.alice)
    assert info.value.reason == "wrong_sender"


def test_decrypt_with_wrong_key(world: Any) -> None:
    verified = open_envelope(world.seal().envelope, world.alice.public_key)
    with pytest.raises(AuthenticationFailure):
        verified.decrypt(bytes(32))


@pytest.mark.parametrize("field", ["header", "nonce", "ciphertext"])
def test_parts_from_another_envelope_break_the_signature(world: Any, field: str) -> None:
    a = envelope_fields(world.seal("one", seed=b"1").envelope)
    b = envelope_fields(
        world.seal(
            "two", header=world.header(message_id=world.other_message_id), seed=b"2"
        ).envelope
    )
    mixed = dict(a)
    mixed[field] = b[field]
    with pytest.raises(SignatureInvalid):
        open_envelope(wire.encode(mixed), world.alice.public_key)


def test_envelope_map_must_be_exact(world: Any) -> None:
    fields = envelope_fields(world.seal().envelope)
    with pytest.raises(DecodeError) as info:
        open_envelope(wire.encode({**fields, "extra": 1}), world.alice.public_key)
    assert info.value.reason == "length_limit"  # an envelope map has exactly 4 entries
    renamed = dict(fields)
    renamed["nonse"] = renamed.pop("nonce")
    with pytest.raises(DecodeError) as info:
        open_envelope(wire.encode(renamed), world.alice.public_key)
    assert info.value.reason == "unknown_field"
    del fields["nonce"]
    with pytest.raises(DecodeError) as info:
        open_envelope(wire.encode(fields), world.alice.public_key)
    assert info.value.reason == "missing_field"


def test_envelope_with_trailing_bytes(world: Any) -> None:
    with pytest.raises(DecodeError):
        open_envelope(world.seal().envelope + b"\xc0", world.alice.public_key)


def test_replacement_round_trip(world: Any) -> None:
    header = world.header(
        message_id=world.other_message_id, kind=MessageKind.REPLACEMENT, replaces=world.message_id
    )
    sealed = world.seal("corrected", header=header)
    verified = open_envelope(sealed.envelope, world.alice.public_key)
    assert verified.header.kind is MessageKind.REPLACEMENT
    assert verified.header.replaces == world.message_id
    assert verified.decrypt(sealed.message_key).text == "corrected"


# -- header rules ----------------------------------------------------------------


def test_header_round_trip(world: Any) -> None:
    header = world.header()
    decoded = Header.decode(header.encode())
    assert decoded == header
    assert decoded.kind is MessageKind.TEXT


def test_windows_may_be_equal(world: Any) -> None:
    now = world.now
    header = world.header(sent_at=now, recall_opened_until=now, recall_sealed_until=now)
    assert Header.decode(header.encode()) == header


@pytest.mark.parametrize(
    ("sent", "opened", "sealed"),
    [
        (10, 9, 20),  # opened window ends before the message was sent
        (10, 21, 20),  # opened window outlasts the sealed one
        (10, 5, 5),  # both end before sending
    ],
)
def test_window_order(world: Any, sent: int, opened: int, sealed: int) -> None:
    header = world.header(sent_at=sent, recall_opened_until=opened, recall_sealed_until=sealed)
    with pytest.raises(UsageError) as info:
        header.encode()
    assert info.value.reason == "bad_windows"
    with pytest.raises(DecodeError) as decode_info:
        Header.decode(wire.encode(header.to_wire()))
    assert decode_info.value.reason == "bad_windows"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"kind": MessageKind.REPLACEMENT, "replaces": None}, id="replacement_without"),
        pytest.param({"kind": MessageKind.TEXT, "replaces": b"\x05" * 16}, id="text_with"),
        pytest.param({"kind": MessageKind.REPLACEMENT, "replaces": "self"}, id="replaces_itself"),
    ],
)
def test_replacement_rules(world: Any, changes: dict[str, Any]) -> None:
    if changes["replaces"] == "self":
        changes = {**changes, "replaces": world.message_id}
    header = world.header(**changes)
    with pytest.raises(UsageError) as info:
        header.encode()
    assert info.value.reason == "bad_replaces"
    with pytest.raises(DecodeError) as decode_info:
        Header.decode(wire.encode(header.to_wire()))
    assert decode_info.value.reason == "bad_replaces"
    with pytest.raises(UsageError):
        seal_message(header, Body("x"), world.alice)


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": bytes(15)},
        {"conversation_id": bytes(17)},
        {"sender": bytes(16)},
        {"sender_device": b""},
        {"replaces": bytes(15), "kind": MessageKind.REPLACEMENT},
        {"sent_at": -1},
        {"recall_sealed_until": 2**63},
    ],
)
def test_header_field_errors(world: Any, changes: dict[str, Any]) -> None:
    header = world.header(**changes)
    with pytest.raises(UsageError):
        header.encode()
    with pytest.raises(DecodeError):
        Header.decode(wire.encode(header.to_wire()))


def test_largest_times_are_accepted(world: Any) -> None:
    top = 2**63 - 1
    header = world.header(sent_at=top, recall_opened_until=top, recall_sealed_until=top)
    assert Header.decode(header.encode()) == header


def test_unknown_kind(world: Any) -> None:
    obj = world.header().to_wire()
    obj["kind"] = "photo"
    with pytest.raises(DecodeError) as info:
        Header.decode(wire.encode(obj))
    assert info.value.reason == "unknown_value"


def test_header_version(world: Any) -> None:
    obj = world.header().to_wire()
    obj["version"] = 2
    with pytest.raises(UnsupportedVersion):
        Header.decode(wire.encode(obj))


def test_header_nesting_is_refused(world: Any) -> None:
    obj = world.header().to_wire()
    obj["replaces"] = [obj["message_id"]]
    with pytest.raises(DecodeError):
        Header.decode(wire.encode(obj))


def test_modified_header_breaks_the_signature(world: Any) -> None:
    """A relay cannot change a header field (here: back-date it) undetected."""
    fields = envelope_fields(world.seal().envelope)
    obj = Header.decode(fields["header"]).to_wire()
    obj["sent_at"] = obj["sent_at"] - 1
    fields["header"] = wire.encode(obj)
    with pytest.raises(SignatureInvalid):
        open_envelope(wire.encode(fields), world.alice.public_key)


def test_header_is_immutable(world: Any) -> None:
    header = world.header()
    with pytest.raises(AttributeError):
        header.sent_at = 0  # type: ignore[misc]
    assert replace(header, sent_at=header.sent_at) == header
