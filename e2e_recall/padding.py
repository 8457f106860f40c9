"""The one padding rule, shared by message bodies and attachments.

A body and a file are both padded to :func:`padded_length` of their content,
so a relay that sees only ciphertext lengths learns a size bucket and no
more.  It lives apart from :mod:`e2e_recall.body` because attachments need it
and the body imports attachments (its file descriptors).
"""

from __future__ import annotations

__all__ = ["padded_length"]

_SMALL_BUCKET = 256
_SMALL_LIMIT = 8192


def padded_length(content_len: int) -> int:
    """Length after padding: 256-byte buckets up to 8 KiB, then Padmé.

    Padmé (Nikitin et al., PETS 2019) leaks O(log log n) bits of the length
    and costs at most 12% overhead.
    """
    length = content_len + 1  # the 0x80 marker
    if length <= _SMALL_LIMIT:
        return -(-length // _SMALL_BUCKET) * _SMALL_BUCKET
    exponent = length.bit_length() - 1
    significant = exponent.bit_length()
    mask = (1 << (exponent - significant)) - 1
    return (length + mask) & ~mask
