"""What the relay stores about devices' wrapping keys, and the protocol of that store.

A device's current certificate is the ``devices`` row's; the certificates it
replaced are :class:`WrapKeyRecord` rows, kept while their keys still accept
wraps (protocol section 5.1).  The rule deciding whether a rotation is
allowed lives in :mod:`relay.wrap_keys`; the store only applies it in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["WrapKeyRecord", "WrapKeyStore"]


@dataclass(frozen=True, slots=True)
class WrapKeyRecord:
    """A superseded certificate whose key may still be wrapped to."""

    device_id: bytes
    key_id: bytes
    certificate: bytes
    created_at: int
    usable_until: int  # wraps to it are refused from this time on
    superseded_at: int


class WrapKeyStore(Protocol):
    async def previous_keys(self, device_id: bytes, now: int) -> list[WrapKeyRecord]:
        """The device's superseded certificates whose keys accept wraps at ``now``."""

    async def rotate_certificate(
        self, device_id: bytes, expected: bytes, new: bytes, previous: WrapKeyRecord
    ) -> bool:
        """Make ``new`` current if ``expected`` still is, keeping ``previous``, in one transaction.

        Returns False, writing nothing, if the current certificate is already
        ``new`` (a retry).  Raises ``Conflict`` (``certificate_changed``) if it
        is neither: another rotation won the race.  Superseded rows whose
        keys no longer accept wraps are removed in the same transaction.
        """

    async def pending_by_key(self, device_id: bytes) -> dict[bytes | None, int]:
        """How many wraps for the device wait at the relay, per key id (None: before 0008)."""
