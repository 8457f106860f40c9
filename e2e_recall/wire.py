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


def encode(value: WireValue) -> bytes:
    """Encode ``value`` canonically (map keys sorted, shortest forms)."""
    _check_encodable(value, 1)
    try:
        return msgpack.packb(_sorted(value), use_bin_type=True)
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
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_pairs_to_dict,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
        )
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


def _check_decoded(value: WireValue, limits: Limits) -> None:
    """Walk the decoded value iteratively: depth, types, key types."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth > limits.max_depth:
                raise DecodeError("depth_exceeded", f"nesting deeper than {limits.max_depth}")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            if depth > limits.max_depth:
                raise DecodeError("depth_exceeded", f"nesting deeper than {limits.max_depth}")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise DecodeError("non_string_key", "map keys must be strings")
                stack.append((child, depth + 1))
        elif item is None or isinstance(item, bool | int | str | bytes):
            continue
        elif isinstance(item, float):
            raise DecodeError("float", "floating-point values are not allowed")
        else:
            raise DecodeError("ext_type", "extension types are not allowed")


def _check_encodable(value: WireValue, depth: int) -> None:
    """Refuse what no decoder would accept; ``depth`` counts as :func:`_check_decoded` does."""
    if isinstance(value, list | tuple | dict) and depth > DEFAULT_LIMITS.max_depth:
        raise UsageError("depth_exceeded", "value nests too deeply to encode")
    if value is None or isinstance(value, bool | str | bytes):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise UsageError("int_range", "integer out of msgpack range")
        return
    if isinstance(value, list | tuple):
        for child in value:
            _check_encodable(child, depth + 1)
        return
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str):
                raise UsageError("non_string_key", "map keys must be strings")
            _check_encodable(child, depth + 1)
        return
    raise UsageError("unencodable", f"cannot encode {type(value).__name__}")


def _sorted(value: WireValue) -> WireValue:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(child) for child in value]
    return value
