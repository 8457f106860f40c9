"""Runners for the attachment vectors (``file_encryption.json``).

A ``FileDecrypt`` test derives the file key from ``messageKey``,
``messageId`` and ``index`` (never reading ``fileKey``, an output), feeds
``blob`` to the decryptor in slices of an odd length so no chunk boundary
lines up with a slice, and finishes.  A valid test then encrypts the
plaintext again with the blob's own 24-byte stream header and must get the
blob back byte for byte.
"""

from __future__ import annotations

from typing import Any

from ..attachment import HEADER_LEN, FileDecryptor, FileEncryptor, blob_length, file_key
from ..descriptor import FileDescriptor
from ..file_names import sanitise_file_name
from .fields import hex_field

__all__ = ["FILE_RUNNERS", "descriptors_out"]

_SLICE = 7919  # a prime: slices straddle every header and chunk boundary


def descriptors_out(files: tuple[FileDescriptor, ...]) -> list[dict[str, Any]]:
    """A body's descriptors as a vector states them (camelCase, hex)."""
    return [
        {
            "blobId": d.blob_id.hex(),
            "name": d.name,
            "size": d.size,
            "mediaType": d.media_type,
            "digest": d.digest.hex(),
        }
        for d in files
    ]


def _file_decrypt(group: dict[str, Any], test: dict[str, Any]) -> Any:
    key = file_key(hex_field(test["messageKey"]), hex_field(test["messageId"]), test["index"])
    size, blob = test["size"], hex_field(test["blob"])
    decryptor = FileDecryptor(key, size, hex_field(test["digest"]))
    plaintext = b"".join(
        decryptor.update(blob[at : at + _SLICE]) for at in range(0, len(blob), _SLICE)
    )
    decryptor.finish()
    header = blob[:HEADER_LEN]
    encryptor = FileEncryptor(key, size, rng=lambda n: header)
    again = encryptor.update(plaintext) + encryptor.finish()
    return {
        "fileKey": key.hex(),
        "plaintext": plaintext.hex(),
        "blobLength": blob_length(size),
        "blob": again.hex(),
        "digest": encryptor.digest.hex(),
    }


def _file_name(group: dict[str, Any], test: dict[str, Any]) -> Any:
    return {"sanitised": sanitise_file_name(test["name"])}


FILE_RUNNERS = {"FileDecrypt": _file_decrypt, "FileName": _file_name}
