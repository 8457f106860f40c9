"""Attachments: per-file keys, the blob format, and streamed encryption.

A file is encrypted as one libsodium secretstream (XChaCha20-Poly1305) under
a key derived from the message's per-message key, so the one escrowed wrap
and the one recall cover body and files alike.  The blob is::

    header (24 bytes) || chunk_0 || ... || chunk_{n-1}

where the plaintext stream is the file, ``0x80``, then zeros up to
``padded_length(size)`` (the body's rule), cut into chunks of exactly
:data:`CHUNK_LEN` bytes but the last; each chunk gains 17 bytes, and only the
last carries ``TAG_FINAL``.  The secretstream nonce counter rejects a chunk
moved, repeated or taken from another stream, and the final tag plus the
length the descriptor implies reject truncation and extension.

Both directions are incremental and hold at most one chunk, whatever the
file size.  The stream header is drawn from ``rng`` like every other nonce in
this library, so tests and vectors are reproducible: the state is set up with
``init_pull`` on that header, which derives exactly what ``init_push`` derives
from the header it draws itself (docs/protocol.md section 7.5 says why that
is the same construction, and the tests check it against ``init_push``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import nacl.bindings as sodium
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.exceptions import CryptoError

from .descriptor import FileDescriptor
from .domains import (
    CHUNK_LEN,
    FINGERPRINT_LEN,
    HASH_BLOB,
    ID_LEN,
    KDF_FILE_KEY,
    KEY_LEN,
    MAX_FILE_SIZE,
    MAX_FILES,
)
from .errors import AuthenticationFailure, DecodeError, ProtocolError, UsageError
from .file_names import sanitise_file_name
from .padding import padded_length
from .randomness import Rng, system_random

__all__ = [
    "CHUNK_LEN",
    "CHUNK_OVERHEAD",
    "HEADER_LEN",
    "MAX_FILES",
    "MAX_FILE_SIZE",
    "FileDecryptor",
    "FileDescriptor",
    "FileEncryptor",
    "blob_digest",
    "blob_hasher",
    "blob_length",
    "file_key",
    "sanitise_file_name",
]

HEADER_LEN = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
CHUNK_OVERHEAD = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17: tag byte + MAC
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MARKER = 0x80


def file_key(message_key: bytes, message_id: bytes, index: int) -> bytes:
    """The key of the file at ``index`` in the body of message ``message_id``.

    HKDF-SHA256, no salt, ``info = KDF_FILE_KEY || message_id || u8(index)``.
    Binding the message id and the position means a blob moved to another
    message, or to another place in the same body, does not decrypt.
    """
    if type(message_key) is not bytes or len(message_key) != KEY_LEN:
        raise UsageError("bad_length", "a per-message key is 32 bytes")
    if type(message_id) is not bytes or len(message_id) != ID_LEN:
        raise UsageError("bad_length", "a message id is 16 bytes")
    if type(index) is not int or not 0 <= index < MAX_FILES:
        raise UsageError("bad_index", f"a file index is 0 to {MAX_FILES - 1}")
    info = KDF_FILE_KEY + message_id + bytes([index])
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=None, info=info)
    return hkdf.derive(message_key)


def _chunk_count(size: int) -> int:
    return -(-padded_length(size) // CHUNK_LEN)


def blob_length(size: int) -> int:
    """The exact length of the blob of a ``size``-byte file: what the relay stores."""
    if type(size) is not int or not 0 <= size <= MAX_FILE_SIZE:
        raise UsageError("bad_size", f"a file size is 0 to {MAX_FILE_SIZE} bytes")
    return HEADER_LEN + padded_length(size) + CHUNK_OVERHEAD * _chunk_count(size)


def blob_hasher() -> hashlib._Hash:
    """An incremental blob digest: feed it the blob's bytes, then call ``digest()``."""
    return hashlib.sha256(HASH_BLOB)


def blob_digest(blob: bytes) -> bytes:
    """SHA-256(HASH_BLOB || blob), the digest a descriptor and an upload declare."""
    h = blob_hasher()
    h.update(blob)
    return h.digest()


def _stream_state(header: bytes, key: bytes) -> sodium.crypto_secretstream_xchacha20poly1305_state:
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    return state


class FileEncryptor:
    """Encrypt one file of a known size into its blob, a chunk at a time.

    The concatenation of everything :meth:`update` and :meth:`finish` return
    is the blob; the first non-empty output begins with the stream header.
    Exactly ``size`` bytes must be given: the size is in the body already, so
    a file that grew or shrank while being read must fail here, not at the
    recipient.
    """

    def __init__(self, key: bytes, size: int, *, rng: Rng = system_random) -> None:
        if type(key) is not bytes or len(key) != KEY_LEN:
            raise UsageError("bad_length", "a file key is 32 bytes")
        blob_length(size)  # the range check
        self._size = size
        self._padded = padded_length(size)
        self.header: bytes = rng(HEADER_LEN)
        self._state = _stream_state(self.header, key)
        self._hash = blob_hasher()
        self._pending = bytearray()  # file bytes not yet in a chunk: always < CHUNK_LEN
        self._taken = 0
        self._pushed = 0  # plaintext bytes (file and padding) in chunks so far
        self._header_sent = False
        self._digest: bytes | None = None

    @property
    def buffered(self) -> int:
        """Plaintext bytes held, waiting for a whole chunk (at most CHUNK_LEN - 1)."""
        return len(self._pending)

    @property
    def digest(self) -> bytes:
        """The blob digest, for the descriptor and the upload; known after :meth:`finish`."""
        if self._digest is None:
            raise UsageError("not_finished", "the blob digest is known only after finish()")
        return self._digest

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take more of the file; return the blob bytes that are ready (whole chunks)."""
        if self._digest is not None:
            raise UsageError("finished", "this file was already finished")
        view = memoryview(data).cast("B")
        if self._taken + len(view) > self._size:
            raise UsageError("too_long", f"the file is longer than the {self._size} bytes declared")
        self._taken += len(view)
        out = [self._start()]
        while view:
            if not self._pending and len(view) >= CHUNK_LEN:
                piece, view = view[:CHUNK_LEN], view[CHUNK_LEN:]
                out.append(self._push(bytes(piece), _TAG_MESSAGE))
                continue
            room = CHUNK_LEN - len(self._pending)
            self._pending += view[:room]
            view = view[room:]
            if len(self._pending) == CHUNK_LEN:
                out.append(self._push(bytes(self._pending), _TAG_MESSAGE))
                self._pending.clear()
        return b"".join(out)

    def finish(self) -> bytes:
        """Pad, push the final chunk, and return the rest of the blob.

        Padding can span many chunks (Padmé adds up to 12%); a caller that
        wants flat memory for a huge file uses :meth:`finish_chunks` instead.
        """
        return b"".join(self.finish_chunks())

    def finish_chunks(self) -> Iterator[bytes]:
        """:meth:`finish`, one chunk at a time."""
        if self._digest is not None:
            raise UsageError("finished", "this file was already finished")
        if self._taken != self._size:
            raise UsageError(
                "too_short", f"the file had {self._taken} of the {self._size} bytes declared"
            )
        return self._finish_chunks()

    def _finish_chunks(self) -> Iterator[bytes]:
        first = bytes(self._pending) + bytes([_MARKER])
        self._pending.clear()
        start = self._start()
        if start:
            yield start
        while True:
            length = min(CHUNK_LEN, self._padded - self._pushed)
            chunk = first + bytes(length - len(first)) if first else bytes(length)
            first = b""
            final = self._pushed + length == self._padded
            yield self._push(chunk, _TAG_FINAL if final else _TAG_MESSAGE)
            if final:
                break
        self._digest = self._hash.digest()

    def _start(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        self._hash.update(self.header)
        return self.header

    def _push(self, chunk: bytes, tag: int) -> bytes:
        sealed = sodium.crypto_secretstream_xchacha20poly1305_push(self._state, chunk, None, tag)
        self._pushed += len(chunk)
        self._hash.update(sealed)
        return sealed


class FileDecryptor:
    """Check and decrypt one blob against its descriptor's size and digest.

    :meth:`update` returns the file's bytes as each chunk authenticates (never
    padding, never past ``size``); :meth:`finish` says whether the blob was
    whole and exactly the one described.  Until :meth:`finish` returns, the
    output is authentic but possibly incomplete: save it under a temporary
    name.  After any error the decryptor refuses all further input.
    """

    def __init__(self, key: bytes, size: int, digest: bytes) -> None:
        if type(key) is not bytes or len(key) != KEY_LEN:
            raise DecodeError("bad_length", "a file key is 32 bytes")
        if type(digest) is not bytes or len(digest) != FINGERPRINT_LEN:
            raise DecodeError("bad_length", "a blob digest is 32 bytes")
        if type(size) is not int or not 0 <= size <= MAX_FILE_SIZE:
            raise DecodeError("out_of_range", f"a file size is 0 to {MAX_FILE_SIZE} bytes")
        self._key = key
        self._size = size
        self._expected_digest = digest
        self._padded = padded_length(size)
        self._chunks = _chunk_count(size)
        self._last_len = self._padded - (self._chunks - 1) * CHUNK_LEN
        self._state: sodium.crypto_secretstream_xchacha20poly1305_state | None = None
        self._hash = blob_hasher()
        self._buffer = bytearray()  # an incomplete header or chunk: < CHUNK_LEN + 17
        self._index = 0  # the next chunk's position
        self._offset = 0  # plaintext bytes opened so far
        self._final = False
        self._failed: ProtocolError | None = None
        self._finished = False

    @property
    def buffered(self) -> int:
        """Blob bytes held, waiting for a whole chunk (at most CHUNK_LEN + 16)."""
        return len(self._buffer)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take more of the blob; return the file bytes it authenticated."""
        self._usable()
        try:
            return self._update(memoryview(data).cast("B"))
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def finish(self) -> None:
        """Require the whole blob, ended by its final chunk, with the descriptor's digest."""
        self._usable()
        try:
            if not self._final:
                raise self._short()
            if not hmac.compare_digest(self._hash.digest(), self._expected_digest):
                raise DecodeError("digest_mismatch", "the blob is not the one the message names")
        except ProtocolError as exc:
            self._fail(exc)
            raise
        self._finished = True

    def _usable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._finished:
            raise UsageError("finished", "this blob was already finished")

    def _fail(self, exc: ProtocolError) -> None:
        self._failed = exc
        self._buffer.clear()

    def _need(self) -> int:
        if self._state is None:
            return HEADER_LEN
        plain = self._last_len if self._index == self._chunks - 1 else CHUNK_LEN
        return plain + CHUNK_OVERHEAD

    def _update(self, view: memoryview) -> bytes:
        out = []
        while view:
            if self._final:
                raise DecodeError("trailing_data", "bytes follow the blob's final chunk")
            need = self._need()
            take = need - len(self._buffer)
            piece, view = view[:take], view[take:]
            self._hash.update(piece)
            if not self._buffer and len(piece) == need:
                whole = bytes(piece)
            else:
                self._buffer += piece
                if len(self._buffer) < need:
                    break
                whole = bytes(self._buffer)
                self._buffer.clear()
            if self._state is None:
                self._state = _stream_state(whole, self._key)
            else:
                out.append(self._open(whole))
        return b"".join(out)

    def _pull(self, chunk: bytes) -> tuple[bytes, int]:
        assert self._state is not None
        try:
            return sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, chunk, None)
        except CryptoError:
            raise AuthenticationFailure(
                "chunk_failed", f"chunk {self._index} of the blob does not decrypt"
            ) from None

    def _open(self, chunk: bytes) -> bytes:
        plain, tag = self._pull(chunk)
        last = self._index == self._chunks - 1
        if tag not in (_TAG_MESSAGE, _TAG_FINAL):
            raise DecodeError("bad_tag", f"chunk {self._index} has tag {tag}")
        if last and tag != _TAG_FINAL:
            raise DecodeError("too_long", "the blob goes on past the file's size")
        if not last and tag == _TAG_FINAL:
            raise DecodeError("too_short", "the blob ends before the file's size")
        start = self._offset
        self._offset += len(plain)
        self._index += 1
        self._final = last
        file_part = max(0, min(len(plain), self._size - start))
        padding = plain[file_part:]
        if padding:
            marker = start + file_part == self._size
            zeros_from = 1 if marker else 0
            if (marker and padding[0] != _MARKER) or padding[zeros_from:] != bytes(
                len(padding) - zeros_from
            ):
                raise DecodeError("bad_padding", "the file's padding is malformed")
        return plain[:file_part]

    def _short(self) -> ProtocolError:
        """Why a blob without its final chunk ended: cut short, or complete but shorter.

        A held partial chunk that opens as a final chunk means the stream is
        whole and the descriptor's size too large; libsodium leaves the state
        unchanged when a chunk fails, so the attempt costs nothing.
        """
        if self._state is not None and len(self._buffer) > CHUNK_OVERHEAD:
            try:
                _, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                    self._state, bytes(self._buffer), None
                )
            except CryptoError:
                tag = None
            if tag == _TAG_FINAL:
                return DecodeError("too_short", "the blob ends before the file's size")
        return DecodeError("truncated", "the blob is cut short")
