"""Field-by-field validation of decoded maps (schema.py)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e_recall import Header, wire
from e2e_recall.errors import DecodeError, ProtocolError, UnsupportedVersion
from e2e_recall.schema import UINT64_MAX, Field, check_map, check_version

ITEM = (Field("x", "uint"),)
FIELDS = (
    Field("version", "uint"),
    Field("id", "bin", size=16),
    Field("name", "str", max_len=8, min_len=1),
    Field("note", "str", optional=True),
    Field("kind", "str", choices=frozenset({"text", "replacement"})),
    Field("count", "uint", max_value=10),
    Field("big", "uint"),
    Field("flag", "bool"),
    Field("items", "list", max_len=2, item=ITEM),
    Field("meta", "map"),
    Field("blob", "bin", max_len=4, optional=True),
)


def valid() -> dict[str, Any]:
    return {
        "version": 1,
        "id": bytes(16),
        "name": "alice",
        "note": "hi",
        "kind": "text",
        "count": 10,
        "big": UINT64_MAX,
        "flag": False,
        "items": [{"x": 1}, {"x": 2}],
        "meta": {},
        "blob": b"1234",
    }


def reason_of(obj: Any, fields: tuple[Field, ...] = FIELDS) -> str:
    with pytest.raises(ProtocolError) as info:
        check_map(obj, fields, "thing")
    assert type(info.value) is DecodeError
    return info.value.reason


def with_(**changes: Any) -> dict[str, Any]:
    obj = valid()
    obj.update(changes)
    return obj


def test_valid_map_passes_unchanged() -> None:
    obj = valid()
    assert check_map(obj, FIELDS, "thing") == valid()


def test_valid_map_survives_the_wire() -> None:
    decoded = wire.decode(wire.encode(valid()))
    assert check_map(decoded, FIELDS, "thing") == valid()


def test_unknown_field() -> None:
    assert reason_of(with_(extra=1)) == "unknown_field"


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
def test_every_missing_field(name: str) -> None:
    obj = valid()
    del obj[name]
    assert reason_of(obj) == "missing_field"


def test_optional_fields_accept_nil_but_are_still_required() -> None:
    assert check_map(with_(note=None, blob=None), FIELDS, "thing")["note"] is None
    obj = valid()
    del obj["note"]
    assert reason_of(obj) == "missing_field"


@pytest.mark.parametrize(
    "name", ["version", "id", "name", "kind", "count", "flag", "items", "meta"]
)
def test_nil_refused_where_not_optional(name: str) -> None:
    assert reason_of(with_(**{name: None})) == "wrong_type"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("id", "0123456789abcdef"),  # str where bin belongs
        ("blob", "1234"),
        ("name", b"alice"),  # bin where str belongs
        ("kind", b"text"),
        ("note", b"hi"),
        ("count", True),  # bool is not an integer
        ("count", -1),
        ("count", "1"),
        ("flag", 0),
        ("flag", "false"),
        ("items", {"x": 1}),
        ("items", b"\x01"),
        ("meta", []),
        ("meta", "map"),
        ("id", bytearray(16)),
    ],
)
def test_type_mix_ups(name: str, value: Any) -> None:
    assert reason_of(with_(**{name: value})) == "wrong_type"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("id", bytes(15)),
        ("id", bytes(17)),
        ("id", b""),
        ("blob", b"12345"),
        ("name", "abcdefghi"),
        ("name", ""),
        ("name", "ééééé"),  # 5 characters, 10 UTF-8 bytes
        ("items", [{"x": 1}, {"x": 2}, {"x": 3}]),
    ],
)
def test_wrong_lengths(name: str, value: Any) -> None:
    assert reason_of(with_(**{name: value})) == "bad_length"


def test_lengths_at_the_limits_pass() -> None:
    check_map(with_(name="abcdefgh", blob=b"", items=[]), FIELDS, "thing")
    check_map(with_(name="éééé"), FIELDS, "thing")  # 8 UTF-8 bytes


def test_choices() -> None:
    check_map(with_(kind="replacement"), FIELDS, "thing")
    assert reason_of(with_(kind="Text")) == "unknown_value"
    assert reason_of(with_(kind="")) == "unknown_value"


def test_max_value() -> None:
    assert reason_of(with_(count=11)) == "out_of_range"
    check_map(with_(count=0), FIELDS, "thing")


def test_list_items_are_checked_as_maps() -> None:
    assert reason_of(with_(items=[{"x": 1}, {"y": 1}])) == "unknown_field"
    assert reason_of(with_(items=[{}])) == "missing_field"
    assert reason_of(with_(items=[{"x": -5}])) == "wrong_type"
    assert reason_of(with_(items=[3])) == "wrong_type"


def test_not_a_map() -> None:
    for obj in ([], "map", None, b"", 1):
        assert reason_of(obj) == "wrong_type"


def test_detail_names_the_field() -> None:
    with pytest.raises(DecodeError) as info:
        check_map(with_(id=bytes(3)), FIELDS, "thing")
    assert "thing.id" in str(info.value)


# -- version ---------------------------------------------------------------


def test_check_version_accepts_the_supported_version() -> None:
    assert check_version({"version": 1, "junk": 2}, "thing", 1) == {"version": 1, "junk": 2}


@pytest.mark.parametrize("version", [0, 2, 255, UINT64_MAX])
def test_other_versions_are_unsupported(version: int) -> None:
    with pytest.raises(UnsupportedVersion) as info:
        check_version({"version": version}, "thing", 1)
    assert info.value.reason == "unknown_version"
    assert isinstance(info.value, DecodeError)


@pytest.mark.parametrize("obj", [{}, {"version": "1"}, {"version": True}, {"version": None}])
def test_missing_or_non_integer_version(obj: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as info:
        check_version(obj, "thing", 1)
    assert type(info.value) is DecodeError
    assert info.value.reason == "missing_field"


def test_check_version_refuses_non_maps() -> None:
    with pytest.raises(DecodeError) as info:
        check_version([1], "thing", 1)
    assert info.value.reason == "wrong_type"


def test_version_is_checked_before_any_other_field() -> None:
    """A newer peer's header, with fields we do not know, reads as unsupported_version."""
    data = wire.encode({"version": 2, "message_id": "not bytes", "future_field": 5})
    with pytest.raises(UnsupportedVersion):
        Header.decode(data)
    # The same map with version 1 is a plain decode error.
    data = wire.encode({"version": 1, "message_id": "not bytes", "future_field": 5})
    with pytest.raises(DecodeError) as info:
        Header.decode(data)
    assert not isinstance(info.value, UnsupportedVersion)
