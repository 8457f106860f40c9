"""File descriptors: what the body says about each attached file.

Name, size and media type of a file are personal data, so they travel only
inside the encrypted body; the relay sees the blob id, an opaque padded blob
and its digest.  The descriptor also binds the blob: its ``digest`` is what
the recipient checks the downloaded blob against, so the relay cannot swap
one blob for another even of the same sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .domains import FINGERPRINT_LEN, ID_LEN, MAX_FILE_SIZE, MAX_FILES
from .errors import DecodeError, UsageError
from .schema import Field, check_map

__all__ = [
    "DESCRIPTOR_FIELDS",
    "MAX_MEDIA_TYPE_LEN",
    "MAX_NAME_LEN",
    "FileDescriptor",
    "decode_descriptors",
    "media_type_is_valid",
]

MAX_NAME_LEN = 255  # UTF-8 bytes
MAX_MEDIA_TYPE_LEN = 127  # bytes
DESCRIPTOR_FIELDS = (
    Field("blob_id", "bin", size=ID_LEN),
    Field("name", "str", min_len=1, max_len=MAX_NAME_LEN),
    Field("size", "uint", max_value=MAX_FILE_SIZE),
    Field("media_type", "str", min_len=1, max_len=MAX_MEDIA_TYPE_LEN),
    Field("digest", "bin", size=FINGERPRINT_LEN),
)
# RFC 6838 section 4.2 restricted names, type "/" subtype, and nothing else: a
# parameter (";charset=...") or a space could smuggle text a viewer interprets.
_NAME_CHARS = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
_MEDIA_TYPE = re.compile(rf"{_NAME_CHARS}/{_NAME_CHARS}")


def media_type_is_valid(value: str) -> bool:
    """``type/subtype`` in RFC 6838's restricted-name characters, 1..127 bytes."""
    return len(value) <= MAX_MEDIA_TYPE_LEN and _MEDIA_TYPE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class FileDescriptor:
    """One attached file, as the encrypted body describes it.

    ``size`` is the file's length in bytes (not the blob's); ``digest`` is
    the blob digest (:func:`e2e_recall.attachment.blob_digest`).  The file's
    key is not here: it is derived from the message key and the descriptor's
    position in the body (:func:`e2e_recall.attachment.file_key`).
    """

    blob_id: bytes
    name: str
    size: int
    media_type: str
    digest: bytes

    def __post_init__(self) -> None:
        # A program building a body gets its mistake at once, not from the recipient.
        problem = _problem(self)
        if problem is not None:
            raise UsageError("bad_descriptor", problem)

    def to_wire(self) -> dict[str, Any]:
        return {
            "blob_id": self.blob_id,
            "name": self.name,
            "size": self.size,
            "media_type": self.media_type,
            "digest": self.digest,
        }


def _problem(d: FileDescriptor) -> str | None:
    if type(d.blob_id) is not bytes or len(d.blob_id) != ID_LEN:
        return "a blob id is 16 bytes"
    if type(d.digest) is not bytes or len(d.digest) != FINGERPRINT_LEN:
        return "a blob digest is 32 bytes"
    if type(d.name) is not str or not 1 <= _utf8_len(d.name) <= MAX_NAME_LEN:
        return f"a file name is 1 to {MAX_NAME_LEN} bytes of UTF-8"
    if type(d.size) is not int or not 0 <= d.size <= MAX_FILE_SIZE:
        return f"a file size is 0 to {MAX_FILE_SIZE} bytes"
    if type(d.media_type) is not str or not media_type_is_valid(d.media_type):
        return "a media type is type/subtype (RFC 6838 restricted names), at most 127 bytes"
    return None


def _utf8_len(text: str) -> int:
    """Its UTF-8 length, or -1 for a string with lone surrogates (no UTF-8 form at all)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def decode_descriptors(value: object) -> tuple[FileDescriptor, ...]:
    """The body's ``files`` list, checked: each map exact, at most 16, blob ids distinct."""
    if type(value) is not list:
        raise DecodeError("wrong_type", "body.files must be an array")
    if len(value) > MAX_FILES:
        raise DecodeError("bad_length", f"a body lists at most {MAX_FILES} files")
    seen: set[bytes] = set()
    files = []
    for index, item in enumerate(value):
        where = f"body.files[{index}]"
        fields = check_map(item, DESCRIPTOR_FIELDS, where)
        if not media_type_is_valid(fields["media_type"]):
            raise DecodeError("bad_media_type", f"{where}.media_type is not type/subtype")
        if fields["blob_id"] in seen:
            raise DecodeError("duplicate_blob", f"{where} repeats a blob id")
        seen.add(fields["blob_id"])
        files.append(
            FileDescriptor(
                blob_id=fields["blob_id"],
                name=fields["name"],
                size=fields["size"],
                media_type=fields["media_type"],
                digest=fields["digest"],
            )
        )
    return tuple(files)
