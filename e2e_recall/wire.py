"""The wire codec: msgpack, canonical, with hard limits.

Everything e2e-recall puts on the wire or signs is a msgpack value built from
nil, booleans, integers, UTF-8 strings, byte strings, arrays and maps with
string keys.  There is exactly one encoding of each value (see
``docs/protocol.md``, "Canonical encoding"), and :func:`decode` refuses any
other: it decodes with ``msgpack`` under size limits, walks the result for
depth and types, and re-encodes it, so a byte that could differ without
changing the value (a wide integer, an unsorted or duplicated key, trailing
data) is caught without a hand-written parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import DecodeError, UsageError

__all__ = ["DEFAULT_LIMITS", "Limits", "WireValue", "decode", "encode"]

WireValue = Any
"""A value the codec accepts: None, bool, int, str, bytes, list, dict[str, ...]."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# Decoded values of these exact types can never be refused.
_LEAVES = frozenset({str, bytes, int, bool, type(None)})
# Values of these exact types are encoded as they are, with no check (ints have a range).
_PLAIN = frozenset({str, bytes, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard ceilings applied before and during decoding.

    The defaults suit control messages; callers that carry ciphertext pass
    larger ``max_size``/``max_bin`` values explicitly.
    """

    max_size: int = 1 << 20
    max_str: int = 64 * 1024
    max_bin: int = 1 << 20
    max_array: int = 4096
    max_map: int = 64
    max_depth: int = 32


DEFAULT_LIMITS = Limits()
_MAX_ENCODE_DEPTH = DEFAULT_LIMITS.max_depth  # encode() makes nothing decode() would refuse


def encode(value: WireValue) -> bytes:
    """Encode ``value`` canonically (map keys sorted, shortest forms)."""
    try:
        return msgpack.packb(_canonical(value, 1), use_bin_type=True)
    except UnicodeEncodeError:
        raise UsageError("invalid_utf8", "a string cannot be encoded as UTF-8") from None


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> WireValue:
    """Decode canonical msgpack ``data``, raising :class:`DecodeError` otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("not_bytes", "decode() takes bytes")
    data = bytes(data)
    if len(data) > limits.max_size:
        raise DecodeError("too_large", f"{len(data)} bytes exceeds the limit of {limits.max_size}")
    if not data:
        raise DecodeError("truncated", "empty input")
    if limits.max_depth <= _MAX_ENCODE_DEPTH:
        # The usual case, canonical input, in one pass of msgpack with no Python call
        # per map.  Its value holds only the types the codec allows, with integers in
        # range, nested no deeper than encode() allows; so when every map has its keys
        # in order, encode() would return what msgpack packs from it as it is.  Any
        # other input -- a duplicated key among them, whose value cannot re-encode to
        # the input -- goes through the strict decoding below, which names what is
        # wrong exactly as it always has.
        try:
            value = _unpack(data, limits, None)
            fast = _check_decoded(value, limits) and msgpack.packb(value, use_bin_type=True) == data
        except Exception:
            fast = False
        if fast:
            return value
    return _decode_strictly(data, limits)


def _unpack(data: bytes, limits: Limits, hook: Any) -> WireValue:
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        use_list=True,
        object_pairs_hook=hook,
        max_str_len=limits.max_str,
        max_bin_len=limits.max_bin,
        max_array_len=limits.max_array,
        max_map_len=limits.max_map,
        max_ext_len=0,
    )


def _decode_strictly(data: bytes, limits: Limits) -> WireValue:
    try:
        value = _unpack(data, limits, _pairs_to_dict)
    except _DuplicateKey as exc:
        raise DecodeError("duplicate_key", f"map key {exc.key!r} appears twice") from None
    except msgpack.ExtraData:
        raise DecodeError("trailing_bytes", "data continues after the value") from None
    except msgpack.StackError:
        raise DecodeError("depth_exceeded", "nesting is too deep") from None
    except UnicodeDecodeError:
        raise DecodeError("invalid_utf8", "a string is not valid UTF-8") from None
    except ValueError as exc:
        raise DecodeError(*_classify_value_error(exc)) from None
    except (TypeError, msgpack.FormatError, msgpack.UnpackException):
        raise DecodeError("malformed", "not valid msgpack") from None
    _check_decoded(value, limits)
    if encode(value) != data:
        raise DecodeError("non_canonical", "not in the canonical encoding")
    return value


class _DuplicateKey(Exception):
    def __init__(self, key: object) -> None:
        self.key = key


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for key, item in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = item
    return result


def _classify_value_error(exc: ValueError) -> tuple[str, str]:
    text = str(exc)
    if "incomplete" in text:
        return "truncated", "the data ends in the middle of a value"
    if "max_ext_len" in text:
        return "ext_type", "extension types are not allowed"
    if "exceeds max" in text:
        return "length_limit", "a declared length exceeds the limit"
    if "not allowed for map key" in text:
        return "non_string_key", "map keys must be strings"
    return "malformed", "not valid msgpack"


def _check_decoded(value: WireValue, limits: Limits) -> bool:
    """Walk the decoded value iteratively: depth, types, key types.

    Returns whether every map's keys are in sorted order.  msgpack
    builds values of the exact built-in types only.  The children that can
    never be refused (strings, byte strings, integers, booleans, nil) are
    passed over where they are found rather than stacked; everything else is
    visited in the same order as ever, so the first problem found is the same.
    """
    in_order = True
    max_depth = limits.max_depth
    if type(value) is dict and max_depth >= 1:
        # The usual value, a map, is walked here first without the stack: only
        # its children that are containers (or refusable) are stacked, as below.
        stack: list[tuple[Any, int]] = []
        for key, child in value.items():
            if type(key) is not str:
                raise DecodeError("non_string_key", "map keys must be strings")
            if type(child) not in _LEAVES:
                stack.append((child, 2))
        keys = list(value)
        in_order = keys == sorted(keys)
        if not stack:
            return in_order
    else:
        stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > max_depth:
                raise DecodeError("depth_exceeded", f"nesting deeper than {max_depth}")
            if kind is dict:
                for key, child in item.items():
                    if type(key) is not str:  # msgpack gives a str or a bytes key
                        raise DecodeError("non_string_key", "map keys must be strings")
                    if type(child) not in _LEAVES:
                        stack.append((child, depth + 1))
                if in_order:
                    keys = list(item)
                    in_order = keys == sorted(keys)
            else:
                stack.extend((child, depth + 1) for child in item if type(child) not in _LEAVES)
        elif kind in _LEAVES:
            continue
        elif isinstance(item, float):
            raise DecodeError("float", "floating-point values are not allowed")
        else:
            raise DecodeError("ext_type", "extension types are not allowed")
    return in_order


def _canonical(value: WireValue, depth: int) -> WireValue:
    """``value`` with every map's keys sorted, refusing what no decoder would accept.

    One pass, depth first in the value's own order, so the first problem found
    is the one reported; ``depth`` counts as :func:`_check_decoded` does.  The
    exact built-in types take the short way; subclasses follow the same rules.
    """
    kind = type(value)
    if kind is bytes or kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise UsageError("int_range", "integer out of msgpack range")
        return value
    if kind is dict:
        if depth > _MAX_ENCODE_DEPTH:
            raise UsageError("depth_exceeded", "value nests too deeply to encode")
        return _canonical_map(value, depth)
    if kind is list or kind is tuple:
        if depth > _MAX_ENCODE_DEPTH:
            raise UsageError("depth_exceeded", "value nests too deeply to encode")
        return [child if type(child) in _PLAIN else _canonical(child, depth + 1) for child in value]
    return _canonical_other(value, depth)


def _canonical_map(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    children = {}
    same = True  # every child is its own canonical form
    for key, child in value.items():
        if type(key) is not str and not isinstance(key, str):
            raise UsageError("non_string_key", "map keys must be strings")
        # A leaf that needs no check is kept as _canonical would return it, without the call.
        if type(child) in _PLAIN:
            children[key] = child
        else:
            canonical = children[key] = _canonical(child, depth + 1)
            same = same and canonical is child
    keys = list(children)
    ordered = sorted(keys)
    if ordered == keys:
        return value if same and type(value) is dict else children
    return {key: children[key] for key in ordered}


def _canonical_other(value: WireValue, depth: int) -> WireValue:
    """Subclasses of the allowed types (a StrEnum, an IntEnum, an OrderedDict), or a refusal."""
    if isinstance(value, list | tuple | dict) and depth > _MAX_ENCODE_DEPTH:
        raise UsageError("depth_exceeded", "value nests too deeply to encode")
    if isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise UsageError("int_range", "integer out of msgpack range")
        return value
    if isinstance(value, list | tuple):
        return [_canonical(child, depth + 1) for child in value]
    if isinstance(value, dict):
        return _canonical_map(value, depth)
    raise UsageError("unencodable", f"cannot encode {type(value).__name__}")
