"""Message bodies: padding buckets, and authenticated encryption under the header."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest

from e2e_recall import Body, SeededRandom, wire
from e2e_recall.body import (
    MAX_BODY_LEN,
    MAX_TEXT_LEN,
    decrypt_body,
    encrypt_body,
    pad,
    padded_length,
    unpad,
)
from e2e_recall.errors import AuthenticationFailure, DecodeError, UsageError

KEY = bytes(range(32))
HEADER = b"\x81\xa7version\x01"  # any bytes: the AAD is opaque to body.py


def padme(length: int) -> int:
    """Reference Padme (Nikitin et al. 2019), written from the paper."""
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


@pytest.mark.parametrize(
    ("content", "padded"),
    [
        (0, 256),
        (1, 256),
        (255, 256),
        (256, 512),
        (511, 512),
        (512, 768),
        (4000, 4096),
        (8190, 8192),
        (8191, 8192),
        (8192, 8704),  # first Padme size
        (8703, 8704),
        (8704, 9216),
        (10_000, 10_240),
        (65_546, 67_584),
    ],
)
def test_padded_length_examples(content: int, padded: int) -> None:
    assert padded_length(content) == padded


def test_small_buckets_are_multiples_of_256() -> None:
    for n in range(0, 8192):
        size = padded_length(n)
        assert size % 256 == 0
        assert n + 1 <= size < n + 1 + 256
        assert size <= 8192


def test_padme_above_8_kib() -> None:
    for n in [*range(8192, 20_000, 7), 2**17, 2**20 - 1, 10**6]:
        size = padded_length(n)
        assert size == padme(n + 1)
        assert n + 1 <= size
        assert size - (n + 1) <= 0.12 * (n + 1)


def test_padded_length_is_monotonic() -> None:
    sizes = [padded_length(n) for n in range(0, 70_000, 3)]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"a",
        b"\x80",
        b"ab\x00",
        b"ab\x80",
        b"\x80\x00\x80",
        b"x" * 255,
        b"y" * 256,
        b"z" * 9000,
    ],
)
def test_pad_unpad_round_trip(content: bytes) -> None:
    padded = pad(content)
    assert len(padded) == padded_length(len(content))
    assert padded[len(content)] == 0x80
    assert set(padded[len(content) + 1 :]) <= {0}
    assert unpad(padded) == content


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(256), id="all_zero"),
        pytest.param(b"abc\x01" + bytes(252), id="no_marker"),
        pytest.param(b"abc" + bytes(253), id="no_marker_zero_tail"),
        pytest.param(b"abc\x80\x01" + bytes(251), id="junk_after_marker"),
        pytest.param(b"abc\x80" + bytes(296), id="not_a_bucket"),
        pytest.param(pad(b"abc") + bytes(256), id="one_bucket_too_many"),
        pytest.param(pad(b"abc")[:-1], id="one_byte_short"),
        pytest.param(b"abc\x80", id="unpadded"),
        pytest.param(b"\xff" * 256, id="all_ones"),
    ],
)
def test_malformed_padding_is_refused(padded: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        unpad(padded)
    assert info.value.reason == "bad_padding"


# -- encryption ----------------------------------------------------------------


def test_encrypt_decrypt_round_trip() -> None:
    body = Body("hello, world")
    nonce, ciphertext = encrypt_body(body, KEY, HEADER, SeededRandom(b"n"))
    assert len(nonce) == 24
    assert len(ciphertext) == 256 + 16
    assert decrypt_body(nonce, ciphertext, KEY, HEADER) == body
    assert b"hello" not in ciphertext


def test_encryption_is_reproducible_with_a_seeded_source() -> None:
    a = encrypt_body(Body("x"), KEY, HEADER, SeededRandom(b"s"))
    b = encrypt_body(Body("x"), KEY, HEADER, SeededRandom(b"s"))
    c = encrypt_body(Body("x"), KEY, HEADER, SeededRandom(b"t"))
    assert a == b
    assert a[0] != c[0]


def test_ciphertext_length_only_reveals_the_bucket() -> None:
    lengths = {len(encrypt_body(Body("x" * n), KEY, HEADER)[1]) for n in (0, 1, 100, 240)}
    assert lengths == {256 + 16}
    assert len(encrypt_body(Body("x" * 300), KEY, HEADER)[1]) == 512 + 16


def test_ciphertext_is_xchacha20_poly1305_of_the_padded_body() -> None:
    body = Body("independent check")
    nonce, ciphertext = encrypt_body(body, KEY, HEADER, SeededRandom(b"i"))
    plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, HEADER, nonce, KEY)
    assert plain == pad(wire.encode({"text": "independent check", "files": []}))


@pytest.fixture(scope="module")
def sealed() -> tuple[bytes, bytes]:
    return encrypt_body(Body("secret"), KEY, HEADER, SeededRandom(b"sealed"))


@pytest.mark.parametrize("position", [0, 1, 100, 255, 256, 271])
def test_tampered_ciphertext(sealed: tuple[bytes, bytes], position: int) -> None:
    nonce, ciphertext = sealed
    bad = bytearray(ciphertext)
    bad[position] ^= 0x01
    with pytest.raises(AuthenticationFailure):
        decrypt_body(nonce, bytes(bad), KEY, HEADER)


@pytest.mark.parametrize("position", [0, 12, 23])
def test_tampered_nonce(sealed: tuple[bytes, bytes], position: int) -> None:
    nonce, ciphertext = sealed
    bad = bytearray(nonce)
    bad[position] ^= 0x80
    with pytest.raises(AuthenticationFailure):
        decrypt_body(bytes(bad), ciphertext, KEY, HEADER)


@pytest.mark.parametrize("aad", [b"", HEADER[:-1], HEADER + b"\x00", b"\x00" + HEADER[1:]])
def test_tampered_associated_data(sealed: tuple[bytes, bytes], aad: bytes) -> None:
    nonce, ciphertext = sealed
    with pytest.raises(AuthenticationFailure):
        decrypt_body(nonce, ciphertext, KEY, aad)


def test_wrong_key(sealed: tuple[bytes, bytes]) -> None:
    nonce, ciphertext = sealed
    with pytest.raises(AuthenticationFailure):
        decrypt_body(nonce, ciphertext, bytes(32), HEADER)
    with pytest.raises(AuthenticationFailure):
        decrypt_body(nonce, ciphertext, KEY[::-1], HEADER)


def test_swapped_ciphertexts_fail(sealed: tuple[bytes, bytes]) -> None:
    nonce, _ = sealed
    _, other = encrypt_body(Body("secret"), KEY, HEADER, SeededRandom(b"other"))
    with pytest.raises(AuthenticationFailure):
        decrypt_body(nonce, other, KEY, HEADER)


@pytest.mark.parametrize(
    ("nonce_len", "ct_len", "key_len"),
    [
        (23, 272, 32),
        (25, 272, 32),
        (24, 271, 32),
        (24, 0, 32),
        (24, MAX_BODY_LEN + 17, 32),
        (24, 272, 31),
        (24, 272, 33),
    ],
)
def test_impossible_lengths_are_decode_errors(nonce_len: int, ct_len: int, key_len: int) -> None:
    with pytest.raises(DecodeError) as info:
        decrypt_body(bytes(nonce_len), bytes(ct_len), bytes(key_len), HEADER)
    assert info.value.reason == "bad_length"


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("wrong", [None, "24 characters of text..", bytearray(24), 24])
def test_arguments_of_the_wrong_type_are_decode_errors(position: int, wrong: object) -> None:
    """Not a TypeError from len() or libsodium: callers parse these from the wire."""
    nonce, ciphertext = encrypt_body(Body("x"), KEY, HEADER, SeededRandom(b"types"))
    args: list[object] = [nonce, ciphertext, KEY, HEADER]
    args[position] = wrong
    with pytest.raises(DecodeError) as info:
        decrypt_body(*args)  # type: ignore[arg-type]
    assert info.value.reason == "bad_type"


def test_bad_key_when_encrypting_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encrypt_body(Body("x"), bytes(31), HEADER)


def _seal_plaintext(plaintext: bytes) -> tuple[bytes, bytes]:
    nonce = bytes(24)
    return nonce, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, HEADER, nonce, KEY)


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(bytes(256), id="bad_padding"),
        pytest.param(pad(b"\xc1"), id="not_msgpack"),
        pytest.param(pad(wire.encode({"text": "a", "files": [], "extra": 1})), id="extra_field"),
        pytest.param(pad(wire.encode({"txt": "a", "files": []})), id="wrong_field"),
        pytest.param(pad(wire.encode({"text": b"a", "files": []})), id="bin_text"),
        pytest.param(pad(wire.encode({"text": "a"})), id="no_files"),
        pytest.param(pad(wire.encode({"text": "a", "files": {}})), id="files_not_a_list"),
        pytest.param(pad(wire.encode(["a"])), id="not_a_map"),
        pytest.param(pad(b"\x82\xa5files\x90\xa4text\xd9\x01a"), id="non_canonical"),
        pytest.param(pad(wire.encode({"text": "a", "files": []}) + b"\x00"), id="trailing"),
    ],
)
def test_authentic_but_malformed_plaintext_is_a_decode_error(plaintext: bytes) -> None:
    nonce, ciphertext = _seal_plaintext(plaintext)
    with pytest.raises(DecodeError):
        decrypt_body(nonce, ciphertext, KEY, HEADER)


# -- the text ----------------------------------------------------------------


def test_text_too_long_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        Body("x" * (MAX_TEXT_LEN + 1)).encode()
    assert info.value.reason == "too_long"
    with pytest.raises(UsageError):
        encrypt_body(Body("x" * (MAX_TEXT_LEN + 1)), KEY, HEADER)


def test_text_limit_counts_utf8_bytes() -> None:
    text = "é" * (MAX_TEXT_LEN // 2 + 1)  # fewer characters than the limit, more bytes
    assert len(text) < MAX_TEXT_LEN
    with pytest.raises(UsageError):
        Body(text).encode()


@pytest.mark.parametrize("text", ["x" * MAX_TEXT_LEN, "é" * (MAX_TEXT_LEN // 2)])
def test_longest_text_round_trips(text: str) -> None:
    nonce, ciphertext = encrypt_body(Body(text), KEY, HEADER, SeededRandom(b"long"))
    assert len(ciphertext) <= MAX_BODY_LEN + 16
    assert decrypt_body(nonce, ciphertext, KEY, HEADER).text == text


@pytest.mark.parametrize("text", ["", "a\x00", "emoji \U0001f600", "\u202e rtl", "line\nbreak"])
def test_body_encode_decode(text: str) -> None:
    assert Body.decode(Body(text).encode()) == Body(text)
