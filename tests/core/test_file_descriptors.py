"""File descriptors in the body, and sanitising sender-chosen file names."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_recall import MAX_FILE_SIZE, MAX_FILES, Body, FileDescriptor, sanitise_file_name, wire
from e2e_recall.body import decrypt_body, encrypt_body, pad
from e2e_recall.errors import DecodeError, UsageError


def descriptor(n: int = 0, **over: object) -> FileDescriptor:
    fields: dict[str, object] = {
        "blob_id": bytes([n]) * 16,
        "name": f"file {n}.pdf",
        "size": 1000 + n,
        "media_type": "application/pdf",
        "digest": bytes([n + 1]) * 32,
    }
    return FileDescriptor(**(fields | over))  # type: ignore[arg-type]


def test_body_without_files_still_works_and_encodes_an_empty_list() -> None:
    body = Body(text="hi")
    assert body.files == ()
    assert wire.decode(body.encode()) == {"text": "hi", "files": []}
    assert Body.decode(body.encode()) == body


def test_body_with_files_round_trips_in_order() -> None:
    body = Body("see attached", tuple(descriptor(n) for n in range(MAX_FILES)))
    assert Body.decode(body.encode()) == body
    key, header = bytes(32), b"header"
    nonce, ciphertext = encrypt_body(body, key, header)
    assert decrypt_body(nonce, ciphertext, key, header) == body


def test_the_largest_body_fits() -> None:
    longest = tuple(
        descriptor(n, name="\u00e9" * 127, size=MAX_FILE_SIZE, media_type="a/" + "b" * 125)
        for n in range(MAX_FILES)
    )
    body = Body("x" * 65536, longest)
    assert Body.decode(body.encode()) == body
    assert len(pad(body.encode())) == 73728


def _decode(files: object) -> Body:
    return Body.decode(wire.encode({"text": "t", "files": files}))


@pytest.mark.parametrize(
    "files",
    [
        [descriptor(n).to_wire() for n in range(MAX_FILES + 1)],
        [descriptor(1).to_wire(), descriptor(1).to_wire() | {"name": "other"}],
        [descriptor().to_wire() | {"name": ""}],
        [descriptor().to_wire() | {"name": "n" * 256}],
        [descriptor().to_wire() | {"size": MAX_FILE_SIZE + 1}],
        [descriptor().to_wire() | {"size": -1}],
        [descriptor().to_wire() | {"digest": bytes(31)}],
        [descriptor().to_wire() | {"blob_id": bytes(17)}],
        [descriptor().to_wire() | {"media_type": "text/plain; charset=utf-8"}],
        [descriptor().to_wire() | {"media_type": "text"}],
        [descriptor().to_wire() | {"media_type": "/plain"}],
        [descriptor().to_wire() | {"media_type": "a/" + "b" * 126}],
        [descriptor().to_wire() | {"x": 1}],
        [{k: v for k, v in descriptor().to_wire().items() if k != "size"}],
        [descriptor().to_wire() | {"name": b"a"}],
        [[1, 2]],
        {"a": 1},
        None,
    ],
)
def test_bad_files_are_decode_errors(files: object) -> None:
    with pytest.raises(DecodeError):
        _decode(files)


def test_bad_descriptors_and_bodies_are_usage_errors_locally() -> None:
    for over in (
        {"blob_id": bytes(15)},
        {"name": ""},
        {"size": -1},
        {"media_type": "x"},
        {"digest": b""},
        {"name": "\ud800"},
    ):
        with pytest.raises(UsageError):
            descriptor(**over)
    with pytest.raises(UsageError):
        Body("t", (descriptor(1), descriptor(1, name="again"))).encode()
    with pytest.raises(UsageError):
        Body("t", tuple(descriptor(n) for n in range(MAX_FILES + 1))).encode()


# -- file names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y", "y"),
        ("/etc/", "file"),
        ("CON.txt", "_CON.txt"),
        ("con", "_con"),
        ("nul .tar.gz", "_nul .tar.gz"),
        ("COM1", "_COM1"),
        ("lpt\u00b2.doc", "_lpt\u00b2.doc"),
        ("COM10", "COM10"),
        ("..", "file"),
        ("", "file"),
        ("...", "file"),
        (" . ", "file"),
        (".bashrc", "bashrc"),
        ("a" * 1000 + ".pdf", "a" * 251 + ".pdf"),
        ("a\x00b\nc\td\x1b", "abcd"),
        ("file\u202egnp.exe", "filegnp.exe"),
        ("r\u00e9sum\u00e9.pdf", "r\u00e9sum\u00e9.pdf"),
        ("\U0001f600.png", "\U0001f600.png"),
        ("a:b", "a_b"),
        ("name. ", "name"),
    ],
)
def test_sanitise_file_name_cases(name: str, safe: str) -> None:
    assert sanitise_file_name(name) == safe


def test_cutting_keeps_whole_characters() -> None:
    safe = sanitise_file_name("\U0001f600" * 100 + ".txt")
    assert len(safe.encode("utf-8")) <= 255
    assert safe.endswith(".txt")
    assert set(safe[:-4]) == {"\U0001f600"}


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=600))
def test_property_sanitised_names_are_safe_and_stable(name: str) -> None:
    safe = sanitise_file_name(name)
    assert safe
    assert 1 <= len(safe.encode("utf-8")) <= 255
    assert "/" not in safe
    assert "\\" not in safe
    assert not safe.startswith(".")
    assert not safe.endswith((".", " "))
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in safe)
    assert not any(c in '<>:"|?*' for c in safe)
    assert safe.split(".")[0].rstrip(" ").upper() not in {"CON", "PRN", "AUX", "NUL"}
    assert sanitise_file_name(safe) == safe
