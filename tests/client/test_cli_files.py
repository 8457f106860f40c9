"""Files through the real ``e2e-recall`` command and a relay process on loopback.

Real files of several sizes go up and come down whole; the recipient's
disk never holds a half-saved or misnamed file; a recall takes the file
from the relay and from the recipient's downloads, and the report says
whether it had been downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_harness import Person
from relay_process import RelayProcess

CHUNK = 65536
OPENED = "possibly already read, copied or screenshotted"


def _file(folder: Path, name: str, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _blob_files(relay: RelayProcess) -> list[Path]:
    return [p for p in (relay.data_dir / "blobs").rglob("*") if p.is_file()]


@pytest.mark.parametrize("size", [0, CHUNK + 1, 3 * CHUNK + 12345])
def test_a_file_goes_up_and_comes_down_whole(
    tmp_path: Path, pair: tuple[Person, Person], size: int
) -> None:
    alice, bob = pair
    original = _file(tmp_path / "alice-files", "notes.bin", size)
    sent = alice.run("send", "bob", "--file", str(original), "here you go", "--json").json()
    assert sent["queued"] is False
    assert sent["problem"] is None

    inbox = bob.run("inbox", "--json").json()
    assert [m["files"] for m in inbox] == [[]]  # nothing about the file before it is opened

    downloads = tmp_path / "bob-downloads"
    opened = bob.run("open", sent["id"][:8], "--downloads", str(downloads), "--json").json()
    assert opened["text"] == "here you go"
    (described,) = opened["files"]
    assert (described["name"], described["size"]) == ("notes.bin", size)
    assert described["saved_at"] == str(downloads / "notes.bin")
    assert (downloads / "notes.bin").read_bytes() == original.read_bytes()
    assert _listing(downloads) == ["notes.bin"]  # no part file left beside it

    report = alice.run("report", sent["id"][:8], "--json").json()
    (device,) = report["devices"]
    assert device["state"] == "opened"
    assert device["files_downloaded"] is True
    assert report["files"]["count"] == 1


def test_several_files_with_progress_and_a_text(
    tmp_path: Path, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    first = _file(tmp_path / "a", "photo.jpg", 200_000)
    second = _file(tmp_path / "a", "minutes.txt", 10)
    sent = alice.run("send", "bob", "--file", str(first), "--file", str(second), "two files")
    assert "Uploading photo.jpg" in sent.err
    assert "Uploading minutes.txt" in sent.err
    downloads = tmp_path / "dl"
    (row,) = bob.run("inbox", "--json").json()
    opened = bob.run("open", row["id"][:8], "--downloads", str(downloads))
    assert "Downloading photo.jpg" in opened.err
    assert f"as {downloads / 'photo.jpg'}" in opened.out
    assert (downloads / "photo.jpg").read_bytes() == first.read_bytes()
    assert (downloads / "minutes.txt").read_bytes() == second.read_bytes()
    history = alice.run("history", "bob")
    assert "photo.jpg" in history.out
    assert "minutes.txt" in history.out


def test_a_file_only_message_needs_no_text(tmp_path: Path, pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    original = _file(tmp_path / "a", "only.pdf", 5000)
    sent = alice.run("send", "bob", "--file", str(original), "--json").json()
    downloads = tmp_path / "dl"
    opened = bob.run("open", sent["id"][:8], "--downloads", str(downloads), "--json").json()
    assert opened["text"] == ""
    assert (downloads / "only.pdf").read_bytes() == original.read_bytes()


def test_an_existing_file_is_never_overwritten(tmp_path: Path, pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "report.pdf").write_bytes(b"bob's own report")
    (downloads / "report (1).pdf").write_bytes(b"and another")
    original = _file(tmp_path / "a", "report.pdf", 3000)
    sent = alice.run("send", "bob", "--file", str(original), "--json").json()
    opened = bob.run("open", sent["id"][:8], "--downloads", str(downloads), "--json").json()
    assert opened["files"][0]["saved_at"] == str(downloads / "report (2).pdf")
    assert (downloads / "report.pdf").read_bytes() == b"bob's own report"
    assert (downloads / "report (1).pdf").read_bytes() == b"and another"
    assert (downloads / "report (2).pdf").read_bytes() == original.read_bytes()


def test_a_dangerous_name_is_made_harmless(tmp_path: Path, pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    for name in ("CON.txt", ".bashrc", "..."):
        _file(tmp_path / "a", name, 10)
    sent = alice.run(
        "send",
        "bob",
        *("--file", str(tmp_path / "a" / "CON.txt")),
        *("--file", str(tmp_path / "a" / ".bashrc")),
        *("--file", str(tmp_path / "a" / "...")),
        "--json",
    ).json()
    downloads = tmp_path / "dl"
    opened = bob.run("open", sent["id"][:8], "--downloads", str(downloads), "--json").json()
    saved = [Path(f["saved_at"]) for f in opened["files"]]
    for path in saved:
        assert path.parent == downloads
        assert not path.name.startswith(".")
        assert path.name.split(".")[0].upper() != "CON"
    assert len(set(saved)) == 3


def test_a_wrong_file_recalled_before_it_was_opened(
    tmp_path: Path, relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    wrong = _file(tmp_path / "a", "salaries.xlsx", 150_000)
    sent = alice.run("send", "bob", "--file", str(wrong), "the agenda", "--json").json()
    assert _blob_files(relay)  # the relay holds the blob

    recalled = alice.run("recall", sent["id"][:8], "--json").json()
    assert recalled["state"] == "recalled"
    assert recalled["files"]["destroyed"] is True
    assert _blob_files(relay) == []  # destroyed in the same operation as the message
    report = alice.run("report", sent["id"][:8], "--json").json()
    assert report["files"] == {"count": 1, "bytes": report["files"]["bytes"], "destroyed": True}
    (device,) = report["devices"]
    assert device["files_downloaded"] is False
    assert OPENED not in str(report)

    downloads = tmp_path / "dl"
    refused = bob.run("open", sent["id"][:8], "--downloads", str(downloads), expect=None)
    assert refused.code != 0
    assert _listing(downloads) == []


def test_a_recall_after_opening_deletes_the_saved_file(
    tmp_path: Path, relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    original = _file(tmp_path / "a", "draft.docx", 80_000)
    sent = alice.run("send", "bob", "--file", str(original), "--json").json()
    downloads = tmp_path / "dl"
    bob.run("open", sent["id"][:8], "--downloads", str(downloads))
    assert _listing(downloads) == ["draft.docx"]

    alice.run("recall", sent["id"][:8])
    bob.run("sync")  # the revocation arrives; the client obeys it
    assert _listing(downloads) == []
    assert _blob_files(relay) == []
    report = alice.run("report", sent["id"][:8], "--json").json()
    (device,) = report["devices"]
    assert device["state"] == "deleted"
    assert device["files_downloaded"] is True
    assert "had downloaded" in device["sentence"]


def test_a_saved_file_the_person_replaced_is_left_alone(
    tmp_path: Path, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    original = _file(tmp_path / "a", "plan.txt", 400)
    sent = alice.run("send", "bob", "--file", str(original), "--json").json()
    downloads = tmp_path / "dl"
    bob.run("open", sent["id"][:8], "--downloads", str(downloads))
    (downloads / "plan.txt").unlink()
    (downloads / "plan.txt").write_text("bob wrote his own plan")
    alice.run("recall", sent["id"][:8])
    bob.run("sync")
    assert (downloads / "plan.txt").read_text() == "bob wrote his own plan"


def test_a_tampered_blob_saves_nothing(
    tmp_path: Path, relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    original = _file(tmp_path / "a", "contract.pdf", 2 * CHUNK)
    sent = alice.run("send", "bob", "--file", str(original), "--json").json()
    (blob,) = _blob_files(relay)
    data = bytearray(blob.read_bytes())
    data[CHUNK + 100] ^= 0x01  # one bit in the second chunk
    blob.write_bytes(bytes(data))

    downloads = tmp_path / "dl"
    refused = bob.run("open", sent["id"][:8], "--downloads", str(downloads), "--json", expect=None)
    assert refused.code != 0
    assert "nothing was saved" in refused.err
    assert _listing(downloads) == []  # not even a part file


def test_a_send_while_the_relay_is_down_uploads_later(
    tmp_path: Path, relay: RelayProcess, pair: tuple[Person, Person]
) -> None:
    alice, bob = pair
    original = _file(tmp_path / "a", "late.bin", CHUNK * 2 + 7)
    relay.kill()
    queued = alice.run("send", "bob", "--file", str(original), "--json", expect=3).json()
    assert queued["queued"] is True
    relay.restart()
    assert alice.run("sync", "--json").json()["queued"] == 0
    downloads = tmp_path / "dl"
    bob.run("open", queued["id"][:8], "--downloads", str(downloads))
    assert (downloads / "late.bin").read_bytes() == original.read_bytes()
    # Alice's encrypted copy waiting for the upload is gone once the relay has it.
    assert list((alice.profile / "files").rglob("*.blob")) == []


def test_a_missing_file_is_one_sentence(tmp_path: Path, pair: tuple[Person, Person]) -> None:
    alice, _bob = pair
    result = alice.run("send", "bob", "--file", str(tmp_path / "nope.txt"), "hi", expect=2)
    assert "Cannot read" in result.err
    result = alice.run("send", "bob", "--file", str(tmp_path), "hi", expect=2)
    assert "Is a directory" in result.err
    result = alice.run("send", "bob", "--file", "/dev/null", "hi", expect=2)
    assert "not a regular file" in result.err
    assert alice.run("history", "bob", "--json").json() == []  # nothing half-sent
