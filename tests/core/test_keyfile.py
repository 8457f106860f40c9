"""Serialised keys: kind- and version-tagged canonical maps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from e2e_recall import DeviceSecrets, SeededRandom, SigningKey, WrapSuite, wire
from e2e_recall.errors import DecodeError, InvalidKey, UnsupportedVersion
from e2e_recall.keyfile import (
    dump_device_secrets,
    dump_signing_key,
    dump_verify_key,
    dump_wrap_public_key,
    load_device_secrets,
    load_signing_key,
    load_verify_key,
    load_wrap_public_key,
)

LOADERS: dict[str, Callable[[bytes], Any]] = {
    "signing_key": load_signing_key,
    "verify_key": load_verify_key,
    "wrap_public_key": load_wrap_public_key,
    "device_secrets": load_device_secrets,
}


@pytest.fixture(scope="module")
def dumps() -> dict[str, bytes]:
    rng = SeededRandom(b"keyfile tests")
    key = SigningKey.generate(rng)
    device = DeviceSecrets.generate(WrapSuite.X25519, rng)
    return {
        "signing_key": dump_signing_key(key),
        "verify_key": dump_verify_key(key.public_key),
        "wrap_public_key": dump_wrap_public_key(device.wrap_key.public_key),
        "device_secrets": dump_device_secrets(device),
    }


def test_signing_key_round_trip() -> None:
    key = SigningKey.generate(SeededRandom(b"sk"))
    data = dump_signing_key(key)
    loaded = load_signing_key(data)
    assert loaded.seed == key.seed
    assert loaded.public_key == key.public_key
    assert wire.decode(data) == {"kind": "signing_key", "version": 1, "seed": key.seed}


def test_verify_key_round_trip() -> None:
    key = SigningKey.generate(SeededRandom(b"vk")).public_key
    data = dump_verify_key(key)
    assert load_verify_key(data) == key
    assert wire.decode(data) == {"kind": "verify_key", "version": 1, "key": key.raw}


@pytest.mark.parametrize("suite", [WrapSuite.X25519, WrapSuite.XWING])
def test_wrap_public_key_round_trip(suite: WrapSuite) -> None:
    device = DeviceSecrets.generate(suite, SeededRandom(b"wpk"))
    public = device.wrap_key.public_key
    loaded = load_wrap_public_key(dump_wrap_public_key(public))
    assert loaded == public
    assert loaded.suite is suite
    assert loaded.key_id == public.key_id


@pytest.mark.parametrize("suite", [WrapSuite.X25519, WrapSuite.XWING])
def test_device_secrets_round_trip(suite: WrapSuite) -> None:
    device = DeviceSecrets.generate(suite, SeededRandom(b"ds"))
    data = dump_device_secrets(device)
    loaded = load_device_secrets(data)
    assert loaded.device_id == device.device_id
    assert loaded.signing_key.seed == device.signing_key.seed
    assert loaded.wrap_key.raw == device.wrap_key.raw
    assert loaded.wrap_key.suite is suite
    assert loaded.wrap_key.public_key == device.wrap_key.public_key
    assert dump_device_secrets(loaded) == data


@pytest.mark.parametrize(
    ("stored", "loader"),
    [(s, name) for s in LOADERS for name in LOADERS if s != name],
)
def test_wrong_kind_is_refused(dumps: dict[str, bytes], stored: str, loader: str) -> None:
    with pytest.raises(DecodeError) as info:
        LOADERS[loader](dumps[stored])
    assert info.value.reason == "wrong_kind"


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("version", [0, 2, 99])
def test_wrong_version_is_refused(dumps: dict[str, bytes], kind: str, version: int) -> None:
    obj = wire.decode(dumps[kind])
    obj["version"] = version
    with pytest.raises(UnsupportedVersion):
        LOADERS[kind](wire.encode(obj))


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_missing_version_is_refused(dumps: dict[str, bytes], kind: str) -> None:
    obj = wire.decode(dumps[kind])
    del obj["version"]
    with pytest.raises(DecodeError) as info:
        LOADERS[kind](wire.encode(obj))
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_extra_and_missing_fields(dumps: dict[str, bytes], kind: str) -> None:
    obj = wire.decode(dumps[kind])
    with pytest.raises(DecodeError) as info:
        LOADERS[kind](wire.encode({**obj, "comment": "mine"}))
    assert info.value.reason == "unknown_field"
    field = next(k for k in sorted(obj) if k not in {"kind", "version"})
    del obj[field]
    with pytest.raises(DecodeError) as info:
        LOADERS[kind](wire.encode(obj))
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_unknown_kind(dumps: dict[str, bytes], kind: str) -> None:
    obj = wire.decode(dumps[kind])
    obj["kind"] = "password"
    with pytest.raises(DecodeError):
        LOADERS[kind](wire.encode(obj))


def test_non_canonical_or_truncated_data(dumps: dict[str, bytes]) -> None:
    data = dumps["signing_key"]
    with pytest.raises(DecodeError):
        load_signing_key(data[:-1])
    with pytest.raises(DecodeError):
        load_signing_key(data + b"\x00")
    with pytest.raises(DecodeError):
        load_signing_key(b"")


def test_wrong_lengths(dumps: dict[str, bytes]) -> None:
    obj = wire.decode(dumps["signing_key"])
    obj["seed"] = obj["seed"][:31]
    with pytest.raises(DecodeError):
        load_signing_key(wire.encode(obj))
    obj = wire.decode(dumps["device_secrets"])
    obj["wrap_key"] = obj["wrap_key"] + b"\x00"  # not a private key of its suite
    with pytest.raises(DecodeError):
        load_device_secrets(wire.encode(obj))
    obj = wire.decode(dumps["wrap_public_key"])
    obj["key"] = obj["key"][:-1]
    with pytest.raises(DecodeError):
        load_wrap_public_key(wire.encode(obj))


def test_unknown_suite(dumps: dict[str, bytes]) -> None:
    obj = wire.decode(dumps["wrap_public_key"])
    obj["suite"] = 7
    with pytest.raises(DecodeError) as info:
        load_wrap_public_key(wire.encode(obj))
    assert info.value.reason == "unknown_suite"
    obj = wire.decode(dumps["device_secrets"])
    obj["wrap_suite"] = 0
    with pytest.raises(DecodeError):
        load_device_secrets(wire.encode(obj))


def test_weak_keys_are_refused_on_load(dumps: dict[str, bytes]) -> None:
    obj = wire.decode(dumps["verify_key"])
    obj["key"] = b"\x01" + bytes(31)
    with pytest.raises(InvalidKey):
        load_verify_key(wire.encode(obj))
    obj = wire.decode(dumps["wrap_public_key"])
    obj["key"] = bytes(32)
    with pytest.raises(InvalidKey):
        load_wrap_public_key(wire.encode(obj))
