"""A conversation through the real ``e2e-recall`` command and a relay process on loopback.

Each step is a separate process, as a person at a shell would run it; every
report is the relay's, checked by the sender's client.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from cli_harness import Person, console_script

OPENED = "possibly already read, copied or screenshotted"


def _sent_id(result_json: dict[str, object]) -> str:
    message_id = result_json["id"]
    assert isinstance(message_id, str)
    assert len(message_id) == 32
    return message_id


def test_a_whole_conversation(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    me = alice.run("whoami", "--json").json()
    assert me["handle"] == "alice"
    assert len(me["fingerprint"].replace(" ", "")) == 64
    assert alice.run("whoami").out.count("fingerprint:") == 1

    listed = alice.run("contacts", "list", "--json").json()
    assert [(c["name"], c["verified"], c["key_changed"]) for c in listed] == [("bob", False, False)]
    number = alice.run("contacts", "verify", "bob", "--confirm")
    assert "now marked as verified" in number.out
    assert alice.run("contacts", "list", "--json").json()[0]["verified"] is True

    message_id = _sent_id(alice.run("send", "bob", "the", "door", "code", "--json").json())

    inbox = bob.run("inbox", "--json").json()
    assert [(m["id"], m["state"], m["text"], m["contact"]) for m in inbox] == [
        (message_id, "sealed", None, "alice")
    ]
    shown = bob.run("inbox")
    assert "door code" not in shown.text
    assert message_id[:8] in shown.out

    sealed_report = alice.run("report", message_id[:8], "--json").json()
    assert [d["state"] for d in sealed_report["devices"]] == ["sealed"]

    opened = bob.run("open", message_id[:8])
    assert "the door code" in opened.out
    assert bob.run("read", message_id[:8], "--json").json()["text"] == "the door code"
    assert bob.run("inbox", "--json").json() == []

    report = alice.run("report", message_id[:8], "--json").json()
    (device,) = report["devices"]
    assert device["state"] == "opened"
    assert OPENED in device["sentence"]
    assert device["attested_by"] == ["relay"]

    recalled = alice.run("recall", message_id[:8], "--json").json()
    assert recalled["state"] == "recalled"
    assert recalled["relay_receipt"] == "verified"
    assert [d["state"] for d in recalled["devices"]] == ["pending"]

    history = bob.run("history", "alice", "--json").json()
    assert [(m["id"], m["state"], m["text"]) for m in history] == [(message_id, "recalled", None)]
    assert "recalled by the sender" in bob.run("history", "alice").out

    final = alice.run("report", message_id[:8], "--json").json()
    (device,) = final["devices"]
    assert device["state"] == "deleted"
    assert device["receipt"] == "verified"
    assert sorted(device["attested_by"]) == ["device", "relay"]
    assert OPENED in device["sentence"]
    printed = alice.run("report", message_id[:8]).out
    assert "deleted" in printed
    assert OPENED in printed
    assert "signed" in printed


def test_a_message_recalled_before_delivery_leaves_no_trace_with_the_recipient(
    pair: tuple[Person, Person],
) -> None:
    alice, bob = pair
    message_id = _sent_id(alice.run("send", "bob", "for carol only", "--json").json())
    report = alice.run("recall", message_id, "--json").json()
    assert [d["state"] for d in report["devices"]] == ["never_delivered"]
    assert "nothing" not in bob.run("sync").err
    assert bob.run("history", "alice", "--json").json() == []
    assert bob.run("inbox", "--json").json() == []
    assert "never delivered" in alice.run("report", message_id).out.lower()


def test_delivered_but_sealed_then_recalled(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    message_id = _sent_id(alice.run("send", "bob", "the wrong file", "--json").json())
    assert len(bob.run("inbox", "--json").json()) == 1  # the ciphertext is on Bob's device
    report = alice.run("recall", message_id, "--json").json()
    assert [d["state"] for d in report["devices"]] == ["delivered_sealed"]
    bob.run("sync")
    assert [m["state"] for m in bob.run("history", "alice", "--json").json()] == ["recalled"]
    refused = bob.run("open", message_id[:8], expect=2)  # nothing left to open
    assert "it was recalled" in refused.err
    (device,) = alice.run("report", message_id, "--json").json()["devices"]
    assert device["state"] == "deleted"
    assert "never released" in device["sentence"]
    assert OPENED not in device["sentence"]


def test_recall_and_replace_shows_the_correction_in_place(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    original = _sent_id(alice.run("send", "bob", "dinner at 8", "--json").json())
    bob.run("sync")
    answer = alice.run("recall", original[:8], "--replace", "dinner at 7", "--json").json()
    replacement = answer["replacement_id"]
    assert isinstance(replacement, str)
    assert replacement != original
    history = bob.run("history", "alice", "--json").json()
    by_id = {m["id"]: m for m in history}
    assert by_id[original]["state"] == "recalled"
    assert by_id[original]["replaced_by"] == replacement
    assert by_id[replacement]["replaces"] == original
    bob.run("open", replacement[:8])
    shown = bob.run("history", "alice").out
    assert "dinner at 7" in shown
    assert "(corrected)" in shown
    assert "dinner at 8" not in shown
    printed = alice.run("recall", original[:8])
    assert "already recalled" in printed.out


def test_a_refused_recall_says_why_and_what_remains(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    message_id = _sent_id(
        alice.run("send", "bob", "too late", "--opened-window", "1s", "--json").json()
    )
    bob.run("open", message_id[:8])
    time.sleep(1.5)  # the opened window is one second long: wait it out on the relay's clock
    refused = alice.run("recall", message_id[:8], expect=1)
    assert "Recall refused" in refused.err
    assert "window closed" in refused.err.lower()
    assert "send a correction" in refused.err
    assert "e2e-recall send bob" in refused.err
    (device,) = alice.run("report", message_id[:8], "--json").json()["devices"]
    assert device["state"] == "opened"
    assert bob.run("history", "alice", "--json").json()[0]["text"] == "too late"


def test_delete_for_me_touches_only_this_device(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    message_id = _sent_id(alice.run("send", "bob", "keep or not", "--json").json())
    bob.run("open", message_id[:8])
    deleted = bob.run("delete", message_id[:8])
    assert "this device only" in deleted.out
    assert bob.run("history", "alice", "--json").json() == []
    (device,) = alice.run("report", message_id[:8], "--json").json()["devices"]
    assert device["state"] == "opened"  # a local delete is no receipt, and claims none
    assert [m["text"] for m in alice.run("history", "bob", "--json").json()] == ["keep or not"]


def test_send_reads_the_text_from_stdin(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    message_id = _sent_id(alice.run("send", "bob", "--json", stdin="line one\nline two\n").json())
    assert bob.run("open", message_id[:8], "--json").json()["text"] == "line one\nline two"


def test_the_profile_comes_from_the_flag_the_environment_or_the_platform(
    tmp_path: Path,
) -> None:
    """Flag over ``E2E_RECALL_PROFILE`` over the platform's user data directory."""
    xdg = tmp_path / "xdg"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL")},
        "XDG_DATA_HOME": str(xdg),
        "E2E_RECALL_PASSPHRASE": "a passphrase for profiles",
    }

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(console_script()), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    run("init", "--kdf", "interactive")
    assert (xdg / "e2e-recall" / "keystore").is_file()
    run("init", "--kdf", "interactive", E2E_RECALL_PROFILE=str(tmp_path / "second"))
    run(
        "--profile",
        str(tmp_path / "third"),
        "init",
        "--kdf",
        "interactive",
        E2E_RECALL_PROFILE=str(tmp_path / "unused"),
    )
    assert (tmp_path / "second" / "keystore").is_file()
    assert (tmp_path / "third" / "keystore").is_file()
    assert not (tmp_path / "unused").exists()
    ids = {
        json.loads(run("whoami", "--json").stdout)["fingerprint"],
        json.loads(run("whoami", "--json", E2E_RECALL_PROFILE=str(tmp_path / "second")).stdout)[
            "fingerprint"
        ],
        json.loads(run("whoami", "--json", "--profile", str(tmp_path / "third")).stdout)[
            "fingerprint"
        ],
    }
    assert len(ids) == 3  # three profiles, three identities
