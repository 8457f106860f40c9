"""Reading a vector's fields: shared by the checkers of every group type."""

from __future__ import annotations

from typing import Any

__all__ = ["MalformedTest", "hex_field"]


class MalformedTest(Exception):
    """A vector file (not the implementation) is at fault: a field is missing or not hex."""


def hex_field(value: Any) -> bytes:
    """A hex string from a vector as bytes; anything else is the file's fault."""
    if not isinstance(value, str):
        raise MalformedTest(f"expected a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedTest(f"not a hex string: {value[:16]!r}") from None
