"""Field-by-field validation of decoded wire maps.

Each structure declares its fields once, as a tuple of :class:`Field`; the
same declaration checks incoming maps (exact keys, types, lengths, ranges)
and is what ``docs/protocol.md`` tabulates.  A map with an unknown or
missing key, a byte string where a string belongs (or the reverse), or a
length off by one is a :class:`~e2e_recall.errors.DecodeError`, and the
version field is checked first so a newer peer gets ``unsupported_version``
rather than a confusing field error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import DecodeError, UnsupportedVersion

__all__ = ["UINT64_MAX", "Field", "check_map", "check_version"]

UINT64_MAX = 2**64 - 1
Kind = Literal["bin", "str", "uint", "bool", "list", "map"]


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a wire map and the rule its value must obey."""

    name: str
    kind: Kind
    size: int | None = None  # exact length of a bin
    max_len: int | None = None  # maximum length of a bin, str or list
    min_len: int = 0
    optional: bool = False  # the value may be nil (the key is still required)
    choices: frozenset[str] | None = None
    max_value: int = UINT64_MAX
    item: tuple[Field, ...] | None = None  # schema of each map in a list


def check_version(obj: object, what: str, supported: int) -> Mapping[str, Any]:
    """Require ``obj`` to be a map whose ``version`` is ``supported``."""
    if not isinstance(obj, dict):
        raise DecodeError("wrong_type", f"{what} must be a map")
    version = obj.get("version")
    if type(version) is not int:
        raise DecodeError("missing_field", f"{what} has no integer version")
    if version != supported:
        raise UnsupportedVersion("unknown_version", f"{what} version {version}")
    return obj


def check_map(obj: object, fields: tuple[Field, ...], what: str) -> dict[str, Any]:
    """Validate ``obj`` against ``fields`` exactly, returning it as a dict."""
    if not isinstance(obj, dict):
        raise DecodeError("wrong_type", f"{what} must be a map")
    names = {field.name for field in fields}
    if not names.issuperset(obj):
        for key in obj:  # the first unknown key, in the map's order
            if key not in names:
                raise DecodeError("unknown_field", f"{what} has an unknown field {key!r}")
    for field in fields:
        name = field.name
        if name not in obj:
            raise DecodeError("missing_field", f"{what} lacks {name!r}")
        _check_value(obj[name], field, what)
    return obj


def _check_value(value: object, field: Field, what: str) -> None:
    """Check one field; the place named in an error, ``what.name``, is only built for one."""
    if value is None:
        if field.optional:
            return
        raise DecodeError("wrong_type", f"{what}.{field.name} must not be nil")
    kind = field.kind
    if kind == "bin":
        if type(value) is not bytes:
            raise DecodeError("wrong_type", f"{what}.{field.name} must be a byte string")
        if len(value) != field.size or field.max_len is not None or field.min_len:
            _check_length(len(value), field, what)  # else exactly its size: nothing to refuse
    elif kind == "uint":
        if type(value) is not int or value < 0:
            raise DecodeError("wrong_type", f"{what}.{field.name} must be an unsigned integer")
        if value > field.max_value:
            raise DecodeError("out_of_range", f"{what}.{field.name} is out of range")
    elif kind == "str":
        if type(value) is not str:
            raise DecodeError("wrong_type", f"{what}.{field.name} must be a string")
        _check_length(len(value.encode("utf-8")), field, what)
        if field.choices is not None and value not in field.choices:
            raise DecodeError("unknown_value", f"{what}.{field.name} has an unknown value")
    elif kind == "bool":
        if type(value) is not bool:
            raise DecodeError("wrong_type", f"{what}.{field.name} must be a boolean")
    elif kind == "list":
        where = f"{what}.{field.name}"
        if type(value) is not list:
            raise DecodeError("wrong_type", f"{where} must be an array")
        _check_length(len(value), field, what)
        if field.item is not None:
            for index, element in enumerate(value):
                check_map(element, field.item, f"{where}[{index}]")
    elif kind == "map" and type(value) is not dict:
        raise DecodeError("wrong_type", f"{what}.{field.name} must be a map")


def _check_length(length: int, field: Field, what: str) -> None:
    if field.size is not None and length != field.size:
        raise DecodeError(
            "bad_length", f"{what}.{field.name} must be {field.size} bytes, not {length}"
        )
    if field.max_len is not None and length > field.max_len:
        raise DecodeError("bad_length", f"{what}.{field.name} is longer than {field.max_len}")
    if length < field.min_len:
        raise DecodeError("bad_length", f"{what}.{field.name} is shorter than {field.min_len}")
