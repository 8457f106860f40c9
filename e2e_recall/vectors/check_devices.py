"""Runners for the device vectors (``linking.json``, ``device_revocation.json``).

Link keys are derived here from the stated secret, never read from the
file; a valid sealed message is sealed again from its stated nonce (and the
device's signing seed, for a request) and must come back byte for byte.
"""

from __future__ import annotations

from typing import Any

from ..device_admin import (
    sign_device_approval,
    sign_device_revocation,
    verify_device_approval,
    verify_device_revocation,
)
from ..link_code import format_code, link_keys, parse_code
from ..linking import (
    LinkRequest,
    open_link_answer,
    open_link_request,
    seal_link_answer,
    seal_link_request,
)
from ..signing import SigningKey, VerifyKey
from ..wrapping import WrapPublicKey, suite_from_wire
from .fields import MalformedTest, hex_field
from .fixtures import fixed

__all__ = ["DEVICE_RUNNERS"]

_h = hex_field


def _code(group: dict[str, Any], test: dict[str, Any]) -> Any:
    code = test["code"]
    if not isinstance(code, str):
        raise MalformedTest("code must be a string")
    secret = parse_code(code)
    keys = link_keys(secret)
    return {
        "secret": secret.hex(),
        "formatted": format_code(secret),
        "linkId": keys.link_id.hex(),
        "linkKey": keys.link_key.hex(),
    }


def _request(group: dict[str, Any], test: dict[str, Any]) -> Any:
    keys = link_keys(_h(test["linkSecret"]))
    sealed = _h(test["sealed"])
    r = open_link_request(sealed, link_id=keys.link_id, link_key=keys.link_key)
    outputs: dict[str, Any] = {
        "expected": {
            "deviceId": r.device_id.hex(),
            "signingKey": r.signing_key.raw.hex(),
            "wrapSuite": int(r.wrap_key.suite),
            "wrapKey": r.wrap_key.raw.hex(),
            "deviceName": r.device_name,
        }
    }
    if "nonce" in test:
        key = SigningKey(_h(test["devicePrivateKey"]))
        again = seal_link_request(
            link_id=keys.link_id,
            link_key=keys.link_key,
            device_id=r.device_id,
            signing_key=key,
            wrap_key=r.wrap_key,
            device_name=r.device_name,
            rng=fixed(_h(test["nonce"])),
        )
        outputs["sealed"] = again.hex()
    return outputs


def _expected_request(fields: Any) -> LinkRequest:
    if not isinstance(fields, dict):
        raise MalformedTest("request must be an object")
    return LinkRequest(
        device_id=_h(fields["deviceId"]),
        signing_key=VerifyKey(_h(fields["signingKey"])),
        wrap_key=WrapPublicKey(suite_from_wire(fields["wrapSuite"]), _h(fields["wrapKey"])),
        device_name=None,
    )


def _answer(group: dict[str, Any], test: dict[str, Any]) -> Any:
    keys = link_keys(_h(test["linkSecret"]))
    a = open_link_answer(
        _h(test["sealed"]),
        link_id=keys.link_id,
        link_key=keys.link_key,
        expected=_expected_request(test["request"]),
        now=test["now"],
    )
    outputs: dict[str, Any] = {
        "expected": {
            "user": a.certificate.user.hex(),
            "certificate": a.certificate.signed.hex(),
            "approval": a.approval.hex(),
            "relayUrl": a.relay_url,
            "handle": a.handle,
            "contacts": [
                {
                    "name": c.name,
                    "userId": c.user_id.hex(),
                    "identityKey": c.identity_key.hex(),
                    "verified": c.verified,
                }
                for c in a.contacts
            ],
            "groups": [g.hex() for g in a.groups],
            "groupNames": list(a.group_names),
        }
    }
    if "nonce" in test:
        again = seal_link_answer(
            link_id=keys.link_id,
            link_key=keys.link_key,
            identity=a.identity,
            certificate=a.certificate.signed,
            approval=a.approval,
            relay_url=a.relay_url,
            handle=a.handle,
            contacts=a.contacts,
            groups=a.groups,
            group_names=dict(zip(a.groups, a.group_names, strict=True)),
            rng=fixed(_h(test["nonce"])),
        )
        outputs["sealed"] = again.hex()
    return outputs


def _revocation(group: dict[str, Any], test: dict[str, Any]) -> Any:
    r = verify_device_revocation(
        _h(test["signed"]), VerifyKey(_h(test["signerPublicKey"])), relay=_h(test["relay"])
    )
    outputs: dict[str, Any] = {
        "expected": {
            "user": r.user.hex(),
            "deviceId": r.device_id.hex(),
            "revokedAt": r.revoked_at,
            "relay": r.relay.hex(),
        }
    }
    seed = test.get("signerPrivateKey")
    if seed is not None:
        key = SigningKey(_h(seed))
        again = sign_device_revocation(
            key, device_id=r.device_id, revoked_at=r.revoked_at, relay=r.relay
        )
        outputs |= {"signerPublicKey": key.public_key.raw.hex(), "signed": again.signed.hex()}
    return outputs


def _approval(group: dict[str, Any], test: dict[str, Any]) -> Any:
    certificate, relay = _h(test["certificate"]), _h(test["relay"])
    approver = verify_device_approval(
        _h(test["approval"]),
        VerifyKey(_h(test["approverPublicKey"])),
        relay=relay,
        certificate=certificate,
    )
    outputs: dict[str, Any] = {"expected": {"approver": approver.hex()}}
    seed = test.get("signerPrivateKey")
    if seed is not None:
        again = sign_device_approval(
            SigningKey(_h(seed)), relay=relay, approver=approver, certificate=certificate
        )
        outputs["approval"] = again.hex()
    return outputs


DEVICE_RUNNERS = {
    "LinkCode": _code,
    "LinkRequestOpen": _request,
    "LinkAnswerOpen": _answer,
    "DeviceRevocationVerify": _revocation,
    "DeviceApprovalVerify": _approval,
}
