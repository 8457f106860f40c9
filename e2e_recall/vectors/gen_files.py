"""Vectors for attachments: file keys, blobs, descriptors in a body, file names.

libsodium's ``init_push`` draws the stream header itself, so the generator
takes each header from the seeded source and sets the state up with
``init_pull`` on it (the same derivation; docs/protocol.md section 7.5): the
blobs are then reproducible from the seed, and a checker encrypts again with
the header at the front of each valid blob.  Hostile streams that our
encryptor refuses to make (bad padding, wrong tags) are pushed through the
bindings directly.
"""

from __future__ import annotations

from typing import Any

import nacl.bindings as sodium

from .. import wire
from ..attachment import (
    CHUNK_LEN,
    CHUNK_OVERHEAD,
    HEADER_LEN,
    MAX_FILE_SIZE,
    FileEncryptor,
    blob_digest,
    blob_length,
    file_key,
)
from ..body import Body, encrypt_body, pad
from ..descriptor import FileDescriptor
from .check_files import descriptors_out
from .fixtures import Context, fixed, flip_bit
from .format import Group, VectorFile

__all__ = ["file_vectors"]

_TAG_PUSH = sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH
_TAG_REKEY = sodium.crypto_secretstream_xchacha20poly1305_TAG_REKEY
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

_HEADER = [
    "FileDecrypt: derive fileKey = HKDF-SHA256(ikm = messageKey, salt = none, info =",
    "KDF_FILE_KEY || messageId || u8(index), 32 bytes); decrypt blob as a secretstream",
    "XChaCha20-Poly1305 stream whose layout follows from size (docs/protocol.md 7.5); check",
    "the padding, the final tag, the length and that SHA-256(HASH_BLOB || blob) = digest.",
    "Outputs: fileKey, plaintext (the file, without padding), blobLength. Valid tests also",
    "encrypt again with the blob's first 24 bytes as the stream header: same blob.",
    "BodyDecrypt: as in body_encryption.json, for bodies that list files.",
    "FileName: sanitise name; the output is sanitised.",
]


class _Files:
    """One message's key and id, and the blobs of its files, drawn from the seed."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.message_key = ctx.rng(32)
        self.message_id = ctx.new_id()

    def encrypt(self, data: bytes, index: int) -> bytes:
        key = file_key(self.message_key, self.message_id, index)
        encryptor = FileEncryptor(key, len(data), rng=fixed(self.ctx.rng(HEADER_LEN)))
        return encryptor.update(data) + encryptor.finish()

    def seal(self, index: int, chunks: list[tuple[bytes, int]]) -> bytes:
        """A stream of the given plaintext chunks and tags, with no checks at all."""
        header = self.ctx.rng(HEADER_LEN)
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        key = file_key(self.message_key, self.message_id, index)
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
        sealed = [
            sodium.crypto_secretstream_xchacha20poly1305_push(state, m, None, t) for m, t in chunks
        ]
        return header + b"".join(sealed)

    def fields(
        self, index: int, size: int, blob: bytes, digest: bytes | None = None
    ) -> dict[str, Any]:
        return {
            "messageKey": self.message_key.hex(),
            "messageId": self.message_id.hex(),
            "index": index,
            "size": size,
            "digest": (blob_digest(blob) if digest is None else digest).hex(),
            "blob": blob.hex(),
        }


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the ciphertext chunks of an honest blob."""
    step = CHUNK_LEN + CHUNK_OVERHEAD
    body = blob[HEADER_LEN:]
    return blob[:HEADER_LEN], [body[at : at + step] for at in range(0, len(body), step)]


def file_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Attachments: HKDF-SHA256 file keys, secretstream XChaCha20-Poly1305 blobs", _HEADER
    )
    group = vf.group("FileDecrypt")
    files = _Files(ctx)
    blobs = _valid_blobs(group, files)
    _tampered(group, files, blobs)
    _hostile_streams(group, files)
    _body_with_files(vf, ctx, blobs)
    _file_names(vf)
    return vf


def _valid_blobs(group: Group, files: _Files) -> dict[str, tuple[int, bytes, bytes]]:
    """The valid blobs, by role: (index, plaintext, blob)."""
    made: dict[str, tuple[int, bytes, bytes]] = {}
    cases = [
        ("empty", "empty file: one chunk of padding only", 0, 0),
        ("one", "one byte", 0, 1),
        ("small", "100 bytes, the last file of a full body (index 15)", 15, 100),
        ("bucket", "255 bytes: the marker ends the first 256-byte bucket", 1, 255),
        ("exact", "exactly CHUNK_LEN bytes: the marker opens a second chunk", 0, CHUNK_LEN),
        ("plus_one", "CHUNK_LEN + 1 bytes", 2, CHUNK_LEN + 1),
        ("one_full", "65535 bytes: padded to exactly one full final chunk", 3, CHUNK_LEN - 1),
        ("three", "two full chunks and part of a third", 0, 2 * CHUNK_LEN + 1000),
    ]
    for role, comment, index, size in cases:
        data = files.ctx.rng(size)
        blob = files.encrypt(data, index)
        key = file_key(files.message_key, files.message_id, index)
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            **files.fields(index, size, blob),
            fileKey=key.hex(),
            plaintext=data.hex(),
            blobLength=blob_length(size),
        )
        made[role] = (index, data, blob)
    return made


def _tampered(group: Group, files: _Files, blobs: dict[str, tuple[int, bytes, bytes]]) -> None:
    index, data, small = blobs["small"]
    size = len(data)

    def bad(comment: str, expect: str, flags: list[str], blob: bytes, **over: Any) -> None:
        fields = files.fields(over.pop("index", index), over.pop("size", size), blob)
        group.add(comment, expect, flags, **(fields | over))

    bad("header bit flipped", "auth_failure", ["Tampered"], flip_bit(small, 3))
    bad("ciphertext bit flipped", "auth_failure", ["Tampered"], flip_bit(small, HEADER_LEN + 5))
    bad("MAC bit flipped", "auth_failure", ["Tampered"], flip_bit(small, len(small) - 1, 7))
    bad("encrypted tag byte flipped", "auth_failure", ["Tampered"], flip_bit(small, HEADER_LEN))
    bad("opened as file 0 of the body", "auth_failure", ["WrongFileIndex"], small, index=0)
    other = _Files(files.ctx)
    stranger = other.encrypt(data, index)
    bad("the same file sent in another message", "auth_failure", ["ChunkSubstituted"], stranger)
    header, _ = _split(stranger)
    bad(
        "stream header of another message's blob",
        "auth_failure",
        ["ChunkSubstituted"],
        header + small[HEADER_LEN:],
    )
    bad("empty blob", "decode_failure", ["Truncated"], b"", reason="truncated")
    bad("header only", "decode_failure", ["Truncated"], small[:HEADER_LEN], reason="truncated")
    bad("23 bytes of header", "decode_failure", ["Truncated"], small[:23], reason="truncated")
    bad(
        "final chunk cut by one byte",
        "decode_failure",
        ["Truncated"],
        small[:-1],
        reason="truncated",
    )
    bad(
        "one byte after the final chunk",
        "decode_failure",
        ["TrailingBytes"],
        small + b"\x00",
        reason="trailing_data",
    )
    bad(
        "the final chunk twice",
        "decode_failure",
        ["TrailingBytes", "ChunkDuplicated"],
        small + small[HEADER_LEN:],
        reason="trailing_data",
    )
    fields = files.fields(index, size, small, digest=blob_digest(stranger))
    group.add(
        "digest of another blob",
        "decode_failure",
        ["DigestMismatch"],
        **fields,
        reason="digest_mismatch",
    )
    fields = files.fields(index, size, small, digest=flip_bit(blob_digest(small), 31, 7))
    group.add(
        "digest with its last bit flipped",
        "decode_failure",
        ["DigestMismatch"],
        **fields,
        reason="digest_mismatch",
    )
    fields = files.fields(index, size, small)
    group.add(
        "digest of 31 bytes",
        "decode_failure",
        ["BadLength"],
        **(fields | {"digest": fields["digest"][:62]}),
    )
    bad(
        "size past the protocol ceiling",
        "decode_failure",
        ["SizeLie"],
        small,
        size=MAX_FILE_SIZE + 1,
    )
    bad(
        "size 200 for a 100-byte file (same bucket)",
        "decode_failure",
        ["SizeLie"],
        small,
        size=200,
        reason="bad_padding",
    )
    bad(
        "size 50 for a 100-byte file (same bucket)",
        "decode_failure",
        ["SizeLie"],
        small,
        size=50,
        reason="bad_padding",
    )
    bad(
        "size 300 for a 100-byte file (a larger bucket)",
        "decode_failure",
        ["SizeLie"],
        small,
        size=300,
        reason="too_short",
    )
    bad(
        "size CHUNK_LEN + 1 for a 100-byte file",
        "decode_failure",
        ["SizeLie"],
        small,
        size=CHUNK_LEN + 1,
        reason="too_short",
    )
    one_index, _, one_full = blobs["one_full"]
    bad(
        "size CHUNK_LEN for a one-chunk file: FINAL where more was due",
        "decode_failure",
        ["SizeLie", "StreamTag"],
        one_full,
        index=one_index,
        size=CHUNK_LEN,
        reason="too_short",
    )

    t_index, t_data, three = blobs["three"]
    header, (c0, c1, c2) = _split(three)
    cut = {"index": t_index, "size": len(t_data)}
    bad(
        "cut after chunk 0", "decode_failure", ["Truncated"], header + c0, **cut, reason="truncated"
    )
    bad(
        "final chunk dropped",
        "decode_failure",
        ["Truncated"],
        header + c0 + c1,
        **cut,
        reason="truncated",
    )
    bad("chunks 0 and 1 swapped", "auth_failure", ["ChunkReordered"], header + c1 + c0 + c2, **cut)
    bad(
        "chunk 0 again in place of chunk 1",
        "auth_failure",
        ["ChunkDuplicated"],
        header + c0 + c0 + c2,
        **cut,
    )
    _, (_, twin, _) = _split(files.encrypt(t_data, t_index + 1))
    bad(
        "chunk 1 of file 1 of the same message",
        "auth_failure",
        ["ChunkSubstituted"],
        header + c0 + twin + c2,
        **cut,
    )
    _, (_, alien, _) = _split(other.encrypt(t_data, t_index))
    bad(
        "chunk 1 of the same file in another message",
        "auth_failure",
        ["ChunkSubstituted"],
        header + c0 + alien + c2,
        **cut,
    )
    bad(
        "size 65535 for a three-chunk file: chunk 0 is not final",
        "decode_failure",
        ["SizeLie"],
        three,
        index=t_index,
        size=CHUNK_LEN - 1,
        reason="too_long",
    )
    bad(
        "size 60000 for a three-chunk file: chunk 0 boundary moves",
        "auth_failure",
        ["SizeLie"],
        three,
        index=t_index,
        size=60000,
    )


def _hostile_streams(group: Group, files: _Files) -> None:
    """Authentic streams our encryptor never makes: the checks after decryption."""
    index, size = 4, 100
    good = files.ctx.rng(size)

    def sealed(
        comment: str,
        reason: str,
        flags: list[str],
        chunks: list[tuple[bytes, int]],
        length: int = size,
    ) -> None:
        blob = files.seal(index, chunks)
        group.add(
            comment, "decode_failure", flags, **files.fields(index, length, blob), reason=reason
        )

    padded = good + b"\x80" + bytes(155)
    sealed("no 0x80 marker", "bad_padding", ["Padding"], [(good + bytes(156), _TAG_FINAL)])
    sealed(
        "a padding byte is not zero",
        "bad_padding",
        ["Padding"],
        [(padded[:-1] + b"\x01", _TAG_FINAL)],
    )
    sealed(
        "marker one byte late",
        "bad_padding",
        ["Padding"],
        [(good + b"\x00\x80" + bytes(154), _TAG_FINAL)],
    )
    sealed(
        "padded to the next bucket",
        "too_long",
        ["Padding"],
        [(padded[:256], _TAG_MESSAGE), (bytes(256), _TAG_FINAL)],
    )
    sealed("the only chunk tagged MESSAGE", "too_long", ["StreamTag"], [(padded, _TAG_MESSAGE)])
    sealed(
        "an empty FINAL chunk after the real last one",
        "too_long",
        ["StreamTag"],
        [(padded, _TAG_MESSAGE), (b"", _TAG_FINAL)],
    )
    sealed("the only chunk tagged PUSH", "bad_tag", ["StreamTag"], [(padded, _TAG_PUSH)])
    sealed("the only chunk tagged REKEY", "bad_tag", ["StreamTag"], [(padded, _TAG_REKEY)])
    big = files.ctx.rng(CHUNK_LEN)
    sealed(
        "non-zero byte in a chunk of padding only",
        "bad_padding",
        ["Padding"],
        [(big, _TAG_MESSAGE), (b"\x80" + bytes(2046) + b"\x01", _TAG_FINAL)],
        CHUNK_LEN,
    )
    sealed(
        "first of two chunks tagged FINAL",
        "too_short",
        ["StreamTag"],
        [(big, _TAG_FINAL), (b"\x80" + bytes(2047), _TAG_FINAL)],
        CHUNK_LEN,
    )


def _body_with_files(
    vf: VectorFile, ctx: Context, blobs: dict[str, tuple[int, bytes, bytes]]
) -> None:
    group = vf.group("BodyDecrypt")
    aad = wire.encode({"version": 1, "example": "any header bytes are the associated data"})
    descriptors = [
        FileDescriptor(ctx.new_id(), name, len(data), media, blob_digest(blob))
        for (_, data, blob), name, media in zip(
            blobs.values(),
            [
                "empty.txt",
                "a",
                "report (final).pdf",
                "\u00e9t\u00e9.jpg",
                "../../x",
                "CON",
                "b",
                "c",
            ],
            [
                "text/plain",
                "application/octet-stream",
                "application/pdf",
                "image/jpeg",
                "application/x-sh",
                "text/plain",
                "application/vnd.ms-excel",
                "video/mp4",
            ],
            strict=True,
        )
    ]
    full = [
        FileDescriptor(ctx.new_id(), "n" * 255, MAX_FILE_SIZE, "a/" + "b" * 125, ctx.rng(32))
        for _ in range(16)
    ]
    for comment, body in (
        ("one file", Body("see attached", (descriptors[2],))),
        ("eight files, names as the sender wrote them", Body("", tuple(descriptors))),
        ("sixteen files of the longest fields", Body("x" * 1000, tuple(full))),
    ):
        key, nonce = ctx.rng(32), ctx.rng(24)
        _, ct = encrypt_body(body, key, aad, rng=fixed(nonce))
        group.add(
            comment,
            "success",
            ["Valid", "Deterministic"],
            key=key.hex(),
            nonce=nonce.hex(),
            aad=aad.hex(),
            text=body.text,
            files=descriptors_out(body.files),
            plaintext=pad(body.encode()).hex(),
            ciphertext=ct.hex(),
        )

    one = descriptors[2].to_wire()

    def sealed(comment: str, flags: list[str], files: Any) -> None:
        key, nonce = ctx.rng(32), ctx.rng(24)
        body = {"text": "t"} if files is None else {"text": "t", "files": files}
        content = pad(wire.encode(body))
        ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(content, aad, nonce, key)
        group.add(
            comment,
            "decode_failure",
            flags,
            key=key.hex(),
            nonce=nonce.hex(),
            aad=aad.hex(),
            ciphertext=ct.hex(),
        )

    sealed("seventeen files", ["TooMany"], [d.to_wire() for d in full] + [one])
    sealed("two files with one blob id", ["DuplicateBlob"], [one, one | {"name": "other"}])
    sealed("files is a map", ["TypeConfusion"], {"0": one})
    sealed("empty file name", ["BadLength"], [one | {"name": ""}])
    sealed("file name of 256 bytes", ["BadLength"], [one | {"name": "n" * 256}])
    sealed("size past the protocol ceiling", ["SizeLie"], [one | {"size": MAX_FILE_SIZE + 1}])
    sealed("digest of 31 bytes", ["BadLength"], [one | {"digest": one["digest"][:31]}])
    sealed("blob id of 15 bytes", ["BadLength"], [one | {"blob_id": one["blob_id"][:15]}])
    sealed(
        "media type with a parameter",
        ["UnknownValue"],
        [one | {"media_type": "text/plain;charset=utf-8"}],
    )
    sealed("media type without a subtype", ["UnknownValue"], [one | {"media_type": "text"}])
    sealed("descriptor with an unknown field", ["UnknownField"], [one | {"x": 1}])
    sealed(
        "descriptor without a digest",
        ["MissingField"],
        [{k: v for k, v in one.items() if k != "digest"}],
    )
    sealed("name is a byte string", ["TypeConfusion"], [one | {"name": b"a.pdf"}])
    sealed("body has no files", ["MissingField"], None)


_NAMES = [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("C:\\x\\y", "y"),
    ("/absolute/path.txt", "path.txt"),
    ("dir\\..\\..\\evil.exe", "evil.exe"),
    ("..", "file"),
    (".", "file"),
    ("", "file"),
    ("/", "file"),
    (".bashrc", "bashrc"),
    ("...hidden...", "hidden"),
    ("trailing dots and spaces. . .", "trailing dots and spaces"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("Lpt9.tar.gz", "_Lpt9.tar.gz"),
    ("COM\u00b9", "_COM\u00b9"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("a\x00b\x1fc\x7fd", "abcd"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),
    ("zero\u200bwidth", "zerowidth"),
    ('what?*<>|:".txt', "what_______.txt"),
    ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),
    ("\u65e5\u672c\u8a9e.txt", "\u65e5\u672c\u8a9e.txt"),
    ("a" * 1000 + ".pdf", "a" * 251 + ".pdf"),
    ("\u00e9" * 200 + ".txt", "\u00e9" * 125 + ".txt"),
    ("b" * 300, "b" * 255),
    ("x." + "y" * 300, "x." + "y" * 253),
]


def _file_names(vf: VectorFile) -> None:
    group = vf.group("FileName")
    for name, safe in _NAMES:
        group.add(f"sanitise {name[:40]!r}", "success", ["FileName"], name=name, sanitised=safe)
