"""Vectors for the wire codec and for identities (fingerprints, safety numbers)."""

from __future__ import annotations

from typing import Any

from ..identity import direct_conversation_id, fingerprint, safety_number
from ..signing import SigningKey
from .fixtures import NON_CANONICAL_ED25519, SMALL_ORDER_ED25519, Context
from .format import VectorFile

__all__ = ["codec_vectors", "identity_vectors", "tagged"]


def tagged(value: Any) -> Any:
    """A msgpack value as JSON that keeps its type: ints as strings, bytes as hex."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, list):
        return {"array": [tagged(item) for item in value]}
    return {"map": [[key, tagged(item)] for key, item in value.items()]}


def _nest(depth: int) -> bytes:
    return b"\x91" * (depth - 1) + b"\x90"


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


_VALID: list[tuple[str, str, Any]] = [
    ("nil", "c0", None),
    ("false", "c2", False),
    ("true", "c3", True),
    ("zero", "00", 0),
    ("largest positive fixint", "7f", 127),
    ("smallest uint8", "cc80", 128),
    ("largest uint8", "ccff", 255),
    ("smallest uint16", "cd0100", 256),
    ("largest uint16", "cdffff", 65535),
    ("smallest uint32", "ce00010000", 65536),
    ("largest uint32", "ceffffffff", 2**32 - 1),
    ("smallest uint64", "cf0000000100000000", 2**32),
    ("largest uint64", "cfffffffffffffffff", 2**64 - 1),
    ("minus one", "ff", -1),
    ("smallest negative fixint", "e0", -32),
    ("largest int8", "d0df", -33),
    ("smallest int8", "d080", -128),
    ("largest int16", "d1ff7f", -129),
    ("smallest int16", "d18000", -32768),
    ("largest int32", "d2ffff7fff", -32769),
    ("smallest int32", "d280000000", -(2**31)),
    ("largest int64", "d3ffffffff7fffffff", -(2**31) - 1),
    ("smallest int64", "d38000000000000000", -(2**63)),
    ("empty string", "a0", ""),
    ("31-byte fixstr", "bf" + "61" * 31, "a" * 31),
    ("32-byte str8", "d920" + "61" * 32, "a" * 32),
    ("255-byte str8", "d9ff" + "61" * 255, "a" * 255),
    ("256-byte str16", "da0100" + "61" * 256, "a" * 256),
    ("UTF-8 string", "a6c3a9e282ac21", "\u00e9\u20ac!"),
    ("empty bin", "c400", b""),
    ("255-byte bin8", "c4ff" + "00" * 255, bytes(255)),
    ("256-byte bin16", "c50100" + "00" * 256, bytes(256)),
    ("empty array", "90", []),
    ("15-element fixarray", "9f" + "00" * 15, [0] * 15),
    ("16-element array16", "dc0010" + "00" * 16, [0] * 16),
    ("empty map", "80", {}),
    ("map, keys sorted", "82a16101a16202", {"a": 1, "b": 2}),
    ("map, keys sorted by UTF-8 bytes", "83a15a01a16102a2c3a903", {"Z": 1, "a": 2, "\u00e9": 3}),
    ("map, shorter key first when a prefix", "82a16101a2616102", {"a": 1, "aa": 2}),
    ("nesting of exactly 32", _nest(32).hex(), _nested(32)),
]

_INVALID: list[tuple[str, str, list[str]]] = [
    ("5 as uint8", "cc05", ["NonCanonical"]),
    ("5 as uint16", "cd0005", ["NonCanonical"]),
    ("5 as uint32", "ce00000005", ["NonCanonical"]),
    ("5 as uint64", "cf0000000000000005", ["NonCanonical"]),
    ("255 as uint16", "cd00ff", ["NonCanonical"]),
    ("positive value as int8", "d005", ["NonCanonical"]),
    ("minus one as int8", "d0ff", ["NonCanonical"]),
    ("minus one as int16", "d1ffff", ["NonCanonical"]),
    ("-33 as int16", "d1ffdf", ["NonCanonical"]),
    ("-129 as int32", "d2ffffff7f", ["NonCanonical"]),
    ("positive value as int64", "d30000000000000001", ["NonCanonical"]),
    ("short string as str8", "d903616263", ["NonCanonical"]),
    ("short string as str16", "da0003616263", ["NonCanonical"]),
    ("short bin as bin16", "c50003616263", ["NonCanonical"]),
    ("two elements as array16", "dc00020102", ["NonCanonical"]),
    ("one entry as map16", "de0001a16101", ["NonCanonical"]),
    ("keys unsorted", "82a16202a16101", ["NonCanonical"]),
    ("longer key before its prefix", "82a2616102a16101", ["NonCanonical"]),
    ("duplicate key", "82a16101a16101", ["DuplicateKey"]),
    ("duplicate key, different values", "82a16101a16102", ["DuplicateKey"]),
    ("two values", "c0c0", ["TrailingBytes"]),
    ("map then a byte", "80ff", ["TrailingBytes"]),
    ("empty input", "", ["Truncated"]),
    ("array missing an element", "9201", ["Truncated"]),
    ("string cut short", "a56162", ["Truncated"]),
    ("uint16 cut short", "cd01", ["Truncated"]),
    ("bin header only", "c405", ["Truncated"]),
    ("map missing a value", "81a161", ["Truncated"]),
    ("nesting of 33", _nest(33).hex(), ["DepthBomb"]),
    ("nesting of 2,000", _nest(2000).hex(), ["DepthBomb"]),
    ("map nesting of 33", ("81a178" * 32 + "80"), ["DepthBomb"]),
    ("array32 declaring 4 billion elements", "ddffffffff", ["HugeLength"]),
    ("map32 declaring 4 billion entries", "dfffffffff", ["HugeLength"]),
    ("bin32 declaring 4 GiB", "c6ffffffff00", ["HugeLength"]),
    ("str32 declaring 4 GiB", "dbffffffff61", ["HugeLength"]),
    ("array16 declaring more than the input", "dcffff00", ["HugeLength"]),
    ("fixext1", "d40100", ["ExtType"]),
    ("ext8", "c7010100", ["ExtType"]),
    ("timestamp 32", "d6ff00000001", ["ExtType"]),
    ("timestamp 96", "c70cff000000000000000000000001", ["ExtType"]),
    ("float32", "ca00000000", ["Float"]),
    ("float64", "cb3ff0000000000000", ["Float"]),
    ("integer key", "810102", ["NonStringKey"]),
    ("bin key", "81c4016102", ["NonStringKey"]),
    ("nil key", "81c001", ["NonStringKey"]),
    ("array key", "819001", ["NonStringKey"]),
    ("invalid UTF-8 byte", "a1ff", ["InvalidUtf8"]),
    ("overlong UTF-8 encoding of NUL", "a2c080", ["InvalidUtf8"]),
    ("UTF-8 encoded surrogate", "a3eda080", ["InvalidUtf8"]),
    ("UTF-8 sequence cut short", "a2e282", ["InvalidUtf8"]),
    ("reserved byte 0xc1", "c1", ["ReservedByte"]),
]

_LIMITED: list[tuple[str, str, list[str]]] = [
    ("17 bytes where 16 are allowed", "b0" + "61" * 16, ["TooLarge"]),
    ("string longer than max_str", "a9" + "61" * 9, ["HugeLength"]),
    ("bin longer than max_bin", "c409" + "00" * 9, ["HugeLength"]),
    ("array longer than max_array", "99" + "00" * 9, ["HugeLength"]),
    ("map larger than max_map", "85a16100a16200a16300a16400a16500", ["HugeLength"]),
    ("nesting deeper than max_depth", _nest(5).hex(), ["DepthBomb"]),
]


def codec_vectors(ctx: Context) -> VectorFile:
    del ctx  # the codec vectors need no keys
    vf = VectorFile(
        "Canonical msgpack wire codec",
        [
            "Decode input under the group's limits. Valid inputs decode to value (ints as",
            "decimal strings, byte strings as hex) and re-encode to exactly the input.",
            "Every invalid input must be refused (decode_failure): non-canonical forms too.",
        ],
    )
    defaults = {
        "maxSize": 1 << 20,
        "maxStr": 65536,
        "maxBin": 1 << 20,
        "maxArray": 4096,
        "maxMap": 64,
        "maxDepth": 32,
    }
    group = vf.group("WireDecode", limits=defaults)
    for comment, hexed, value in _VALID:
        group.add(comment, "success", ["Valid"], input=hexed, value=tagged(value))
    for comment, hexed, flags in _INVALID:
        group.add(comment, "decode_failure", flags, input=hexed)
    small = vf.group(
        "WireDecode",
        limits={"maxSize": 16, "maxStr": 8, "maxBin": 8, "maxArray": 8, "maxMap": 4, "maxDepth": 4},
    )
    small.add(
        "within every limit",
        "success",
        ["Valid"],
        input="93a3616263c403000102" + "80",
        value=tagged(["abc", b"\x00\x01\x02", {}]),
    )
    for comment, hexed, flags in _LIMITED:
        small.add(comment, "decode_failure", flags, input=hexed)
    return vf


def identity_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Fingerprints, safety numbers and direct conversation ids",
        [
            "fingerprint = SHA-256(label || public key); the safety number is the same 60 digits",
            "whichever key is A; the direct conversation id is the same for both users.",
        ],
    )
    group = vf.group("SafetyNumber")
    keys = [ctx.alice, ctx.bob, ctx.carol, ctx.relay] + [
        SigningKey.generate(ctx.rng) for _ in range(4)
    ]
    pairs = [(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))][:12]
    for index, (a, b) in enumerate(pairs):
        if index % 2:
            a, b = b, a
        fa, fb = fingerprint(a.public_key), fingerprint(b.public_key)
        group.add(
            f"pair {index + 1}",
            "success",
            ["Valid"],
            keyA=a.public_key.raw.hex(),
            keyB=b.public_key.raw.hex(),
            fingerprintA=fa.hex(),
            fingerprintB=fb.hex(),
            safetyNumber=safety_number(a.public_key, b.public_key),
            directConversationId=direct_conversation_id(fa, fb).hex(),
        )
    for name, point in SMALL_ORDER_ED25519.items():
        group.add(
            f"key A of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            keyA=point.hex(),
            keyB=ctx.bob.public_key.raw.hex(),
        )
    group.add(
        "key B not canonical",
        "invalid_key",
        ["NonCanonicalKey"],
        keyA=ctx.alice.public_key.raw.hex(),
        keyB=NON_CANONICAL_ED25519.hex(),
    )
    group.add(
        "key A of 31 bytes",
        "invalid_key",
        ["BadLength"],
        keyA=ctx.alice.public_key.raw[:31].hex(),
        keyB=ctx.bob.public_key.raw.hex(),
    )
    return vf
