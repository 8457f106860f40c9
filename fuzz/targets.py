"""Fuzz targets: every decoder and verifier that meets bytes from the network.

Each target takes one input and must either succeed or raise an error of
the package's own hierarchy (``E2ERecallError`` for the core, ``RelayError``
for the relay's request handling).  Anything else (a ``KeyError``, a
``TypeError``, a raw msgpack error, an invariant broken) is a crash.

Signed structures are fuzzed twice over: as received bytes (mostly stopped
by the signature, as they should be) and "re-signed", where the fuzzer's
bytes become the signed body and the target signs them with a known key
before verifying, so the parsing behind the signature is reached too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.domains import (
    SIG_DELETION_RECEIPT,
    SIG_DEVICE_CERTIFICATE,
    SIG_ENVELOPE,
    SIG_PURGE_RECEIPT,
    SIG_REVOCATION,
)
from e2e_recall.envelope import signed_envelope_bytes
from e2e_recall.errors import E2ERecallError

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
SIGNER = er.SigningKey(bytes(range(32)))
SIGNER_PUBLIC = SIGNER.public_key
NONCE = bytes(24)
CIPHERTEXT = bytes(48)
NOW = 1_800_000_000_000
MESSAGE_ID = bytes(range(16))
CONVERSATION_ID = bytes(range(16, 32))
_DEVICE = er.DeviceSecrets.generate(rng=er.SeededRandom(b"fuzz device"))
DEVICE_CERTIFICATE = er.verify_device_certificate(
    er.issue_device_certificate(
        SIGNER,
        _DEVICE.device_id,
        _DEVICE.signing_key.public_key,
        _DEVICE.wrap_key.public_key,
        created_at=NOW,
    ).signed,
    SIGNER_PUBLIC,
    now=NOW,
)


class InvariantBroken(Exception):
    """A target found a result that is wrong even though nothing raised."""


def _first_valid(name: str) -> dict[str, Any]:
    document = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    for group in document["testGroups"]:
        for test in group["tests"]:
            if test["result"] == "valid":
                return {**group, **test}
    raise LookupError(name)


def _wrap_setup(name: str, suite: er.WrapSuite) -> tuple[er.WrapPrivateKey, dict[str, bytes]]:
    test = _first_valid(name)
    private = er.WrapPrivateKey(suite, bytes.fromhex(test["recipientPrivateKey"]))
    ids = {
        "message_id": bytes.fromhex(test["messageId"]),
        "conversation_id": bytes.fromhex(test["conversationId"]),
        "device_id": bytes.fromhex(test["deviceId"]),
    }
    return private, ids


_X25519 = _wrap_setup("wrap_x25519", er.WrapSuite.X25519)
_XWING = _wrap_setup("wrap_xwing", er.WrapSuite.XWING)


def wire_codec(data: bytes) -> None:
    """Decode; anything accepted must re-encode to exactly the same bytes (it is canonical)."""
    try:
        value = wire.decode(data)
    except E2ERecallError:
        return
    if wire.encode(value) != data:
        raise InvariantBroken("the decoder accepted a non-canonical encoding")


def envelope(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 2, data[1:]
    if mode:  # the fuzzer's bytes as a header, signed by the sender
        payload = signed_envelope_bytes(rest, NONCE, CIPHERTEXT)[len(SIG_ENVELOPE) :]
        signature = SIGNER.sign(SIG_ENVELOPE, payload)
        rest = wire.encode(
            {"header": rest, "nonce": NONCE, "ciphertext": CIPHERTEXT, "signature": signature}
        )
    try:
        verified = er.open_envelope(rest, SIGNER_PUBLIC)
    except E2ERecallError:
        return
    try:
        verified.decrypt(bytes(32))
    except E2ERecallError:
        return
    raise InvariantBroken("a body decrypted under a key it was not sealed with")


def _resigned(label: bytes, body: bytes) -> bytes:
    return wire.encode({"body": body, "signature": SIGNER.sign(label, body)})


def _signed_target(label: bytes, verify: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] % 2, data[1:]
        try:
            verify(_resigned(label, rest) if mode else rest)
        except E2ERecallError:
            return

    return target


revocation = _signed_target(SIG_REVOCATION, lambda d: er.verify_revocation(d, SIGNER_PUBLIC))
certificate = _signed_target(
    SIG_DEVICE_CERTIFICATE, lambda d: er.verify_device_certificate(d, SIGNER_PUBLIC, now=NOW)
)


def _any_receipt(data: bytes, label: bytes) -> None:
    ids = {"message_id": MESSAGE_ID, "conversation_id": CONVERSATION_ID}
    if label is SIG_PURGE_RECEIPT:
        er.verify_purge_receipt(data, SIGNER_PUBLIC, **ids)
    else:
        er.verify_deletion_receipt(data, DEVICE_CERTIFICATE, **ids)


def receipts(data: bytes) -> None:
    """Deletion receipts (signed by a device) and purge receipts (by the relay)."""
    if len(data) < 2:
        return
    label = SIG_PURGE_RECEIPT if data[0] % 2 else SIG_DELETION_RECEIPT
    signer = SIGNER if label is SIG_PURGE_RECEIPT else _DEVICE.signing_key
    if data[1] % 2:
        rest = wire.encode({"body": data[2:], "signature": signer.sign(label, data[2:])})
        try:
            _any_receipt(rest, label)
        except E2ERecallError:
            return
        return
    try:
        _any_receipt(data[2:], label)
    except E2ERecallError:
        return


def unwrap(data: bytes) -> None:
    if not data:
        return
    private, ids = _XWING if data[0] % 2 else _X25519
    try:
        key = er.unwrap_message_key(data[1:], private, **ids)
    except E2ERecallError:
        return
    if len(key) != 32:
        raise InvariantBroken("an unwrapped key is not 32 bytes")


def handlers(data: bytes) -> None:
    """Every request handler of the relay (started on first use: see handler_target.py)."""
    from handler_target import handlers as run

    run(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "handlers": handlers,
    "wire_codec": wire_codec,
    "envelope": envelope,
    "revocation": revocation,
    "certificate": certificate,
    "receipts": receipts,
    "unwrap": unwrap,
}
