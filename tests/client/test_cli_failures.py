"""What goes wrong, said in one sentence with a documented exit code, and nothing lost."""

from __future__ import annotations

from pathlib import Path

from cli_harness import Person
from relay_process import RelayProcess, free_port


def test_a_wrong_passphrase_opens_nothing(tmp_path: Path, alice: Person) -> None:
    wrong = alice.run("whoami", expect=4, env={"E2E_RECALL_PASSPHRASE": "not the passphrase"})
    assert wrong.err.startswith("error: ")
    assert len(wrong.err.strip().splitlines()) == 1
    assert "passphrase" in wrong.err.lower()
    assert wrong.out == ""


def test_the_passphrase_can_come_from_a_file(tmp_path: Path, alice: Person) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(alice.passphrase + "\n", encoding="utf-8")
    found = alice.run(
        "--passphrase-file", str(secret), "whoami", "--json", env={"E2E_RECALL_PASSPHRASE": ""}
    )
    assert found.json()["handle"] == "alice"
    secret.write_text("something else\n", encoding="utf-8")
    alice.run("whoami", "--passphrase-file", str(secret), expect=4)
    missing = alice.run("whoami", "--passphrase-file", str(tmp_path / "nope"), expect=2)
    assert "Cannot read the passphrase file" in missing.err


def test_no_passphrase_and_no_terminal_is_a_clear_usage_error(alice: Person) -> None:
    refused = alice.run("whoami", expect=2, env={"E2E_RECALL_PASSPHRASE": ""})
    assert "No passphrase" in refused.err
    assert "--passphrase-file" in refused.err


def test_setting_up_twice_or_not_at_all(tmp_path: Path, alice: Person) -> None:
    again = alice.run("init", "--kdf", "interactive", expect=4)
    assert "already" in again.err.lower()
    assert alice.run("whoami", "--json").json()["handle"] == "alice"  # the old one is intact
    nobody = Person(tmp_path / "people", "nobody")
    assert "e2e-recall init" in nobody.run("whoami", expect=4).err
    unregistered = Person(tmp_path / "people", "unregistered")
    unregistered.run("init", "--kdf", "interactive")
    assert "register" in unregistered.run("inbox", expect=2).err
    assert (
        "short" in Person(tmp_path / "people", "weak", passphrase="short").run("init", expect=2).err
    )


def test_bad_arguments_are_usage_errors(pair: tuple[Person, Person]) -> None:
    alice, _ = pair
    assert (
        "not a duration" in alice.run("send", "bob", "x", "--recall-window", "soon", expect=2).err
    )
    assert alice.run("frobnicate", expect=2).err.startswith("usage:")
    assert "No message" in alice.run("recall", "deadbeef", expect=2).err
    assert "not a message id" in alice.run("report", "zz", expect=2).err


def test_a_dead_relay_loses_nothing_and_the_send_goes_out_later(
    relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    relay.kill()
    queued = alice.run("send", "bob", "sent while the relay was down", "--json", expect=3)
    answer = queued.json()
    assert answer["queued"] is True
    message_id = answer["id"]
    printed = alice.run("send", "bob", "and a second one", expect=3)
    assert "Queued" in printed.out
    assert "same id" in printed.out
    listed = alice.run("history", "bob", "--json")
    assert "warning:" in listed.err  # the listing still works, from the local store
    assert next(m["id"] for m in listed.json()) == message_id
    bob_offline = bob.run("inbox", "--json")
    assert bob_offline.json() == []
    assert "warning:" in bob_offline.err
    assert "cannot reach the relay" in alice.run("sync", expect=3).err.lower()

    relay.restart()  # same data, same port
    synced = alice.run("sync", "--json").json()
    assert synced["queued"] == 0
    alice.run("sync")  # a second flush must not send anything twice
    inbox = bob.run("inbox", "--json").json()
    assert sorted(m["id"] for m in inbox).count(message_id) == 1
    assert len(inbox) == 2
    assert bob.run("open", message_id[:8], "--json").json()["text"] == (
        "sent while the relay was down"
    )


def test_a_recall_while_the_relay_is_down_is_kept_and_retried(
    relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    message_id = alice.run("send", "bob", "wrong room", "--json").json()["id"]
    relay.kill()
    pending = alice.run("recall", message_id[:8], expect=3)
    assert "did not reach the relay" in pending.err
    assert "nothing is recalled" in pending.err
    relay.restart()
    alice.run("sync")
    report = alice.run("report", message_id[:8], "--json").json()
    assert report["state"] == "recalled"
    assert [d["state"] for d in report["devices"]] == ["never_delivered"]
    assert bob.run("history", "alice", "--json").json() == []


def test_registering_with_a_relay_that_is_not_there(tmp_path: Path) -> None:
    carol = Person(tmp_path / "people", "carol")
    carol.run("init", "--kdf", "interactive")
    refused = carol.run("register", f"http://127.0.0.1:{free_port()}", expect=3)
    assert refused.err.startswith("error: ")
    assert "reach" in refused.err.lower()
    assert "not a relay URL" in carol.run("register", "ftp://example", expect=2).err


def _one_sentence(result_err: str) -> str:
    (line,) = result_err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_an_unusable_profile_place_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "people" / "frank"
    blocker.parent.mkdir()
    blocker.write_text("a file where the profile should go\n", encoding="utf-8")
    frank = Person(tmp_path / "people", "frank")
    said = _one_sentence(frank.run("init", "--kdf", "interactive", expect=4).err)
    assert "Cannot create the profile directory" in said
    assert str(blocker) in said
    assert blocker.read_text(encoding="utf-8").startswith("a file")  # left as it was


def test_a_damaged_local_database_is_one_sentence(alice: Person) -> None:
    database = alice.profile / "client.db"
    for leftover in alice.profile.glob("client.db-*"):  # the WAL and its index
        leftover.unlink()
    database.write_bytes(b"this is not an sqlite database, it was overwritten" * 100)
    said = _one_sentence(alice.run("whoami", expect=4).err)
    assert "is damaged or is not an e2e-recall database" in said
