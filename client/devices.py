"""This user's devices as the relay lists them, checked; and revoking one of them.

The relay's listing is only believed for certificates this identity signed:
an entry that does not verify is left out, so a relay cannot slip a device
of its own into the list a person reviews.  A revocation is signed by the
identity and names the relay, so it cannot be replayed at another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e_recall import verify_device_certificate
from e2e_recall.auth import relay_fingerprint
from e2e_recall.device_admin import sign_device_revocation
from e2e_recall.errors import E2ERecallError

from . import account
from .core import Core
from .errors import NotFound, UsageProblem

__all__ = ["DeviceInfo", "DeviceRevocation", "find_device", "list_devices", "revoke_device"]


@dataclass(frozen=True)
class DeviceInfo:
    """One device of this user, from a certificate the identity signed."""

    device_id: bytes
    created_at: int
    revoked_at: int | None
    this_device: bool
    wrap_suite: str  # "x25519" or "xwing"

    def to_json(self) -> dict[str, Any]:
        """The ``device list --json`` shape (ids in hex)."""
        return {
            "device_id": self.device_id.hex(),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "this_device": self.this_device,
            "wrap_suite": self.wrap_suite,
        }


@dataclass(frozen=True)
class DeviceRevocation:
    """What the relay did on a revocation."""

    device_id: bytes
    revoked_at: int
    already_revoked: bool
    wraps_destroyed: int  # message keys that were waiting for it, destroyed unread

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id.hex(),
            "revoked_at": self.revoked_at,
            "already_revoked": self.already_revoked,
            "wraps_destroyed": self.wraps_destroyed,
        }


async def list_devices(core: Core) -> list[DeviceInfo]:
    """Every device the relay knows for this user whose certificate verifies."""
    answer = await account.authed(core, "GET", "/v1/devices")
    identity = core.keys.identity.public_key
    listed = []
    for d in answer.get("devices") or ():
        try:
            cert = verify_device_certificate(d["certificate"], identity, now=d["created_at"])
        except (E2ERecallError, KeyError, TypeError):
            continue
        listed.append(
            DeviceInfo(
                device_id=cert.device_id,
                created_at=d["created_at"],
                revoked_at=d.get("revoked_at"),
                this_device=cert.device_id == core.device_id,
                wrap_suite=cert.wrap_key.suite.name.lower(),
            )
        )
    return listed


async def find_device(core: Core, device: bytes | str) -> DeviceInfo:
    """A device by its id, or by the start of its id in hex as people type it (4+ digits)."""
    listed = await list_devices(core)
    if isinstance(device, bytes):
        found = [d for d in listed if d.device_id == device]
        shown = device.hex()
    else:
        shown = device.strip().lower()
        if len(shown) < 4 or len(shown) > 32 or any(c not in "0123456789abcdef" for c in shown):
            raise UsageProblem(f"{device!r} is not a device id (4 to 32 hex digits).", "bad_id")
        found = [d for d in listed if d.device_id.hex().startswith(shown)]
    if not found:
        raise NotFound(f"None of your devices has an id starting {shown}.", "no_device")
    if len(found) > 1:
        raise UsageProblem(f"{shown} matches several devices; type more digits.", "ambiguous")
    return found[0]


async def revoke_device(core: Core, device: bytes | str) -> DeviceRevocation:
    """Revoke another device of this user: no more logins, wraps, or waiting keys for it."""
    target = await find_device(core, device)
    if target.this_device:
        raise UsageProblem(
            "That is this device; revoke it from another of your devices.", "revoke_self"
        )
    revocation = sign_device_revocation(
        core.keys.identity,
        device_id=target.device_id,
        revoked_at=core.clock(),
        relay=relay_fingerprint(core.relay_key),
    )
    answer = await account.authed(
        core,
        "POST",
        f"/v1/devices/{target.device_id.hex()}/revoke",
        {"revocation": revocation.signed},
    )
    return DeviceRevocation(
        device_id=target.device_id,
        revoked_at=answer["revoked_at"],
        already_revoked=bool(answer["already_revoked"]),
        wraps_destroyed=answer["wraps_destroyed"],
    )
