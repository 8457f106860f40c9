"""Truncated encodings: every proper prefix of one valid structure, as invalid tests.

A decoder that reads a length and trusts it, or stops at the first complete
field, accepts some prefix of a valid input; testing every length finds it.
Each prefix is its own test, with the inputs it shares with the other
prefixes stated once in its group, so no test needs a "cut this input to n
bytes" indirection.  Structures over a kilobyte (X-Wing wraps, the X-Wing
wrapping key and what embeds it) would make the files quadratic in size, so
for those :func:`sparse_lengths` keeps every length near both ends and near
each field boundary the caller names, and every 64th in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .format import Group

__all__ = ["add_truncations", "sparse_lengths"]

_STRIDE = 64
_EDGE = 3
_TAIL = 16


def add_truncations(
    group: Group,
    whole: bytes,
    field: str,
    *,
    expect: str = "decode_failure",
    lengths: Iterable[int] | None = None,
    what: str = "",
    **inputs: Any,
) -> None:
    """Add one test per prefix length of ``whole``, placed in ``field``.

    ``inputs`` are the other fields every test needs (keys, ids); ``lengths``
    defaults to every length from 0 to ``len(whole) - 1``.
    """
    cuts = range(len(whole)) if lengths is None else sorted(set(lengths))
    label = f"{what} " if what else ""
    for cut in cuts:
        if not 0 <= cut < len(whole):
            raise ValueError(f"{cut} is not a proper prefix length of {len(whole)} bytes")
        group.add(
            f"{label}cut to {cut} of {len(whole)} bytes",
            expect,
            ["Truncated"],
            **{field: whole[:cut].hex()},
            **inputs,
        )


def sparse_lengths(total: int, boundaries: Iterable[int] = ()) -> list[int]:
    """Prefix lengths for a large structure: both ends, each boundary, a stride between.

    Every length below 64 (where the outer headers and short fields are),
    every length within 3 bytes of each offset in ``boundaries`` (where a
    long field's length header or value starts or ends), the last 16
    lengths, and every 64th length elsewhere.
    """
    keep = set(range(min(total, _STRIDE)))
    keep.update(range(max(0, total - _TAIL), total))
    keep.update(range(0, total, _STRIDE))
    for mark in boundaries:
        keep.update(range(max(0, mark - _EDGE), min(total, mark + _EDGE + 1)))
    return sorted(keep)
