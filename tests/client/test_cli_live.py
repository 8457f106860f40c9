"""The live commands: ``watch`` and ``report --follow``, with devices coming and going."""

from __future__ import annotations

import json

from cli_harness import Person
from relay_process import RelayProcess


def test_watch_streams_messages_and_recalls_as_they_happen(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    watch = bob.start("watch", "--json", "--timeout", "60")
    try:
        watch.expect_json("connected")
        sent = alice.run("send", "bob", "live one", "--json").json()["id"]
        arrived = watch.expect_json("message")
        assert arrived["id"] == sent
        assert arrived["contact"] == "alice"
        assert "live one" not in json.dumps(arrived)  # a notice, never a preview
        alice.run("recall", sent)
        recalled = watch.expect_json("recalled")
        assert recalled["id"] == sent
        assert watch.interrupt() == 130
    finally:
        watch.kill()
    assert [m["state"] for m in bob.run("history", "alice", "--json").json()] == ["recalled"]
    (device,) = alice.run("report", sent, "--json").json()["devices"]
    assert device["state"] == "deleted"  # the watching device signed its receipt at once


def test_watch_reconnects_when_the_relay_comes_back(
    pair: tuple[Person, Person], relay: RelayProcess
) -> None:
    alice, bob = pair
    watch = bob.start("watch", "--json", "--timeout", "90")
    try:
        watch.expect_json("connected")
        relay.restart()
        watch.expect_json("disconnected")
        watch.expect_json("connected", timeout=30)
        sent = alice.run("send", "bob", "after the restart", "--json").json()["id"]
        assert watch.expect_json("message")["id"] == sent
    finally:
        watch.kill()


def test_report_follow_watches_an_offline_device_delete_on_reconnect(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    sent = alice.run("send", "bob", "wrong meeting room", "--json").json()["id"]
    bob.run("open", sent[:8])
    # Bob's device is now offline (no command of his runs); Alice recalls.
    (device,) = alice.run("recall", sent[:8], "--json").json()["devices"]
    assert device["state"] == "pending"
    assert "possibly already read, copied or screenshotted" in device["sentence"]

    follow = alice.start("report", sent[:8], "--follow", "--json", "--timeout", "60")
    try:
        first = json.loads(follow.expect(lambda line: line.startswith("{")))
        assert [d["state"] for d in first["devices"]] == ["pending"]
        bob.run("sync")  # Bob's device comes back, verifies the recall, deletes, signs
        changed = json.loads(follow.expect(lambda line: '"deleted"' in line))
        (device,) = changed["devices"]
        assert device["receipt"] == "verified"
        assert follow.wait() == 0  # settled: every device accounted for, so it stops
    finally:
        follow.kill()
    assert bob.run("history", "alice", "--json").json()[0]["state"] == "recalled"


def test_report_follow_prints_plain_reports_for_people(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    sent = alice.run("send", "bob", "a sealed one", "--json").json()["id"]
    bob.run("sync")
    alice.run("recall", sent)
    follow = alice.start("report", sent, "--follow", "--timeout", "60")
    try:
        follow.expect(lambda line: "delivered but sealed" in line.lower())
        bob.run("sync")
        follow.expect(lambda line: "deleted" in line.lower() and "signed" in line)
        assert follow.wait() == 0
    finally:
        follow.kill()


TAKEN_OVER = (
    "error: Stopped: another session of this device took over the live connection, "
    "and the relay keeps only one per device."
)


def test_a_second_watch_of_one_profile_takes_over_and_the_first_stops(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    first = bob.start("watch", "--json", "--timeout", "60")
    second = None
    try:
        first.expect_json("connected")
        second = bob.start("watch", "--timeout", "60")
        second.expect(lambda line: line.startswith("Connected to"))
        # The relay closes the older connection with 4409; the first watch stops for good.
        assert first.expect_json("displaced")["detail"] == (
            "another session of this device took over the live connection"
        )
        assert first.wait() == 6
        assert first.stderr().strip() == TAKEN_OVER  # one sentence, nothing else
        # The second one was not pushed off in turn: it still gets what arrives.
        sent = alice.run("send", "bob", "for whoever watches", "--json").json()["id"]
        arrived = second.expect(lambda line: line.startswith("New sealed message"))
        assert sent[:8] in arrived
        assert second.interrupt() == 130
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_report_follow_also_stops_when_another_session_takes_over(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    sent = alice.run("send", "bob", "still sealed", "--json").json()["id"]
    follow = alice.start("report", sent[:8], "--follow", "--json", "--timeout", "60")
    try:
        first = json.loads(follow.expect(lambda line: line.startswith("{")))
        assert [d["state"] for d in first["devices"]] == ["queued"]
        bob.run("sync")  # Bob's device fetches the ciphertext: a change pushed to the follower
        changed = json.loads(follow.expect(lambda line: line.startswith("{")))
        assert [d["state"] for d in changed["devices"]] == ["sealed"]
        # The follower is live; a watch of the same profile now takes the connection over.
        watch = alice.start("watch", "--json", "--timeout", "60")
        try:
            watch.expect_json("connected")
            assert follow.wait() == 6
            assert follow.stderr().strip() == TAKEN_OVER
        finally:
            watch.kill()
    finally:
        follow.kill()
