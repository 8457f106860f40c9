"""The message body: what only the recipients can read.

The body is a canonical msgpack map, padded so that its length reveals only
a size bucket, then encrypted with XChaCha20-Poly1305 under the per-message
key with the signed header bytes as associated data.  Anything a person
wrote (the text, and the name, size and media type of each attached file)
lives here and nowhere else.  ``files`` is always present, possibly empty,
so a body's shape does not depend on whether it carries attachments.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings as sodium
from nacl.exceptions import CryptoError

from . import wire
from .descriptor import FileDescriptor, decode_descriptors
from .domains import KEY_LEN, MAX_FILES, NONCE_LEN, TAG_LEN
from .errors import AuthenticationFailure, DecodeError, UsageError
from .padding import padded_length
from .randomness import Rng, system_random
from .schema import Field, check_map

__all__ = [
    "MAX_BODY_LEN",
    "MAX_TEXT_LEN",
    "Body",
    "FileDescriptor",
    "decrypt_body",
    "encrypt_body",
    "pad",
    "padded_length",
    "unpad",
]

MAX_TEXT_LEN = 64 * 1024
# Padded plaintext ceiling; bounds every envelope.  The longest text with
# MAX_FILES descriptors of the longest names and media types is under 72 KiB
# and pads to 73728 bytes, so the ceiling did not move for attachments.
MAX_BODY_LEN = 96 * 1024
_BODY_FIELDS = (
    Field("text", "str", max_len=MAX_TEXT_LEN),
    Field("files", "list", max_len=MAX_FILES),  # each item checked by decode_descriptors
)
# Depth 3: the body map, its files array, each descriptor map (5 entries).
_BODY_LIMITS = wire.Limits(
    max_size=MAX_BODY_LEN, max_str=MAX_TEXT_LEN, max_array=MAX_FILES, max_map=5, max_depth=3
)
_SMALL_BUCKET = 256


@dataclass(frozen=True, slots=True)
class Body:
    """The readable content of a message: its text and the files attached to it.

    A file's position in ``files`` is part of its key (``file_key``'s
    ``index``), so the order is meaningful and kept exactly.
    """

    text: str
    files: tuple[FileDescriptor, ...] = ()

    def encode(self) -> bytes:
        if len(self.text.encode("utf-8")) > MAX_TEXT_LEN:
            raise UsageError("too_long", f"a message holds at most {MAX_TEXT_LEN} bytes of text")
        if len(self.files) > MAX_FILES:
            raise UsageError("too_many_files", f"a message carries at most {MAX_FILES} files")
        if len({d.blob_id for d in self.files}) != len(self.files):
            raise UsageError("duplicate_blob", "each file of a message needs its own blob id")
        return wire.encode({"text": self.text, "files": [d.to_wire() for d in self.files]})

    @classmethod
    def decode(cls, data: bytes) -> Body:
        fields = check_map(wire.decode(data, limits=_BODY_LIMITS), _BODY_FIELDS, "body")
        return cls(text=fields["text"], files=decode_descriptors(fields["files"]))


def pad(content: bytes) -> bytes:
    """ISO/IEC 7816-4 padding: 0x80, then zero bytes up to :func:`padded_length`."""
    return content + b"\x80" + bytes(padded_length(len(content)) - len(content) - 1)


def unpad(padded: bytes) -> bytes:
    """Strip the padding, refusing any form :func:`pad` would not have produced."""
    content = padded.rstrip(b"\x00")
    if not content or content[-1] != 0x80:
        raise DecodeError("bad_padding", "the body padding is malformed")
    content = content[:-1]
    if padded_length(len(content)) != len(padded):
        raise DecodeError("bad_padding", "the body is not padded to its bucket")
    return content


def encrypt_body(
    body: Body, message_key: bytes, header_bytes: bytes, rng: Rng = system_random
) -> tuple[bytes, bytes]:
    """Encrypt ``body``; returns ``(nonce, ciphertext)``."""
    if type(message_key) is not bytes or len(message_key) != KEY_LEN:
        raise UsageError("bad_length", "a per-message key is 32 bytes")
    plaintext = pad(body.encode())
    nonce = rng(NONCE_LEN)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, header_bytes, nonce, message_key
    )
    return nonce, ciphertext


def decrypt_body(nonce: bytes, ciphertext: bytes, message_key: bytes, header_bytes: bytes) -> Body:
    """Decrypt and decode a body, or raise a :class:`ProtocolError`."""
    # Types first: a None or str from a caller's parsing must not surface as
    # a TypeError from len() or from libsodium.
    if not (
        type(nonce) is bytes
        and type(ciphertext) is bytes
        and type(message_key) is bytes
        and type(header_bytes) is bytes
    ):
        for name, value in (
            ("nonce", nonce),
            ("ciphertext", ciphertext),
            ("message_key", message_key),
            ("header_bytes", header_bytes),
        ):
            if type(value) is not bytes:
                raise DecodeError("bad_type", f"the body {name} must be a byte string")
    if len(message_key) != KEY_LEN:
        raise DecodeError("bad_length", "a per-message key is 32 bytes")
    if len(nonce) != NONCE_LEN:
        raise DecodeError("bad_length", "a body nonce is 24 bytes")
    if len(ciphertext) < TAG_LEN + _SMALL_BUCKET or len(ciphertext) > MAX_BODY_LEN + TAG_LEN:
        raise DecodeError("bad_length", "the body ciphertext has an impossible length")
    try:
        plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, header_bytes, nonce, message_key
        )
    except CryptoError:
        raise AuthenticationFailure("aead_failed", "the body does not decrypt") from None
    return Body.decode(unpad(plaintext))
