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
    found["handlers"] = list(_handler_seeds(found, wire.encode))
    return found


def _handler_seeds(found: dict[str, list[bytes]], encode: object) -> Iterator[bytes]:
    """One well-formed body per route (with a valid token and the real ids), and variants."""
    assert callable(encode)
    envelope = next(s[1:] for s in found["envelope"] if s[0] == 0)
    revocation = next(s[1:] for s in found["revocation"] if s[0] == 0)
    receipt = next(s[2:] for s in found["receipts"] if s[:2] == b"\x00\x00")
    certificate = next(s[1:] for s in found["certificate"] if s[0] == 0)
    wraps = [{"device_id": bytes(16), "wrap": bytes(48)}]
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


TARGET_NAMES = (
    "wire_codec",
    "envelope",
    "revocation",
    "certificate",
    "receipts",
    "unwrap",
    "handlers",
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
