"""The relay's ``expired`` event at a client: obeyed for its own message, ignored otherwise.

Through the client library in this process against a real relay process;
the event is handed to the client exactly as the relay frames one, so a
forged one (another sender, another conversation) can be tried.
"""

from __future__ import annotations

from client.client import Client
from client.groups import create_group
from client.receiving import process_event
from e2e_recall import ExpireFrom, wire


async def test_an_expired_event_deletes_only_what_it_names(clients: tuple[Client, Client]) -> None:
    alice, bob = clients
    sent = await alice.send("bob", "for a minute", timer=(60_000, ExpireFrom.SENT))
    await bob.sync()
    row = bob.core.store.message(sent.message_id)
    assert row is not None
    assert row.state == "sealed"
    assert row.expires_at == row.sent_at + 60_000

    def event(**over: object) -> bytes:
        body = {
            "message_id": sent.message_id,
            "conversation_id": row.conversation_id,
            "sender": alice.user_id,
            "expired_at": row.sent_at,
        }
        return wire.encode({**body, **over})

    for forged in (event(sender=bob.user_id), event(conversation_id=bytes(16))):
        assert await process_event(bob.core, "expired", sent.message_id, forged) is None
        kept = bob.core.store.message(sent.message_id)
        assert kept is not None
        assert kept.state == "sealed"
        assert kept.envelope is not None

    update = await process_event(bob.core, "expired", sent.message_id, event())
    assert update is not None
    assert update.kind == "expired"
    gone = bob.core.store.message(sent.message_id)
    assert gone is not None
    assert (gone.state, gone.envelope, gone.body) == ("expired", None, None)
    assert [e.state for e in bob.history("alice")] == ["expired"]
    again = await process_event(bob.core, "expired", sent.message_id, event())
    assert again is None  # said once; repeating the event changes nothing


async def test_a_groups_timer_applies_to_its_later_messages(
    clients: tuple[Client, Client],
) -> None:
    alice, bob = clients
    group = await create_group(alice.core, "trip", ["bob"])
    assert alice.conversation_timer("trip") is None
    alice.set_conversation_timer("trip", (90_000, ExpireFrom.OPENED))
    assert alice.conversation_timer("trip") == (90_000, ExpireFrom.OPENED)
    assert alice.conversation_timer("bob") is None  # the direct conversation keeps its own
    sent = await alice.send("trip", "leaving at 9")
    mine = alice.core.store.message(sent.message_id)
    assert mine is not None
    assert mine.conversation_id == group.conversation_id
    assert (mine.expire_after, mine.expire_from) == (90_000, "opened")
    assert mine.expires_at == mine.sent_at + 90_000  # the sender's copy counts from sending
    await bob.sync()
    received = bob.core.store.message(sent.message_id)
    assert received is not None
    assert (received.expire_after, received.expires_at) == (90_000, None)  # until bob opens it
    opened = await bob.open_message(sent.message_id)
    assert opened.expires_at is not None
    assert opened.expires_at >= mine.sent_at + 90_000
