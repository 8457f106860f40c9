"""Runners for the rotation vectors (``device_rotation.json``, protocol section 5.1).

The current certificate is read as a relay re-reads the one it stored
(everything but the time checked), with ``currentSignerPublicKey`` or
else the group's identity; the rotated one goes through
:func:`e2e_recall.rotation.check_rotation` at ``now``.  The key id is
computed here from the certificate, never read from the file.
"""

from __future__ import annotations

from typing import Any

from ..device import verify_device_certificate
from ..rotation import check_rotation
from ..signing import VerifyKey
from .fields import hex_field

__all__ = ["ROTATION_RUNNERS"]

_h = hex_field


def _rotation(group: dict[str, Any], test: dict[str, Any]) -> Any:
    identity = VerifyKey(_h(test["signerPublicKey"]))
    current_signer = VerifyKey(_h(test.get("currentSignerPublicKey", test["signerPublicKey"])))
    current = verify_device_certificate(_h(test["current"]), current_signer, now=None)
    new = check_rotation(
        current, _h(test["rotated"]), identity, now=test["now"], max_lifetime=test["maxLifetime"]
    )
    return {
        "expected": {
            "keyId": new.wrap_key.key_id.hex(),
            "createdAt": new.created_at,
            "expiresAt": new.expires_at,
        }
    }


ROTATION_RUNNERS = {"DeviceRotation": _rotation}
