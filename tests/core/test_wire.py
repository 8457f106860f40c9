"""The canonical msgpack codec: exact encodings, and every way decode refuses."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from e2e_recall import wire
from e2e_recall.errors import DecodeError, ProtocolError, UsageError


def refused(data: bytes, limits: wire.Limits = wire.DEFAULT_LIMITS) -> DecodeError:
    """Decode ``data`` expecting a DecodeError (and nothing rawer); return it."""
    with pytest.raises(ProtocolError) as info:
        wire.decode(data, limits=limits)
    assert type(info.value) is DecodeError, repr(info.value)
    return info.value


def nested_arrays(levels: int) -> bytes:
    """``levels`` arrays, each holding the next; the innermost is empty."""
    return b"\x91" * (levels - 1) + b"\x90"


def nested_maps(levels: int) -> bytes:
    return b"\x81\xa1k" * (levels - 1) + b"\x80"


# -- canonical round trips ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (None, b"\xc0"),
        (False, b"\xc2"),
        (True, b"\xc3"),
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (255, b"\xcc\xff"),
        (256, b"\xcd\x01\x00"),
        (65536, b"\xce\x00\x01\x00\x00"),
        (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
        (2**64 - 1, b"\xcf" + b"\xff" * 8),
        (-1, b"\xff"),
        (-32, b"\xe0"),
        (-33, b"\xd0\xdf"),
        (-129, b"\xd1\xff\x7f"),
        (-(2**63), b"\xd3\x80" + bytes(7)),
        ("", b"\xa0"),
        ("abc", b"\xa3abc"),
        ("x" * 32, b"\xd9\x20" + b"x" * 32),
        ("é", b"\xa2\xc3\xa9"),
        (b"", b"\xc4\x00"),
        (b"\x00\xff", b"\xc4\x02\x00\xff"),
        ([], b"\x90"),
        ([1, [2]], b"\x92\x01\x91\x02"),
        ({}, b"\x80"),
        ({"b": 1, "a": 2}, b"\x82\xa1a\x02\xa1b\x01"),
        ({"z": {"y": 1, "x": 2}}, b"\x81\xa1z\x82\xa1x\x02\xa1y\x01"),
        ({"é": 1, "z": 2, "A": 3}, b"\x83\xa1A\x03\xa1z\x02\xa2\xc3\xa9\x01"),
    ],
)
def test_canonical_encoding_and_round_trip(value: Any, encoding: bytes) -> None:
    assert wire.encode(value) == encoding
    decoded = wire.decode(encoding)
    assert decoded == value
    assert type(decoded) is type(value)
    assert wire.encode(decoded) == encoding


def test_map_key_order_does_not_change_the_encoding() -> None:
    a = {"one": 1, "two": 2, "three": [3, {"c": 0, "b": 1, "a": 2}]}
    b = {"three": [3, {"a": 2, "b": 1, "c": 0}], "two": 2, "one": 1}
    assert wire.encode(a) == wire.encode(b)


def test_tuples_encode_as_arrays_and_decode_as_lists() -> None:
    assert wire.encode((1, 2)) == wire.encode([1, 2])
    assert wire.decode(wire.encode((1, (2,)))) == [1, [2]]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = wire.encode({"a": [1, b"x"]})
    assert wire.decode(bytearray(data)) == {"a": [1, b"x"]}
    assert wire.decode(memoryview(data)) == {"a": [1, b"x"]}


def test_decode_of_non_bytes_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        wire.decode("\xc0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        2**64,
        -(2**63) - 1,
        {1: "int key"},
        {b"k": "bin key"},
        {None: 1},
        {"ok": {2: 3}},
        {1, 2},
        bytearray(b"x"),
        object(),
        "\ud800",
    ],
    ids=[
        "float",
        "too_big",
        "too_small",
        "int_key",
        "bin_key",
        "nil_key",
        "nested_int_key",
        "set",
        "bytearray",
        "object",
        "lone_surrogate",
    ],
)
def test_encode_refuses_values_outside_the_model(value: Any) -> None:
    with pytest.raises(UsageError):
        wire.encode(value)


# -- too_large, truncated, trailing -------------------------------------------


def test_too_large_is_checked_before_parsing() -> None:
    data = b"\xc4\xff" + b"\x00" * 255
    assert refused(data, wire.Limits(max_size=len(data) - 1)).reason == "too_large"
    assert wire.decode(data, limits=wire.Limits(max_size=len(data))) == b"\x00" * 255


def test_too_large_with_default_limits() -> None:
    assert refused(b"\xc0" * (wire.DEFAULT_LIMITS.max_size + 1)).reason == "too_large"


def test_empty_input_is_truncated() -> None:
    assert refused(b"").reason == "truncated"


SAMPLE = {
    "ints": [0, 1, -1, 127, 128, -33, 2**16, 2**32, 2**64 - 1, -(2**63)],
    "text": ["", "a", "x" * 31, "y" * 32, "z" * 300, "é"],
    "bins": [b"", b"\x00", b"q" * 300],
    "flags": [True, False, None],
    "nested": {"a": [[], {}], "b": {"c": [1, [2, [3]]]}},
}


def test_every_prefix_of_a_valid_encoding_is_truncated() -> None:
    data = wire.encode(SAMPLE)
    assert wire.decode(data) == SAMPLE
    for cut in range(len(data)):
        error = refused(data[:cut])
        assert error.reason == "truncated", (cut, error)


@pytest.mark.parametrize("extra", [b"\xc0", b"\x00", b"\x90", b"\xa1x", b"\xff\xff"])
def test_trailing_bytes(extra: bytes) -> None:
    assert refused(wire.encode(SAMPLE) + extra).reason == "trailing_bytes"
    assert refused(b"\x01" + extra).reason == "trailing_bytes"


# -- depth -------------------------------------------------------------------


def test_depth_32_is_allowed() -> None:
    value = wire.decode(nested_arrays(32))
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == 32
    assert isinstance(wire.decode(nested_maps(32)), dict)
    assert wire.decode(b"\x91" * 32 + b"\x01") is not None  # a scalar inside 32 arrays


@pytest.mark.parametrize("levels", [33, 34, 100, 1000, 5000])
def test_depth_exceeded_arrays(levels: int) -> None:
    assert refused(nested_arrays(levels)).reason == "depth_exceeded"


@pytest.mark.parametrize("levels", [33, 5000])
def test_depth_exceeded_maps(levels: int) -> None:
    assert refused(nested_maps(levels)).reason == "depth_exceeded"


def test_depth_exceeded_mixed_with_a_custom_limit() -> None:
    data = wire.encode({"a": [{"b": []}]})  # depth 4
    assert wire.decode(data, limits=wire.Limits(max_depth=4))
    assert refused(data, wire.Limits(max_depth=3)).reason == "depth_exceeded"


def test_encode_refuses_what_decode_would_refuse_for_depth() -> None:
    """encode() must not produce bytes that decode() (default limits) refuses."""
    value: Any = []
    for _ in range(32):  # 33 nested arrays
        value = [value]
    try:
        data = wire.encode(value)
    except UsageError:
        return  # refusing to encode is the other consistent answer
    try:
        wire.decode(data)
    except DecodeError as exc:
        pytest.fail(f"encode() accepted a 33-level value that decode() refuses: {exc}")


def test_encode_refuses_deep_values() -> None:
    value: Any = []
    for _ in range(40):
        value = [value]
    with pytest.raises(UsageError):
        wire.encode(value)


# -- types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x05\x00",  # fixext 1
        b"\xd5\x05\x00\x00",  # fixext 2
        b"\xd6\x05" + bytes(4),  # fixext 4
        b"\xd7\x05" + bytes(8),  # fixext 8
        b"\xd8\x05" + bytes(16),  # fixext 16
        b"\xc7\x00\x05",  # ext 8, empty payload
        b"\xc7\x03\x05abc",  # ext 8
        b"\xc8\x00\x03\x05abc",  # ext 16
        b"\xc9\x00\x00\x00\x03\x05abc",  # ext 32
        b"\x91\xd4\x05\x00",  # inside an array
        b"\x81\xa1a\xd4\x05\x00",  # as a map value
        msgpack.packb(msgpack.Timestamp(1, 0)),  # timestamp 32
        msgpack.packb(msgpack.Timestamp(2**33, 1)),  # timestamp 64
        msgpack.packb(msgpack.Timestamp(-1, 5)),  # timestamp 96
    ],
)
def test_extension_types_are_refused(data: bytes) -> None:
    assert refused(data).reason == "ext_type"


@pytest.mark.parametrize("data", [b"\xc7\x00\xff", b"\xc7\x05\xffabcde", b"\xd4\xff\x00"])
def test_malformed_timestamps_are_decode_errors(data: bytes) -> None:
    refused(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xca\x00\x00\x00\x00",  # float32 0.0
        b"\xca\x3f\x80\x00\x00",  # float32 1.0
        b"\xcb\x3f\xf8" + bytes(6),  # float64 1.5
        b"\xcb" + bytes(8),  # float64 0.0
        b"\x92\x01\xca\x00\x00\x00\x00",  # inside an array
        b"\x81\xa1f\xcb" + bytes(8),  # as a map value
    ],
)
def test_floats_are_refused(data: bytes) -> None:
    assert refused(data).reason == "float"


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x01\x01",  # positive fixint key
        b"\x81\xff\x01",  # negative fixint key
        b"\x81\xcd\x01\x00\x01",  # uint16 key
        b"\x81\xc4\x01k\x01",  # bin key
        b"\x81\xc0\x01",  # nil key
        b"\x81\xc3\x01",  # bool key
        b"\x81\x91\x01\x01",  # array key
        b"\x81\x80\x01",  # map key
        b"\x81\xa1a\x81\x02\x02",  # int key in a nested map
    ],
)
def test_non_string_keys(data: bytes) -> None:
    assert refused(data).reason == "non_string_key"


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\xa1a\x01\xa1a\x02",
        b"\x82\xa1a\x01\xa1a\x01",
        b"\x81\xa1x\x82\xa1k\xc0\xa1k\xc0",
    ],
)
def test_duplicate_keys(data: bytes) -> None:
    assert refused(data).reason == "duplicate_key"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xcc\x05", id="uint8_for_fixint"),
        pytest.param(b"\xcd\x00\x05", id="uint16_for_fixint"),
        pytest.param(b"\xcd\x00\xc8", id="uint16_for_uint8_value"),
        pytest.param(b"\xce\x00\x00\x01\x00", id="uint32_for_uint16_value"),
        pytest.param(b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05", id="uint64_for_fixint"),
        pytest.param(b"\xd0\x05", id="positive_as_int8"),
        pytest.param(b"\xd1\x00\x05", id="positive_as_int16"),
        pytest.param(b"\xd0\xff", id="int8_for_negative_fixint"),
        pytest.param(b"\xd1\xff\xff", id="int16_for_negative_fixint"),
        pytest.param(b"\xd3" + b"\xff" * 8, id="int64_for_negative_fixint"),
        pytest.param(b"\xd9\x03abc", id="str8_for_short_string"),
        pytest.param(b"\xda\x00\x03abc", id="str16_for_short_string"),
        pytest.param(b"\xc5\x00\x03abc", id="bin16_for_short_bin"),
        pytest.param(b"\xc6\x00\x00\x00\x03abc", id="bin32_for_short_bin"),
        pytest.param(b"\x82\xa1b\x01\xa1a\x02", id="unsorted_keys"),
        pytest.param(b"\x81\xa1z\x82\xa1y\x01\xa1x\x02", id="unsorted_nested_keys"),
        pytest.param(b"\xdc\x00\x02\x01\x02", id="array16_for_two_items"),
        pytest.param(b"\xdd\x00\x00\x00\x02\x01\x02", id="array32_for_two_items"),
        pytest.param(b"\xde\x00\x01\xa1a\x01", id="map16_for_one_entry"),
    ],
)
def test_non_canonical_encodings(data: bytes) -> None:
    assert refused(data).reason == "non_canonical"


@pytest.mark.parametrize(
    "data",
    [
        b"\xa2\xff\xfe",  # not UTF-8 at all
        b"\xa1\x80",  # lone continuation byte
        b"\xa2\xc0\xaf",  # overlong "/"
        b"\xa3\xed\xa0\x80",  # encoded surrogate
        b"\x81\xa1\xff\x01",  # invalid key
    ],
)
def test_invalid_utf8(data: bytes) -> None:
    assert refused(data).reason == "invalid_utf8"


@pytest.mark.parametrize("data", [b"\xc1", b"\x91\xc1"])
def test_never_used_byte_is_malformed(data: bytes) -> None:
    assert refused(data).reason == "malformed"


# -- length limits -------------------------------------------------------------


SMALL = wire.Limits(max_str=4, max_bin=4, max_array=3, max_map=2)


@pytest.mark.parametrize(
    ("value", "over"),
    [
        ("abcd", "abcde"),
        (b"abcd", b"abcde"),
        ([1, 2, 3], [1, 2, 3, 4]),
        ({"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}),
        (["abcd"], ["abcde"]),
        ({"abcd": 1}, {"abcde": 1}),
    ],
)
def test_length_limits(value: Any, over: Any) -> None:
    assert wire.decode(wire.encode(value), limits=SMALL) == value
    assert refused(wire.encode(over), SMALL).reason == "length_limit"


def test_default_limits_are_exact() -> None:
    limits = wire.DEFAULT_LIMITS
    assert wire.decode(wire.encode("x" * limits.max_str)) == "x" * limits.max_str
    assert refused(wire.encode("x" * (limits.max_str + 1))).reason == "length_limit"
    assert len(wire.decode(wire.encode([0] * limits.max_array))) == limits.max_array
    assert refused(wire.encode([0] * (limits.max_array + 1))).reason == "length_limit"
    full = {f"k{i:03d}": i for i in range(limits.max_map)}
    assert wire.decode(wire.encode(full)) == full
    assert refused(wire.encode({**full, "extra": 0})).reason == "length_limit"


def test_declared_length_beyond_limit_without_the_data() -> None:
    # A header announcing 4 GiB of array is refused without allocating it.
    assert refused(b"\xdd\xff\xff\xff\xff").reason == "length_limit"
    assert refused(b"\xdf\xff\xff\xff\xff").reason == "length_limit"
