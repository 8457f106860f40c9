"""File transfers through the client library against a relay process on loopback.

The hard cases of moving a file: an upload cut halfway that resumes from
the relay's offset, a download cut halfway that resumes with a Range
request, a hostile file name from a modified sender, and what a recall
leaves on the recipient's disk (nothing of the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp

from client import receiving
from client.account import ensure_session
from client.attachments import OutgoingFile, save_files, seal_files, upload_files
from client.client import Client
from e2e_recall import blob_length

WINDOW = 16


def _windows(data: bytes, step: int = 997) -> set[bytes]:
    return {data[i : i + WINDOW] for i in range(0, len(data) - WINDOW + 1, step)}


def _bytes_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def _upload_part(client: Client, item: OutgoingFile, length: int) -> None:
    """What a connection broken after ``length`` bytes leaves at the relay."""
    await ensure_session(client.core)
    headers = {
        "Authorization": f"Bearer {client.core.relay.token}",
        "Content-Type": "application/octet-stream",
        "Upload-Offset": "0",
    }
    body = item.cipher.read_bytes()[:length]
    async with aiohttp.ClientSession() as http:
        url = client.core.relay.url + f"/v1/blobs/{item.descriptor.blob_id.hex()}"
        async with http.patch(url, data=body, headers=headers) as answer:
            assert answer.status == 200, await answer.read()


async def test_an_upload_cut_halfway_resumes_from_the_relays_offset(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, _bob = clients
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(5 * 65536 + 3))
    message_id, key = os.urandom(16), os.urandom(32)
    (item,) = seal_files(alice.core, message_id, key, [source])
    assert item.cipher.stat().st_size == item.blob_size == blob_length(5 * 65536 + 3)
    created = await alice.core.relay.call(
        "POST",
        "/v1/blobs",
        {
            "blob_id": item.descriptor.blob_id,
            "size": item.blob_size,
            "digest": item.descriptor.digest,
        },
    )
    assert created["offset"] == 0
    half = item.blob_size // 2
    await _upload_part(alice, item, half)

    moved: list[int] = []
    await upload_files(alice.core, [item], lambda _name, _total: moved.append)
    assert moved[0] == half  # the bar starts where the relay stood
    assert sum(moved) == item.blob_size  # and only the rest was sent
    status = await alice.core.relay.call("GET", f"/v1/blobs/{item.descriptor.blob_id.hex()}/upload")
    assert status["complete"] is True
    assert status["offset"] == item.blob_size


async def test_a_retried_upload_of_a_stored_blob_sends_nothing(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, _bob = clients
    source = tmp_path / "small.bin"
    source.write_bytes(os.urandom(1000))
    (item,) = seal_files(alice.core, os.urandom(16), os.urandom(32), [source])
    await upload_files(alice.core, [item])
    moved: list[int] = []
    await upload_files(alice.core, [item], lambda _name, _total: moved.append)
    assert moved == []


async def test_a_download_cut_halfway_resumes_and_saves_the_file_once(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, bob = clients
    source = tmp_path / "photo.raw"
    content = os.urandom(4 * 65536 + 17)
    source.write_bytes(content)
    sent = await alice.send("bob", "raw photo", files=[source])
    await bob.sync()
    assert bob.core.store.files(sent.message_id) == []  # nothing known of the file yet

    await receiving.open_message(bob.core, sent.message_id)  # the key, not yet the file
    (row,) = bob.core.store.files(sent.message_id)
    assert row.state == "waiting"
    (waiting,) = bob.entry(bob.core.store.message(sent.message_id)).files  # type: ignore[arg-type]
    blob_id = _blob_id(bob, sent.message_id)
    whole: list[bytes] = []
    await bob.core.relay.download(f"/v1/blobs/{blob_id.hex()}", whole.append)
    blob = b"".join(whole)
    assert len(blob) == blob_length(len(content))
    cache = tmp_path / "bob" / "files" / sent.message_id.hex() / f"{blob_id.hex()}.blob"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(blob[: len(blob) // 2])  # what a broken connection left

    downloads = tmp_path / "dl"
    moved: list[int] = []
    await save_files(bob.core, sent.message_id, downloads, lambda _n, _t: moved.append)
    assert moved[0] == len(blob) // 2
    assert sum(moved) == len(blob)
    assert (downloads / "photo.raw").read_bytes() == content
    assert waiting.name == "photo.raw"
    again = await bob.open_message(sent.message_id, downloads)  # opening again saves no copy
    assert [f.saved_at for f in again.files] == [str(downloads / "photo.raw")]
    assert sorted(p.name for p in downloads.iterdir()) == ["photo.raw"]
    assert not cache.exists()


def _blob_id(client: Client, message_id: bytes) -> bytes:
    from client.attachments import _record

    (row,) = client.core.store.files(message_id)
    blob_id = _record(client.core, row)["blob_id"]
    assert isinstance(blob_id, bytes)
    return blob_id


async def test_a_recall_leaves_nothing_of_the_file_in_the_recipients_profile_or_downloads(
    clients: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, bob = clients
    source = tmp_path / "secret.txt"
    content = os.urandom(3 * 65536)
    source.write_bytes(content)
    sent = await alice.send("bob", "see attached", files=[source])
    await bob.sync()
    downloads = tmp_path / "dl"
    await bob.open_message(sent.message_id, downloads)
    assert (downloads / "secret.txt").read_bytes() == content
    await alice.recall(sent.message_id)
    await bob.sync()
    assert not (downloads / "secret.txt").exists()
    left = _bytes_under(tmp_path / "bob") + _bytes_under(downloads)
    assert not any(window in left for window in _windows(content))
    # And Alice's own profile keeps no ciphertext waiting for an upload.
    assert list((tmp_path / "alice" / "files").rglob("*.blob")) == []
