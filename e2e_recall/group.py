"""Groups: signed membership changes, their chain, and the membership state.

The public face of two small modules: :mod:`e2e_recall.group_change` (one
signed change: sign, verify, digest, conversation id) and
:mod:`e2e_recall.group_state` (the rules by which a change may follow the
chain, and :func:`replay_group`, which both the relay and clients use).
``docs/protocol.md`` ("Groups") specifies every byte and every rule.
"""

from __future__ import annotations

from .group_change import (
    MAX_GROUP_MEMBERS,
    GroupAction,
    GroupChange,
    SignedGroupChange,
    group_change_digest,
    group_conversation_id,
    peek_group_change_signer,
    sign_group_change,
    verify_group_change,
)
from .group_state import GroupState, replay_group

__all__ = [
    "MAX_GROUP_MEMBERS",
    "GroupAction",
    "GroupChange",
    "GroupState",
    "SignedGroupChange",
    "group_change_digest",
    "group_conversation_id",
    "peek_group_change_signer",
    "replay_group",
    "sign_group_change",
    "verify_group_change",
]
