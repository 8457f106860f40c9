"""Runners for the group vectors (``group_changes.json``).

A ``GroupChangeVerify`` test verifies one change with ``signerPublicKey``; a
valid one is signed again from ``signerPrivateKey`` and the decoded fields,
and must give ``signed`` back.  A ``GroupChain`` test replays ``changes``
with the public API, looking keys up in the group's ``keys`` (user id ->
identity key) as a client or relay looks them up in its directory; digests
and the conversation id are computed here, never read from the file.
"""

from __future__ import annotations

from typing import Any

from ..group import (
    group_change_digest,
    group_conversation_id,
    replay_group,
    sign_group_change,
    verify_group_change,
)
from ..signing import SigningKey, VerifyKey
from .fields import MalformedTest, hex_field

__all__ = ["GROUP_RUNNERS"]

_h = hex_field


def _change(group: dict[str, Any], test: dict[str, Any]) -> Any:
    signed = _h(test["signed"])
    c = verify_group_change(signed, VerifyKey(_h(test["signerPublicKey"])))
    outputs: dict[str, Any] = {}
    seed = test.get("signerPrivateKey")
    if seed is not None:
        key = SigningKey(_h(seed))
        again = sign_group_change(
            key,
            group_id=c.group_id,
            seq=c.seq,
            previous=c.previous,
            action=c.action,
            members=c.members,
            issued_at=c.issued_at,
        )
        outputs = {"signerPublicKey": key.public_key.raw.hex(), "signed": again.signed.hex()}
    return outputs | {
        "expected": {
            "groupId": c.group_id.hex(),
            "seq": c.seq,
            "previous": None if c.previous is None else c.previous.hex(),
            "action": str(c.action),
            "members": [m.hex() for m in c.members],
            "by": c.by.hex(),
            "issuedAt": c.issued_at,
            "digest": c.digest.hex(),
            "conversationId": _conversation(c.group_id),
        }
    }


def _conversation(group_id: bytes) -> str:
    return group_conversation_id(group_id).hex()


def _chain(group: dict[str, Any], test: dict[str, Any]) -> Any:
    keys = test["keys"]
    if not isinstance(keys, dict):
        raise MalformedTest("keys must be an object")
    table = {_h(user): VerifyKey(_h(key)) for user, key in keys.items()}
    changes = test["changes"]
    if not isinstance(changes, list):
        raise MalformedTest("changes must be a list")
    chain = [_h(change) for change in changes]
    state = replay_group(chain, table.get)
    return {
        "expected": {
            "groupId": state.group_id.hex(),
            "seq": state.seq,
            "head": state.head.hex(),
            "members": sorted(m.hex() for m in state.members),
            "admins": sorted(a.hex() for a in state.admins),
            "conversationId": state.conversation_id.hex(),
            "digests": [group_change_digest(signed).hex() for signed in chain],
        }
    }


GROUP_RUNNERS = {
    "GroupChangeVerify": _change,
    "GroupChangeTruncated": _change,
    "GroupChain": _chain,
}
