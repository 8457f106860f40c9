"""Linking a device in the core: codes, the sealed request and answer, approvals, revocations."""

from __future__ import annotations

import os

import nacl.bindings as sodium
import pytest

from e2e_recall import (
    DeviceSecrets,
    SigningKey,
    WrapSuite,
    fingerprint,
    issue_device_certificate,
    wire,
)
from e2e_recall.device_admin import (
    peek_approver,
    sign_device_approval,
    sign_device_revocation,
    verify_device_approval,
    verify_device_revocation,
)
from e2e_recall.domains import AEAD_LINK_ANSWER
from e2e_recall.errors import (
    AuthenticationFailure,
    BadCode,
    DecodeError,
    SignatureInvalid,
    UsageError,
    WrongContext,
)
from e2e_recall.link_code import ALPHABET, format_code, link_keys, new_link_secret, parse_code
from e2e_recall.linking import (
    LinkContact,
    LinkRequest,
    open_link_answer,
    open_link_request,
    seal_link_answer,
    seal_link_request,
)

NOW = 1_800_000_000_000
RELAY = b"r" * 32


def test_a_code_reads_back_however_it_is_typed() -> None:
    secret = new_link_secret()
    code = format_code(secret)
    assert len(code) == 34
    assert code.count("-") == 6
    assert parse_code(code) == secret
    assert parse_code(code.lower().replace("-", "  ")) == secret
    look_alike = code.replace("1", "l").replace("0", "o")
    assert parse_code(look_alike) == secret


@pytest.mark.parametrize("seed", range(8))
def test_every_single_symbol_typo_is_bad_code_never_another_secret(seed: int) -> None:
    secret = os.urandom(16)
    flat = format_code(secret).replace("-", "")
    for index, symbol in enumerate(flat):
        for other in ALPHABET:
            if other == symbol:
                continue
            typed = flat[:index] + other + flat[index + 1 :]
            with pytest.raises(BadCode):
                parse_code(typed)


def test_every_swap_of_two_neighbours_is_bad_code() -> None:
    secret = bytes(range(16))
    flat = format_code(secret).replace("-", "")
    for index in range(len(flat) - 1):
        if flat[index] == flat[index + 1]:
            continue
        typed = flat[:index] + flat[index + 1] + flat[index] + flat[index + 2 :]
        with pytest.raises(BadCode):
            parse_code(typed)


@pytest.mark.parametrize("text", ["", "0" * 27, "0" * 29, "U" + "0" * 27, "8" + "0" * 27, "é" * 28])
def test_malformed_codes_are_bad_code(text: str) -> None:
    with pytest.raises(BadCode):
        parse_code(text)


def test_keys_differ_by_purpose_and_secret() -> None:
    a, b = link_keys(bytes(16)), link_keys(b"\x01" + bytes(15))
    assert len(a.link_id) == 16
    assert len(a.link_key) == 32
    assert a.link_id != a.link_key[:16]
    assert a != b


def _request(keys_secret: bytes, device: DeviceSecrets) -> bytes:
    keys = link_keys(keys_secret)
    return seal_link_request(
        link_id=keys.link_id,
        link_key=keys.link_key,
        device_id=device.device_id,
        signing_key=device.signing_key,
        wrap_key=device.wrap_key.public_key,
        device_name="phone",
    )


@pytest.mark.parametrize("suite", [WrapSuite.X25519, WrapSuite.XWING])
def test_request_and_answer_round_trip(suite: WrapSuite) -> None:
    secret, device, identity = (
        new_link_secret(),
        DeviceSecrets.generate(suite),
        SigningKey.generate(),
    )
    keys = link_keys(secret)
    request = open_link_request(
        _request(secret, device), link_id=keys.link_id, link_key=keys.link_key
    )
    assert request.device_id == device.device_id
    assert request.device_name == "phone"
    assert request.wrap_key.raw == device.wrap_key.public_key.raw
    cert = issue_device_certificate(
        identity, request.device_id, request.signing_key, request.wrap_key, created_at=NOW
    ).signed
    bob = SigningKey.generate()
    groups = [os.urandom(16) for _ in range(3)]
    sealed = seal_link_answer(
        link_id=keys.link_id,
        link_key=keys.link_key,
        identity=identity,
        certificate=cert,
        approval=b"approval",
        relay_url="http://127.0.0.1:1",
        handle="alice",
        contacts=[LinkContact("bob", fingerprint(bob.public_key), bob.public_key.raw, True)],
        groups=groups,
        group_names={groups[0]: "family", groups[2]: "ÉquipeNuit"},
    )
    answer = open_link_answer(
        sealed, link_id=keys.link_id, link_key=keys.link_key, expected=request, now=NOW
    )
    assert answer.identity.seed == identity.seed
    assert answer.certificate.device_id == device.device_id
    assert answer.groups == tuple(sorted(groups))
    assert dict(answer.named_groups()) == {
        groups[0]: "family",
        groups[1]: None,
        groups[2]: "ÉquipeNuit",
    }
    assert answer.contacts[0].verified is True
    assert answer.handle == "alice"


def test_a_request_for_another_slot_or_key_does_not_open() -> None:
    secret, device = new_link_secret(), DeviceSecrets.generate()
    sealed = _request(secret, device)
    keys, other = link_keys(secret), link_keys(new_link_secret())
    with pytest.raises(AuthenticationFailure):
        open_link_request(sealed, link_id=other.link_id, link_key=keys.link_key)
    with pytest.raises(AuthenticationFailure):
        open_link_request(sealed, link_id=keys.link_id, link_key=other.link_key)
    for index in range(0, len(sealed), 7):
        flipped = bytearray(sealed)
        flipped[index] ^= 1
        with pytest.raises(AuthenticationFailure):
            open_link_request(bytes(flipped), link_id=keys.link_id, link_key=keys.link_key)
    with pytest.raises(DecodeError):
        open_link_request(sealed[:39], link_id=keys.link_id, link_key=keys.link_key)


def test_an_answer_certifying_another_device_is_refused() -> None:
    secret, device, intruder = new_link_secret(), DeviceSecrets.generate(), DeviceSecrets.generate()
    keys, identity = link_keys(secret), SigningKey.generate()
    request = LinkRequest(
        device.device_id, device.signing_key.public_key, device.wrap_key.public_key, None
    )
    cert = issue_device_certificate(
        identity,
        intruder.device_id,
        intruder.signing_key.public_key,
        intruder.wrap_key.public_key,
        created_at=NOW,
    ).signed
    sealed = seal_link_answer(
        link_id=keys.link_id,
        link_key=keys.link_key,
        identity=identity,
        certificate=cert,
        approval=b"",
        relay_url="http://x",
        handle=None,
        contacts=[],
        groups=[],
    )
    with pytest.raises(WrongContext):
        open_link_answer(
            sealed, link_id=keys.link_id, link_key=keys.link_key, expected=request, now=NOW
        )


def test_approval_binds_relay_device_and_certificate() -> None:
    approver = DeviceSecrets.generate()
    cert = b"certificate bytes"
    approval = sign_device_approval(
        approver.signing_key, relay=RELAY, approver=approver.device_id, certificate=cert
    )
    assert peek_approver(approval) == approver.device_id
    key = approver.signing_key.public_key
    assert (
        verify_device_approval(approval, key, relay=RELAY, certificate=cert) == approver.device_id
    )
    with pytest.raises(SignatureInvalid):
        verify_device_approval(approval, key, relay=b"s" * 32, certificate=cert)
    with pytest.raises(SignatureInvalid):
        verify_device_approval(approval, key, relay=RELAY, certificate=cert + b"!")
    with pytest.raises(SignatureInvalid):
        verify_device_approval(
            approval, SigningKey.generate().public_key, relay=RELAY, certificate=cert
        )


def test_revocation_is_for_one_relay_and_signed_by_the_identity() -> None:
    identity, device_id = SigningKey.generate(), os.urandom(16)
    revocation = sign_device_revocation(identity, device_id=device_id, revoked_at=NOW, relay=RELAY)
    verified = verify_device_revocation(revocation.signed, identity.public_key, relay=RELAY)
    assert verified.device_id == device_id
    assert verified.user == fingerprint(identity.public_key)
    with pytest.raises(WrongContext):
        verify_device_revocation(revocation.signed, identity.public_key, relay=b"s" * 32)
    with pytest.raises(SignatureInvalid):
        verify_device_revocation(revocation.signed, SigningKey.generate().public_key)


def _answer_parts() -> tuple[bytes, LinkRequest, dict[str, object]]:
    device, identity = DeviceSecrets.generate(), SigningKey.generate()
    request = LinkRequest(
        device.device_id, device.signing_key.public_key, device.wrap_key.public_key, None
    )
    cert = issue_device_certificate(
        identity,
        device.device_id,
        device.signing_key.public_key,
        device.wrap_key.public_key,
        created_at=NOW,
    ).signed
    fields: dict[str, object] = {
        "identity": identity,
        "certificate": cert,
        "approval": b"",
        "relay_url": "http://x",
        "handle": None,
        "contacts": [],
    }
    return new_link_secret(), request, fields


def test_group_names_must_name_groups_of_the_answer_within_the_length() -> None:
    secret, _, fields = _answer_parts()
    keys, group = link_keys(secret), os.urandom(16)
    for names in ({os.urandom(16): "stranger"}, {group: ""}, {group: "x" * 33}):
        with pytest.raises(UsageError):
            seal_link_answer(
                link_id=keys.link_id,
                link_key=keys.link_key,
                groups=[group],
                group_names=names,
                **fields,  # type: ignore[arg-type]
            )


def test_an_answer_from_before_group_names_opens_with_its_groups_unnamed() -> None:
    """The bytes an old device seals: the same map without ``group_names``."""
    secret, request, fields = _answer_parts()
    keys, groups = link_keys(secret), sorted(os.urandom(16) for _ in range(2))
    identity = fields["identity"]
    assert isinstance(identity, SigningKey)
    old_body = {
        "version": 1,
        "identity_key": identity.seed,
        "certificate": fields["certificate"],
        "approval": b"",
        "relay_url": "http://x",
        "handle": None,
        "contacts": [],
        "groups": groups,
    }
    nonce = os.urandom(24)
    sealed = nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        wire.encode(old_body), AEAD_LINK_ANSWER + keys.link_id, nonce, keys.link_key
    )
    answer = open_link_answer(
        sealed, link_id=keys.link_id, link_key=keys.link_key, expected=request, now=NOW
    )
    assert answer.groups == tuple(groups)
    assert answer.named_groups() == ((groups[0], None), (groups[1], None))
    body = {**old_body, "group_names": ["one"]}  # with the key, it must name every group
    resealed = nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        wire.encode(body), AEAD_LINK_ANSWER + keys.link_id, nonce, keys.link_key
    )
    with pytest.raises(DecodeError):
        open_link_answer(
            resealed, link_id=keys.link_id, link_key=keys.link_key, expected=request, now=NOW
        )
