"""Every ``--json`` output has exactly the keys ``e2e-recall --help`` documents for it."""

from __future__ import annotations

from cli_harness import Person
from json_shapes import _check, conforms, documented
from relay_process import RelayProcess


def test_help_documents_every_json_command() -> None:
    assert set(documented()) == {
        "whoami",
        "contacts list",
        "send",
        "inbox",
        "history",
        "open",
        "read",
        "report",
        "recall",
        "sync",
        "watch",
        "bench",
        "group",
        "group list",
        "device link",
        "device join",
        "device list",
        "device revoke",
        "device rotate",
        "device keys",
        "expire",
    }


def test_every_json_output_has_the_documented_keys(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    conforms("whoami", alice.run("whoami", "--json").json())
    contacts = alice.run("contacts", "list", "--json").json()
    assert len(contacts) == 1
    conforms("contacts list", contacts)
    conforms("expire", alice.run("expire", "bob", "1w", "--json").json())
    assert alice.run("contacts", "list", "--json").json()[0]["expire"]["after_ms"] == 604_800_000
    alice.run("expire", "bob", "off")

    watch = bob.start("watch", "--json", "--timeout", "60")
    try:
        conforms("watch", watch.expect_json("connected"))
        sent = alice.run("send", "bob", "keys only", "--json").json()
        conforms("send", sent)
        conforms("watch", watch.expect_json("message"))
        assert watch.interrupt() == 130
    finally:
        watch.kill()

    inbox = bob.run("inbox", "--json").json()
    assert [m["text"] for m in inbox] == [None]  # sealed: no preview, but the key is there
    conforms("inbox", inbox)
    opened = bob.run("open", sent["id"][:8], "--json").json()
    assert opened["text"] == "keys only"
    conforms("open", opened)
    conforms("read", bob.run("read", sent["id"][:8], "--json").json())

    report = alice.run("report", sent["id"][:8], "--json").json()
    assert len(report["devices"]) == 1
    conforms("report", report)
    recalled = alice.run("recall", sent["id"][:8], "--replace", "other keys", "--json").json()
    assert recalled["local_only"] is False
    assert recalled["replacement_id"] is not None
    conforms("recall", recalled)
    assert len(recalled["devices"]) == 1
    _check(documented()["report"]["devices"], recalled["devices"], "recall.devices")

    synced = bob.run("sync", "--json").json()
    assert {u["kind"] for u in synced["updates"]} >= {"recalled", "replaced"}
    conforms("sync", synced)
    history = bob.run("history", "alice", "--json").json()
    assert len(history) == 2
    conforms("history", history)


def test_a_recall_before_the_message_left_has_the_same_shape_and_reaches_no_one(
    relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    relay.kill()
    queued = alice.run("send", "bob", "never leaves this laptop", "--json", expect=3).json()
    assert queued["queued"] is True
    recalled = alice.run("recall", queued["id"][:8], "--json").json()  # no relay needed
    conforms("recall", recalled)
    assert recalled["local_only"] is True
    assert recalled["state"] == "recalled"
    assert recalled["devices"] == []
    relay.restart()
    assert alice.run("sync", "--json").json()["queued"] == 0  # nothing left to send
    assert bob.run("sync", "--json").json()["updates"] == []
    assert bob.run("history", "alice", "--json").json() == []
    (mine,) = alice.run("history", "bob", "--json").json()
    assert (mine["state"], mine["text"]) == ("recalled", None)
    said = alice.run("report", queued["id"][:8])
    assert "No device has been told about it." in said.out
