"""Attachments: file keys, blob layout, streamed encryption and every way a blob can be wrong."""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings as sodium
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import CryptoError

from e2e_recall import (
    CHUNK_LEN,
    MAX_FILE_SIZE,
    FileDecryptor,
    FileEncryptor,
    SeededRandom,
    blob_digest,
    blob_hasher,
    blob_length,
    file_key,
)
from e2e_recall.attachment import CHUNK_OVERHEAD, HEADER_LEN
from e2e_recall.domains import HASH_BLOB, KDF_FILE_KEY
from e2e_recall.errors import AuthenticationFailure, DecodeError, ProtocolError, UsageError
from e2e_recall.padding import padded_length

MESSAGE_KEY = bytes(range(32))
MESSAGE_ID = bytes(range(100, 116))
KEY = file_key(MESSAGE_KEY, MESSAGE_ID, 0)
FULL = CHUNK_LEN + CHUNK_OVERHEAD
PUSH = sodium.crypto_secretstream_xchacha20poly1305_push
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def data(size: int, seed: bytes = b"file") -> bytes:
    return SeededRandom(seed)(size)


def encrypt(content: bytes, key: bytes = KEY, seed: bytes = b"header") -> tuple[bytes, bytes]:
    encryptor = FileEncryptor(key, len(content), rng=SeededRandom(seed))
    blob = encryptor.update(content) + encryptor.finish()
    return blob, encryptor.digest


def decrypt(blob: bytes, size: int, digest: bytes, key: bytes = KEY, step: int = 0) -> bytes:
    decryptor = FileDecryptor(key, size, digest)
    step = step or len(blob) or 1
    out = b"".join(decryptor.update(blob[at : at + step]) for at in range(0, len(blob), step))
    decryptor.finish()
    return out


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    rest = blob[HEADER_LEN:]
    return blob[:HEADER_LEN], [rest[at : at + FULL] for at in range(0, len(rest), FULL)]


# -- keys ---------------------------------------------------------------------------


def test_file_key_is_hkdf_sha256_over_the_stated_info() -> None:
    info = KDF_FILE_KEY + MESSAGE_ID + b"\x03"
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=info).derive(
        MESSAGE_KEY
    )
    assert file_key(MESSAGE_KEY, MESSAGE_ID, 3) == expected
    # RFC 5869 by hand: extract with a zero salt, expand one block.
    prk = hmac.new(bytes(32), MESSAGE_KEY, hashlib.sha256).digest()
    assert expected == hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_file_keys_differ_by_message_and_position() -> None:
    keys = {file_key(MESSAGE_KEY, MESSAGE_ID, index) for index in range(16)}
    keys.add(file_key(MESSAGE_KEY, bytes(16), 0))
    keys.add(file_key(bytes(32), MESSAGE_ID, 0))
    assert len(keys) == 18


@pytest.mark.parametrize(
    ("key", "message_id", "index"),
    [
        (bytes(31), MESSAGE_ID, 0),
        (MESSAGE_KEY, bytes(15), 0),
        (MESSAGE_KEY, MESSAGE_ID, 16),
        (MESSAGE_KEY, MESSAGE_ID, -1),
        ("k" * 32, MESSAGE_ID, 0),
    ],
)
def test_file_key_refuses_bad_arguments(key: bytes, message_id: bytes, index: int) -> None:
    with pytest.raises(UsageError):
        file_key(key, message_id, index)


# -- layout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "length"),
    [
        (0, 297),
        (1, 297),
        (255, 297),
        (256, 553),
        (65535, 65577),
        (65536, 67642),
        (65537, 67642),
        (2**30, 1107583512),
    ],
)
def test_blob_length_examples_of_the_spec(size: int, length: int) -> None:
    assert blob_length(size) == length


def test_blob_length_limits() -> None:
    assert blob_length(MAX_FILE_SIZE) > MAX_FILE_SIZE
    for bad in (-1, MAX_FILE_SIZE + 1):
        with pytest.raises(UsageError):
            blob_length(bad)


def test_digest_is_sha256_of_label_and_blob_and_incremental() -> None:
    blob, digest = encrypt(data(1000))
    assert digest == hashlib.sha256(HASH_BLOB + blob).digest() == blob_digest(blob)
    h = blob_hasher()
    for at in range(0, len(blob), 7):
        h.update(blob[at : at + 7])
    assert h.digest() == digest


def test_stream_state_from_init_pull_is_what_init_push_makes() -> None:
    """The encryptor's header comes from rng; libsodium's own init_push gives the same blob."""
    content = data(CHUNK_LEN + 5)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, KEY)
    stream = content + b"\x80" + bytes(padded_length(len(content)) - len(content) - 1)
    expected = header + PUSH(state, stream[:CHUNK_LEN], None, TAG_MESSAGE)
    expected += PUSH(state, stream[CHUNK_LEN:], None, TAG_FINAL)
    encryptor = FileEncryptor(KEY, len(content), rng=lambda n: header)
    assert encryptor.update(content) + encryptor.finish() == expected


def test_blob_layout_is_header_then_tagged_chunks_over_the_padded_file() -> None:
    content = data(2 * CHUNK_LEN + 10)
    blob, _ = encrypt(content)
    header, parts = chunks(blob)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, KEY)
    opened = [sodium.crypto_secretstream_xchacha20poly1305_pull(state, c, None) for c in parts]
    assert [tag for _, tag in opened] == [TAG_MESSAGE, TAG_MESSAGE, TAG_FINAL]
    stream = b"".join(plain for plain, _ in opened)
    assert stream == content + b"\x80" + bytes(padded_length(len(content)) - len(content) - 1)


# -- round trips ---------------------------------------------------------------------

SIZES = [0, 1, 255, 256, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN, 5 * 2**20 + 3]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    content = data(size)
    blob, digest = encrypt(content)
    assert len(blob) == blob_length(size)
    assert decrypt(blob, size, digest) == content


@pytest.mark.parametrize("step", [1, 17, 4096, CHUNK_LEN, FULL, FULL + 1, 65553 * 2 + 5])
@pytest.mark.parametrize("size", [0, CHUNK_LEN, 2 * CHUNK_LEN + 7])
def test_decryptor_takes_any_slicing(size: int, step: int) -> None:
    content = data(size)
    blob, digest = encrypt(content)
    assert decrypt(blob, size, digest, step=step) == content


@pytest.mark.parametrize("step", [1, 17, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 3, 10**6])
def test_encryptor_takes_any_slicing(step: int) -> None:
    content = data(3 * CHUNK_LEN + 11)
    whole, _ = encrypt(content)
    encryptor = FileEncryptor(KEY, len(content), rng=SeededRandom(b"header"))
    parts = [encryptor.update(content[at : at + step]) for at in range(0, len(content), step)]
    assert b"".join(parts) + encryptor.finish() == whole
    assert all(len(part) % FULL in (0, HEADER_LEN) for part in parts)  # whole chunks only


def test_finish_chunks_yields_one_chunk_at_a_time() -> None:
    size = 2**20  # padded to 1 MiB + 64 KiB: one chunk of padding after the file
    content = data(size)
    encryptor = FileEncryptor(KEY, size, rng=SeededRandom(b"header"))
    head = encryptor.update(content)
    tail = list(encryptor.finish_chunks())
    assert all(len(part) <= FULL for part in tail)
    assert decrypt(head + b"".join(tail), size, encryptor.digest) == content


@settings(max_examples=60, deadline=None)
@given(
    content=st.binary(max_size=3 * CHUNK_LEN),
    steps=st.lists(st.integers(min_value=1, max_value=2 * FULL), min_size=1, max_size=8),
)
def test_property_round_trip_with_any_slicing(content: bytes, steps: list[int]) -> None:
    blob, digest = encrypt(content)
    decryptor = FileDecryptor(KEY, len(content), digest)
    out, at, turn = [], 0, 0
    while at < len(blob):
        step = steps[turn % len(steps)]
        out.append(decryptor.update(blob[at : at + step]))
        at, turn = at + step, turn + 1
        assert decryptor.buffered <= FULL
    decryptor.finish()
    assert b"".join(out) == content


@settings(max_examples=80, deadline=None)
@given(size=st.integers(min_value=0, max_value=CHUNK_LEN + 300), where=st.data())
def test_property_every_bit_flip_is_refused(size: int, where: st.DataObject) -> None:
    blob, _ = encrypt(data(size))
    index = where.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    bit = where.draw(st.integers(min_value=0, max_value=7))
    changed = bytearray(blob)
    changed[index] ^= 1 << bit
    with pytest.raises(AuthenticationFailure):
        decrypt(bytes(changed), size, blob_digest(bytes(changed)))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=2 * CHUNK_LEN + 300), where=st.data())
def test_property_every_truncation_is_refused(size: int, where: st.DataObject) -> None:
    blob, _ = encrypt(data(size))
    cut = where.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(DecodeError) as caught:
        decrypt(blob[:cut], size, blob_digest(blob[:cut]))
    assert caught.value.reason == "truncated"


# -- tampering -----------------------------------------------------------------------


def _three() -> tuple[bytes, bytes, list[bytes], int]:
    content = data(2 * CHUNK_LEN + 1000)
    blob, _ = encrypt(content)
    header, parts = chunks(blob)
    return content, header, parts, len(content)


def _refused(
    blob: bytes,
    size: int,
    error: type[ProtocolError],
    reason: str | None = None,
    key: bytes = KEY,
    digest: bytes | None = None,
) -> bytes:
    """Feed chunk by chunk; return what came out before the refusal."""
    decryptor = FileDecryptor(key, size, blob_digest(blob) if digest is None else digest)
    out = bytearray()

    def feed() -> None:
        for at in range(0, len(blob), 1000):
            out.extend(decryptor.update(blob[at : at + 1000]))
        decryptor.finish()

    with pytest.raises(error) as caught:
        feed()
    if reason is not None:
        assert caught.value.reason == reason
    with pytest.raises(type(caught.value)):  # stays failed, like h11's ERROR state
        decryptor.update(b"")
    return bytes(out)


def test_chunk_reordering_duplication_and_substitution_are_refused() -> None:
    content, header, (c0, c1, c2), size = _three()
    other, _ = encrypt(content, key=file_key(MESSAGE_KEY, MESSAGE_ID, 1))
    _, (_, twin, _) = chunks(other)
    alien, _ = encrypt(content, key=file_key(bytes(32), MESSAGE_ID, 0))
    _, (_, foreign, _) = chunks(alien)
    for blob in (
        header + c1 + c0 + c2,
        header + c0 + c0 + c2,
        header + c0 + c0 + c1 + c2,
        header + c0 + twin + c2,
        header + c0 + foreign + c2,
        header + c0 + c2 + c1,
    ):
        out = _refused(blob, size, AuthenticationFailure)
        assert content.startswith(out)  # only authenticated chunks came out
        assert len(out) <= CHUNK_LEN


def test_truncation_at_chunk_boundaries_and_dropped_final_chunk() -> None:
    content, header, (c0, c1, _), size = _three()
    for blob in (b"", header, header[:23], header + c0, header + c0 + c1):
        out = _refused(blob, size, DecodeError, "truncated")
        assert content.startswith(out)


def test_wrong_key_or_index_is_an_authentication_failure() -> None:
    blob, _ = encrypt(data(100))
    _refused(blob, 100, AuthenticationFailure, key=file_key(MESSAGE_KEY, MESSAGE_ID, 1))
    _refused(blob, 100, AuthenticationFailure, key=file_key(MESSAGE_KEY, bytes(16), 0))


def test_trailing_bytes_after_final() -> None:
    blob, _ = encrypt(data(100))
    _refused(blob + b"\x00", 100, DecodeError, "trailing_data")
    _refused(blob + blob[HEADER_LEN:], 100, DecodeError, "trailing_data")


def test_digest_mismatch_is_found_after_a_whole_authentic_blob() -> None:
    blob, _ = encrypt(data(100))
    other, _ = encrypt(data(100), seed=b"another header")
    out = _refused(blob, 100, DecodeError, "digest_mismatch", digest=blob_digest(other))
    assert out == data(100)  # authentic, but never renamed into place: finish() refused


@pytest.mark.parametrize(
    ("real", "claimed", "error", "reason"),
    [
        (100, 200, DecodeError, "bad_padding"),
        (100, 50, DecodeError, "bad_padding"),
        (100, 300, DecodeError, "too_short"),
        (100, CHUNK_LEN + 1, DecodeError, "too_short"),
        (CHUNK_LEN - 1, CHUNK_LEN, DecodeError, "too_short"),
        (2 * CHUNK_LEN + 1000, CHUNK_LEN - 1, DecodeError, "too_long"),
        (2 * CHUNK_LEN + 1000, 60000, AuthenticationFailure, "chunk_failed"),
        (100, 0, DecodeError, "bad_padding"),
    ],
)
def test_a_lying_size_is_refused_both_ways(
    real: int, claimed: int, error: type[ProtocolError], reason: str
) -> None:
    blob, _ = encrypt(data(real))
    _refused(blob, claimed, error, reason)


def _sealed(parts: list[tuple[bytes, int]]) -> bytes:
    header = SeededRandom(b"hostile")(HEADER_LEN)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, KEY)
    return header + b"".join(PUSH(state, m, None, t) for m, t in parts)


GOOD = data(100)
PADDED = GOOD + b"\x80" + bytes(155)


@pytest.mark.parametrize(
    ("parts", "size", "reason"),
    [
        ([(GOOD + bytes(156), TAG_FINAL)], 100, "bad_padding"),
        ([(PADDED[:-1] + b"\x01", TAG_FINAL)], 100, "bad_padding"),
        ([(GOOD + b"\x00\x80" + bytes(154), TAG_FINAL)], 100, "bad_padding"),
        ([(PADDED, TAG_MESSAGE)], 100, "too_long"),
        ([(PADDED, TAG_MESSAGE), (b"", TAG_FINAL)], 100, "too_long"),
        ([(PADDED, sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH)], 100, "bad_tag"),
        ([(PADDED, sodium.crypto_secretstream_xchacha20poly1305_TAG_REKEY)], 100, "bad_tag"),
        (
            [(data(CHUNK_LEN), TAG_FINAL), (b"\x80" + bytes(2047), TAG_FINAL)],
            CHUNK_LEN,
            "too_short",
        ),
    ],
)
def test_authentic_but_malformed_streams(
    parts: list[tuple[bytes, int]], size: int, reason: str
) -> None:
    out = _refused(_sealed(parts), size, DecodeError, reason)
    assert b"\x80" not in out[size:]  # never padding
    assert len(out) <= size


def test_padding_error_in_a_later_chunk_returns_only_earlier_chunks() -> None:
    first = data(CHUNK_LEN)
    blob = _sealed([(first, TAG_MESSAGE), (b"\x80" + bytes(2046) + b"\x01", TAG_FINAL)])
    assert _refused(blob, CHUNK_LEN, DecodeError, "bad_padding") == first


def test_failed_pull_leaves_libsodium_state_unchanged() -> None:
    """What the decryptor's last-chance check (too_short versus truncated) relies on."""
    blob, _ = encrypt(data(CHUNK_LEN + 1))
    header, (c0, c1) = chunks(blob)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, KEY)
    with pytest.raises(CryptoError):
        sodium.crypto_secretstream_xchacha20poly1305_pull(state, c1, None)
    assert sodium.crypto_secretstream_xchacha20poly1305_pull(state, c0, None)[1] == TAG_MESSAGE


# -- misuse and memory ---------------------------------------------------------------


def test_encryptor_refuses_more_or_fewer_bytes_than_declared() -> None:
    encryptor = FileEncryptor(KEY, 10)
    with pytest.raises(UsageError):
        encryptor.update(bytes(11))
    encryptor.update(bytes(9))
    with pytest.raises(UsageError):
        encryptor.finish()
    with pytest.raises(UsageError):
        _ = encryptor.digest
    encryptor.update(b"x")
    encryptor.finish()
    with pytest.raises(UsageError):
        encryptor.update(b"")
    with pytest.raises(UsageError):
        FileEncryptor(bytes(31), 1)
    with pytest.raises(UsageError):
        FileEncryptor(KEY, MAX_FILE_SIZE + 1)


def test_decryptor_refuses_bad_descriptor_values_and_reuse() -> None:
    for key, size, digest in (
        (bytes(31), 1, bytes(32)),
        (KEY, 1, bytes(31)),
        (KEY, MAX_FILE_SIZE + 1, bytes(32)),
        (KEY, -1, bytes(32)),
    ):
        with pytest.raises(DecodeError):
            FileDecryptor(key, size, digest)
    blob, digest = encrypt(b"")
    decryptor = FileDecryptor(KEY, 0, digest)
    assert decryptor.update(blob) == b""
    decryptor.finish()
    with pytest.raises(UsageError):
        decryptor.finish()


def test_buffers_never_exceed_a_chunk() -> None:
    size = 8 * CHUNK_LEN + 12345
    content = data(size)
    encryptor = FileEncryptor(KEY, size, rng=SeededRandom(b"header"))
    blob = bytearray()
    for at in range(0, size, 40_000):
        blob += encryptor.update(content[at : at + 40_000])
        assert encryptor.buffered < CHUNK_LEN
    blob += encryptor.finish()
    decryptor = FileDecryptor(KEY, size, encryptor.digest)
    produced = 0
    for at in range(0, len(blob), 50_001):
        produced += len(decryptor.update(bytes(blob[at : at + 50_001])))
        assert decryptor.buffered < FULL
    decryptor.finish()
    assert produced == size
    # One big update is processed in place: only the tail shorter than a chunk is held.
    decryptor = FileDecryptor(KEY, size, encryptor.digest)
    decryptor.update(bytes(blob[: len(blob) - 100]))
    assert decryptor.buffered < FULL
