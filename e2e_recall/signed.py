"""The signed container shared by certificates, revocations and receipts.

On the wire a signed object is the canonical map
``{"body": <canonical msgpack bytes>, "signature": <64 bytes>}``.  The
signature covers ``label || body`` with the object's own label, and is
checked on the exact received ``body`` bytes before they are decoded: no
field of an unverified body is ever looked at.
"""

from __future__ import annotations

from typing import Any

from . import wire
from .schema import Field, check_map
from .signing import SigningKey, VerifyKey

__all__ = ["MAX_SIGNED_BODY", "open_signed", "seal_signed"]

MAX_SIGNED_BODY = 1 << 20  # a purge receipt for 4096 devices is about 600 KiB
_CONTAINER = (
    Field("body", "bin", max_len=MAX_SIGNED_BODY),
    Field("signature", "bin", size=64),
)
_CONTAINER_LIMITS = wire.Limits(max_size=MAX_SIGNED_BODY + 128, max_bin=MAX_SIGNED_BODY, max_map=2)
BODY_LIMITS = wire.Limits(max_size=MAX_SIGNED_BODY, max_bin=64 * 1024, max_array=4096)
"""Limits for a signed body; each structure then checks its own fields."""


def seal_signed(body: dict[str, Any], label: bytes, key: SigningKey) -> bytes:
    """Encode ``body`` canonically, sign it under ``label`` and wrap both."""
    body_bytes = wire.encode(body)
    return wire.encode({"body": body_bytes, "signature": key.sign(label, body_bytes)})


def open_signed(data: bytes, label: bytes, key: VerifyKey) -> tuple[bytes, Any]:
    """Verify ``data`` under ``label`` and ``key``; return (body bytes, decoded body)."""
    outer = check_map(wire.decode(data, limits=_CONTAINER_LIMITS), _CONTAINER, "signed object")
    key.verify(label, outer["body"], outer["signature"])
    return outer["body"], wire.decode(outer["body"], limits=BODY_LIMITS)
