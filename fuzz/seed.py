"""Seed inputs for every fuzz target from tests/vectors: ``python fuzz/seed.py DIR``.

Valid and invalid vectors alike, in the shape each target reads (a mode byte
first where a target has modes), written to DIR/TARGET.  Deterministic: the
same vectors give the same files, named by the hash of their content.  The
committed corpus is these seeds merged down by ``fuzz/run.py TARGET --merge
DIR/TARGET`` (the smallest subset with the same coverage).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors"


def _tests(name: str) -> Iterator[dict[str, object]]:
    document = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    for group in document["testGroups"]:
        yield from group["tests"]


def _hex(test: dict[str, object], key: str) -> bytes | None:
    value = test.get(key)
    return bytes.fromhex(value) if isinstance(value, str) else None


def _field(decode: Any, raw: bytes, name: str) -> bytes | None:
    """One bytes field of an encoded map, or None for a vector too broken to have it."""
    from e2e_recall.errors import E2ERecallError

    try:
        value = decode(raw)[name]
    except (E2ERecallError, KeyError, TypeError):
        return None
    return value if isinstance(value, bytes) else None


def seeds() -> dict[str, list[bytes]]:
    sys.path.insert(0, str(HERE.parent))
    from e2e_recall import wire

    found: dict[str, list[bytes]] = {name: [] for name in TARGET_NAMES}
    for test in _tests("wire_codec"):
        if (raw := _hex(test, "input")) is not None:
            found["wire_codec"].append(raw)
    for test in _tests("envelope"):
        if (raw := _hex(test, "envelope")) is not None:
            found["envelope"].append(b"\x00" + raw)
            if (inner := _field(wire.decode, raw, "header")) is not None:
                found["envelope"].append(b"\x01" + inner)
    for name, target in (("revocation", "revocation"), ("device_certificate", "certificate")):
        for test in _tests(name):
            if (raw := _hex(test, "signed")) is not None:
                found[target].append(b"\x00" + raw)
                if (inner := _field(wire.decode, raw, "body")) is not None:
                    found[target].append(b"\x01" + inner)
    for name, kind in (("deletion_receipt", 0), ("purge_receipt", 1)):
        for test in _tests(name):
            if (raw := _hex(test, "signed")) is not None:
                found["receipts"].append(bytes([kind, 0]) + raw)
                if (inner := _field(wire.decode, raw, "body")) is not None:
                    found["receipts"].append(bytes([kind, 1]) + inner)
    for name, mode in (("wrap_x25519", 0), ("wrap_xwing", 1)):
        for test in _tests(name):
            if (raw := _hex(test, "wrap")) is not None:
                found["unwrap"].append(bytes([mode]) + raw)
    for test in _tests("group_changes"):
        if (raw := _hex(test, "signed")) is not None:
            found["group_change"].append(b"\x00" + raw)
            if (inner := _field(wire.decode, raw, "body")) is not None:
                found["group_change"].append(b"\x01" + inner)
    for action in range(5):  # a next change of the fuzz group: each action, by admin and member
        found["group_change"] += [bytes([2, action, 0, 1]), bytes([2, action | 0x80, 1, 0])]
    found["devices"] = list(_device_seeds())
    found["file_decryptor"] = list(_file_seeds())
    found["body"] = list(_body_seeds())
    found["handlers"] = list(_handler_seeds(found, wire.encode))
    return found


def _device_seeds() -> Iterator[bytes]:
    """Link codes, sealed link messages (with their secret, and opened), revocations, approvals."""
    import nacl.bindings as sodium
    from nacl.exceptions import CryptoError

    from e2e_recall import wire
    from e2e_recall.domains import AEAD_LINK_ANSWER, AEAD_LINK_REQUEST
    from e2e_recall.link_code import link_keys

    labels = {
        "LinkRequestOpen": (1, 2, AEAD_LINK_REQUEST),
        "LinkAnswerOpen": (3, 4, AEAD_LINK_ANSWER),
    }
    document = json.loads((VECTORS / "linking.json").read_text(encoding="utf-8"))
    for group in document["testGroups"]:
        for test in group["tests"]:
            if group["type"] == "LinkCode" and isinstance(test.get("code"), str):
                yield b"\x00" + test["code"].encode("latin-1", "replace")
                continue
            with_secret, plain_mode, label = labels.get(group["type"], (0, 0, b""))
            sealed, secret = _hex(test, "sealed"), _hex({**group, **test}, "linkSecret")
            if not with_secret or sealed is None or secret is None:
                continue
            yield bytes([with_secret]) + secret + sealed
            keys = link_keys(secret)
            if len(sealed) < 40:  # shorter than a nonce and a tag: nothing to open
                continue
            try:
                plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    sealed[24:], label + keys.link_id, sealed[:24], keys.link_key
                )
            except CryptoError:
                continue
            yield bytes([plain_mode]) + bytes(plain)
    for test in _tests("device_revocation"):
        if (raw := _hex(test, "signed")) is not None:
            yield b"\x05" + raw
            if (inner := _field(wire.decode, raw, "body")) is not None:
                yield b"\x05\x01" + inner
        if (approval := _hex(test, "approval")) is not None:
            yield b"\x06" + approval


def _file_seeds() -> Iterator[bytes]:
    """Each FileDecrypt vector as key, size, digest and blob: as declared, and self-digested."""
    from e2e_recall.attachment import file_key

    for test in _tests("file_encryption"):
        blob = _hex(test, "blob")
        key, message_id = _hex(test, "messageKey"), _hex(test, "messageId")
        size, index = test.get("size"), test.get("index")
        if blob is None or key is None or message_id is None:
            continue
        assert isinstance(size, int)
        assert isinstance(index, int)
        head = file_key(key, message_id, index) + (size % (1 << 64)).to_bytes(8, "big")
        digest = _hex(test, "digest") or b""
        if len(digest) == 32:
            yield b"\x00" + head + digest + blob
        yield b"\x01" + head + blob
        yield b"\x05" + head + blob  # the same, sliced


def _body_seeds() -> Iterator[bytes]:
    """Bodies listing files (each mode), descriptor lists and file names from the vectors."""
    import nacl.bindings as sodium
    from nacl.exceptions import CryptoError

    from e2e_recall import wire
    from e2e_recall.body import unpad
    from e2e_recall.errors import E2ERecallError

    for test in _tests("file_encryption"):
        name = test.get("name")
        if isinstance(name, str):
            yield b"\x03" + name.encode("utf-8", "surrogatepass")
        parts = [_hex(test, k) for k in ("ciphertext", "aad", "nonce", "key")]
        if any(p is None for p in parts):
            continue
        ciphertext, aad, nonce, key = (p or b"" for p in parts)
        try:
            padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
        except CryptoError:
            continue
        yield b"\x01" + padded
        yield b"\x04" + padded
        try:
            content = unpad(padded)
        except E2ERecallError:
            continue
        yield b"\x00" + content
        try:
            files = wire.decode(content)["files"]
        except (E2ERecallError, KeyError, TypeError):
            continue
        yield b"\x02" + wire.encode(files)


def _handler_seeds(found: dict[str, list[bytes]], encode: object) -> Iterator[bytes]:
    """One well-formed body per route (with a valid token and the real ids), and variants."""
    assert callable(encode)
    envelope = next(s[1:] for s in found["envelope"] if s[0] == 0)
    revocation = next(s[1:] for s in found["revocation"] if s[0] == 0)
    receipt = next(s[2:] for s in found["receipts"] if s[:2] == b"\x00\x00")
    certificate = next(s[1:] for s in found["certificate"] if s[0] == 0)
    wraps = [{"device_id": bytes(16), "wrap": bytes(48), "key_id": bytes(16)}]
    bodies = {
        1: {
            "identity_key": bytes(32),
            "certificate": certificate,
            "challenge": bytes(32),
            "identity_signature": bytes(64),
            "device_signature": bytes(64),
            "handle": "carol",
        },
        2: {"device_id": bytes(16), "challenge": bytes(32), "signature": bytes(64)},
        6: {"envelope": envelope, "wraps": wraps, "blobs": []},
        8: {},
        9: {"receipt": receipt},
        10: {
            "revocation": revocation,
            "replacement": {"envelope": envelope, "wraps": wraps, "blobs": []},
        },
        13: {"seq": 1},
    }
    for route in range(14):
        body = encode(bodies.get(route, {}))
        for flags in (3, 0, 1, 2, 8):
            yield bytes([route, flags]) + body
    yield from _blob_route_seeds(encode)
    yield from _group_route_seeds(found, encode)
    yield from _device_route_seeds(found, encode)


def _device_route_seeds(found: dict[str, list[bytes]], encode: Any) -> Iterator[bytes]:
    """The link and device routes (20 to 26): a plausible body each, with and without a token."""
    bodies = {
        20: {"link_id": bytes(range(16)), "expires_at": 1_800_000_000_000},
        22: {"sealed": bytes(200)},
        23: {"sealed": bytes(200)},
        26: {"revocation": next(s[1:] for s in found["revocation"] if s[0] == 0)},
    }
    for route in range(20, 27):
        for flags in (3, 1, 0):
            yield bytes([route, flags]) + encode(bodies.get(route, {})) + bytes(range(16))


def _group_route_seeds(found: dict[str, list[bytes]], encode: Any) -> Iterator[bytes]:
    """The group routes (18 post a change, 19 read the chain): see handler_target."""
    changes = [s[1:] for s in found["group_change"] if s[0] == 0][:6]
    bodies = [s[1:] for s in found["group_change"] if s[0] == 1][:6]
    for change in changes:
        for flags in (3, 1, 0):
            yield bytes([18, flags]) + encode({"change": change})
    for inner in bodies:  # signed by Alice in the target (flag 16), for her group or another
        yield bytes([18, 1 | 2 | 16]) + inner
        yield bytes([18, 1 | 16]) + inner
    for flags in (3, 1, 0, 8):
        yield bytes([19, flags]) + bytes(range(16))


def _headed(text: bytes, body: bytes = b"") -> bytes:
    return bytes([len(text)]) + text + body


def _blob_route_seeds(encode: Any) -> Iterator[bytes]:
    """The blob routes (14 create, 15 append, 16 upload status, 17 download): see handler_target."""
    declared = encode({"blob_id": bytes(range(16)), "size": 300, "digest": bytes(32)})
    for flags in (1, 0, 8, 5, 3):
        yield bytes([14, flags]) + declared
    yield bytes([14, 1]) + encode({"blob_id": bytes(16), "size": 1 << 40, "digest": bytes(32)})
    chunk = bytes(range(256)) * 2
    for flags in (1 | 18, 1 | 16, 1 | 18 | 32, 1 | 16 | 64, 1 | 16 | 4, 1 | 2, 0 | 18, 8 | 18):
        yield bytes([15, flags]) + _headed(b"0", chunk)
    for offset in (b"-1", b"99999999999999999999", b"1e3", b" 0", b"512", b"\xd9\xa3"):
        yield bytes([15, 1 | 16]) + _headed(offset, chunk)
    for flags in (1, 1 | 2, 1 | 16, 0, 8):
        yield bytes([16, flags]) + bytes(range(16))
    ranges = (b"bytes=0-", b"bytes=65536-", b"bytes=0-10,20-30", b"bytes=-10", b"bytes=70000-")
    for text in ranges:
        yield bytes([17, 1]) + _headed(text)
    for flags in (1 | 64, 0, 8, 3):
        yield bytes([17, flags]) + _headed(b"bytes=0-")


TARGET_NAMES = (
    "wire_codec",
    "envelope",
    "revocation",
    "certificate",
    "receipts",
    "unwrap",
    "file_decryptor",
    "body",
    "handlers",
    "group_change",
    "devices",
)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    for name, items in seeds().items():
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        for item in items:
            (directory / hashlib.sha256(item).hexdigest()[:20]).write_bytes(item)
        print(f"{name}: {len(list(directory.iterdir()))} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
