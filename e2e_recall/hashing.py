"""Domain-separated SHA-256, the only hash the protocol uses."""

from __future__ import annotations

import hashlib

__all__ = ["digest"]


def digest(label: bytes, data: bytes) -> bytes:
    """SHA-256(label || data): ``label`` comes from :mod:`e2e_recall.domains`."""
    h = hashlib.sha256(label)
    h.update(data)
    return h.digest()
