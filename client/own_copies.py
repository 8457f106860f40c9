"""Copies of what this user sent from another of their devices, in direct conversations.

A direct message is wrapped to the recipient's devices *and* the sender's
own other devices (the relay keeps a line for each in the report, and a
recall destroys those copies too).  Here a copy is received: the notice's
sender is this user, so the envelope is verified against this user's own
identity key, and the conversation must be the direct one with a contact
(the peer); it is kept as an outgoing message of that conversation, sealed
until opened on this device (states ``sealed`` then ``opened``, which only
copies have).  It is recalled from the device that sent it.
"""

from __future__ import annotations

from typing import Any

from e2e_recall.errors import E2ERecallError

from .account import authed
from .core import Core
from .errors import RelayRefused, UsageProblem
from .store import Contact, StoredMessage

__all__ = ["COPY_STATES", "is_copy", "myself", "on_own_copy", "peer_of_direct"]

COPY_STATES = ("sealed", "opened")


def is_copy(row: StoredMessage) -> bool:
    """An outgoing row this device did not send: a copy from another of our devices."""
    return bool(row.outgoing) and row.state in COPY_STATES


def myself(core: Core) -> Contact:
    """This user as a contact record, to verify what our other devices signed."""
    return Contact("you", core.user_id, core.keys.identity.public_key.raw, None, 0)


def peer_of_direct(core: Core, conversation_id: object) -> Contact | None:
    """The contact whose direct conversation with us this is, if any."""
    for contact in core.store.contacts():
        if core.conversation_with(contact.user_id) == conversation_id:
            return contact
    return None


async def on_own_copy(core: Core, message_id: bytes, notice: dict[str, Any]) -> Any:
    from .receiving import Update, verify_fetched  # it imports this module

    peer = peer_of_direct(core, notice.get("conversation_id"))
    if peer is None:
        return Update(
            "dropped",
            message_id,
            "",
            "A copy of a message you sent from another device, to someone who is not a "
            "contact here, was dropped.",
        )
    try:
        fetched = await authed(core, "GET", f"/v1/messages/{message_id.hex()}")
    except RelayRefused as exc:
        if exc.status in (404, 410):
            return None
        raise
    try:
        _, row = verify_fetched(
            core,
            myself(core),
            message_id,
            fetched["envelope"],
            peer_conversation(core, peer),
            fetched.get("key_id"),
        )
    except (E2ERecallError, UsageProblem, KeyError, TypeError):
        return Update(
            "dropped", message_id, "you", "A copy claiming to be yours failed verification."
        )
    row.peer, row.outgoing = peer.user_id, 1
    with core.store.transaction():
        core.store.save_message(row)
    return Update(
        "message",
        message_id,
        f"you (another device) to {peer.name}",
        "A copy of a message you sent arrived, sealed.",
    )


def peer_conversation(core: Core, peer: Contact) -> bytes:
    return core.conversation_with(peer.user_id)
