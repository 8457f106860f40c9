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
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.attachment import (
    CHUNK_LEN,
    CHUNK_OVERHEAD,
    FileDecryptor,
    FileEncryptor,
    blob_digest,
)
from e2e_recall.body import Body, decrypt_body, pad, unpad
from e2e_recall.descriptor import decode_descriptors
from e2e_recall.domains import (
    SIG_DELETION_RECEIPT,
    SIG_DEVICE_CERTIFICATE,
    SIG_ENVELOPE,
    SIG_PURGE_RECEIPT,
    SIG_REVOCATION,
)
from e2e_recall.envelope import signed_envelope_bytes
from e2e_recall.errors import E2ERecallError, ProtocolError
from e2e_recall.file_names import MAX_FILE_NAME_BYTES, sanitise_file_name

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


def resigned(label: bytes, body: bytes) -> bytes:
    return wire.encode({"body": body, "signature": SIGNER.sign(label, body)})


def _signed_target(label: bytes, verify: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] % 2, data[1:]
        try:
            verify(resigned(label, rest) if mode else rest)
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


# -- attachments ------------------------------------------------------------------------------

FILE_HEAD = 1 + 32 + 8  # mode byte, file key, declared size (u64, big-endian)
_PIECES = (1, 2, 16, 17, 23, 24, 25, 1000, 65552, 65553, 65554, 1 << 20)


def _slices(blob: bytes, seed: int) -> list[bytes]:
    """``blob`` cut as the seed says (seed 0: whole), as a download would deliver it."""
    if seed == 0:
        return [blob]
    rng, out, at = random.Random(seed), [], 0  # noqa: S311 (where to cut, not a secret)
    while at < len(blob):
        step = rng.choice(_PIECES)
        out.append(blob[at : at + step])
        at += step
    return out


def _decrypt(key: bytes, size: int, digest: bytes, pieces: list[bytes]) -> tuple[str, bytes]:
    """Feed the pieces and finish: ("ok", file) or (the error's reason, what came out)."""
    try:
        decryptor = FileDecryptor(key, size, digest)
    except ProtocolError as exc:
        return exc.reason, b""
    out = []
    try:
        for piece in pieces:
            out.append(decryptor.update(piece))
            if sum(map(len, out)) > size:
                raise InvariantBroken("the decryptor returned bytes past the file's size")
            if decryptor.buffered > CHUNK_LEN + CHUNK_OVERHEAD - 1:
                raise InvariantBroken("the decryptor held more than a chunk")
        decryptor.finish()
    except ProtocolError as exc:  # data refused: its reason; a UsageError here is a crash
        return exc.reason, b"".join(out)
    return "ok", b"".join(out)


def file_decryptor(data: bytes) -> None:
    """Arbitrary blob bytes, declared sizes, digests and slicings: typed refusals only.

    Layout: a mode byte (bit 0: the digest is the blob's own, so only the
    stream is judged; bits 1..7: how the blob is sliced), a 32-byte file key,
    the declared size as a u64, then (bit 0 clear) a 32-byte digest, then the
    blob.  Whatever is accepted must be exactly the blob the encryptor makes
    of that file under that key and stream header, and the answer must not
    depend on the slicing.
    """
    if len(data) < FILE_HEAD:
        return
    mode, key = data[0], data[1:33]
    size = int.from_bytes(data[33:41], "big")
    rest = data[FILE_HEAD:]
    if mode & 1:
        blob = rest
        digest = blob_digest(blob)
    else:
        digest, blob = rest[:32], rest[32:]
    outcome, plain = _decrypt(key, size, digest, _slices(blob, mode >> 1))
    if mode >> 1:
        whole = _decrypt(key, size, digest, [blob])
        if whole[0] != outcome or (outcome == "ok" and whole[1] != plain):
            raise InvariantBroken(f"slicing changed the outcome: {outcome} against {whole[0]}")
    if outcome != "ok":
        return
    if len(plain) != size:
        raise InvariantBroken("an accepted blob gave a file of another size")
    encryptor = FileEncryptor(key, size, rng=lambda n: blob[:n])
    again = encryptor.update(plain) + encryptor.finish()
    if again != blob or encryptor.digest != digest:
        raise InvariantBroken("an accepted blob is not the encryption of the file it gave")


BODY_KEY = bytes(range(100, 132))
BODY_AAD = b"fuzz header"


def _check_name(name: str) -> None:
    safe = sanitise_file_name(name)
    if not safe or len(safe.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise InvariantBroken(f"an unsafe length after sanitising: {safe!r}")
    if any(c in safe for c in "/\\\x00") or safe in (".", "..") or safe[0] in ". ":
        raise InvariantBroken(f"a path, a hidden or a dot name after sanitising: {safe!r}")
    if sanitise_file_name(safe) != safe:
        raise InvariantBroken(f"sanitising twice changed {safe!r}")


def _accepted_body(body: Body, raw: bytes) -> None:
    if body.encode() != raw:
        raise InvariantBroken("the body decoder accepted a non-canonical encoding")
    for descriptor in body.files:
        _check_name(descriptor.name)


def body(data: bytes) -> None:
    """The body and its file descriptors, as the recipient decodes them after decrypting.

    Mode byte: 0 the encoded body, 1 the padded body, 2 a descriptor list as
    any msgpack value, 3 a sender-chosen file name (UTF-8, else Latin-1), 4
    padded bytes sealed under a known key and opened by ``decrypt_body``.
    """
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    try:
        if mode == 0:
            _accepted_body(Body.decode(rest), rest)
        elif mode == 1:
            content = unpad(rest)
            if pad(content) != rest:
                raise InvariantBroken("unpad accepted a padding pad() would not produce")
            _accepted_body(Body.decode(content), content)
        elif mode == 2:
            for descriptor in decode_descriptors(wire.decode(rest)):
                _check_name(descriptor.name)
        elif mode == 3:
            try:
                name = rest.decode("utf-8")
            except UnicodeDecodeError:
                name = rest.decode("latin-1")
            _check_name(name)
        else:
            import nacl.bindings as sodium

            ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
                rest, BODY_AAD, NONCE, BODY_KEY
            )
            opened = decrypt_body(NONCE, ciphertext, BODY_KEY, BODY_AAD)
            _accepted_body(opened, unpad(rest))
    except E2ERecallError:
        return


def group_change(data: bytes) -> None:
    """Group changes, verified and applied (see group_target.py)."""
    from group_target import group_change as run

    run(data)


def devices(data: bytes) -> None:
    """Link codes, sealed link messages, approvals and revocations (see device_target.py)."""
    from device_target import devices as run

    run(data)


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
    "file_decryptor": file_decryptor,
    "body": body,
    "group_change": group_change,
    "devices": devices,
}
