"""Serialising keys, each with a kind and a version tag.

A serialised key is the canonical map ``{"kind": ..., "version": 1, ...}``.
The kind stops a public key being loaded where a secret is expected (or an
identity where a device is expected); the version lets a later format be
told apart instead of misread.  Secret serialisations are plaintext: the
client's keystore encrypts them before they touch a disk.
"""

from __future__ import annotations

from typing import Any

from . import wire
from .device import DeviceSecrets
from .domains import ID_LEN, KEY_LEN, PROTOCOL_VERSION
from .errors import DecodeError, UsageError
from .schema import Field, check_map, check_version
from .signing import SigningKey, VerifyKey
from .wrapping import WrapPrivateKey, WrapPublicKey, suite_from_wire

__all__ = [
    "dump_device_secrets",
    "dump_signing_key",
    "dump_verify_key",
    "dump_wrap_public_key",
    "load_device_secrets",
    "load_signing_key",
    "load_verify_key",
    "load_wrap_public_key",
]

_KINDS = frozenset({"signing_key", "verify_key", "device_secrets", "wrap_public_key"})
_LIMITS = wire.Limits(max_size=8192, max_bin=4096, max_map=8, max_depth=1)
_SCHEMAS: dict[str, tuple[Field, ...]] = {
    "signing_key": (Field("seed", "bin", size=KEY_LEN),),
    "verify_key": (Field("key", "bin", size=KEY_LEN),),
    "device_secrets": (
        Field("device_id", "bin", size=ID_LEN),
        Field("signing_seed", "bin", size=KEY_LEN),
        Field("wrap_suite", "uint", max_value=0xFFFF),
        Field("wrap_key", "bin", max_len=4096),
    ),
    "wrap_public_key": (
        Field("suite", "uint", max_value=0xFFFF),
        Field("key", "bin", max_len=4096),
    ),
}
_COMMON = (Field("kind", "str", choices=_KINDS), Field("version", "uint"))


def _dump(kind: str, fields: dict[str, Any]) -> bytes:
    return wire.encode({"kind": kind, "version": PROTOCOL_VERSION, **fields})


def _load(data: bytes, kind: str) -> dict[str, Any]:
    obj = wire.decode(data, limits=_LIMITS)
    check_version(obj, "key", PROTOCOL_VERSION)
    if obj.get("kind") != kind:
        raise DecodeError("wrong_kind", f"expected a serialised {kind}")
    return check_map(obj, _COMMON + _SCHEMAS[kind], kind)


def dump_signing_key(key: SigningKey) -> bytes:
    return _dump("signing_key", {"seed": key.seed})


def load_signing_key(data: bytes) -> SigningKey:
    return SigningKey(_load(data, "signing_key")["seed"])


def dump_verify_key(key: VerifyKey) -> bytes:
    return _dump("verify_key", {"key": key.raw})


def load_verify_key(data: bytes) -> VerifyKey:
    return VerifyKey(_load(data, "verify_key")["key"])


def dump_wrap_public_key(key: WrapPublicKey) -> bytes:
    return _dump("wrap_public_key", {"suite": int(key.suite), "key": key.raw})


def load_wrap_public_key(data: bytes) -> WrapPublicKey:
    fields = _load(data, "wrap_public_key")
    return WrapPublicKey(suite_from_wire(fields["suite"]), fields["key"])


def dump_device_secrets(secrets: DeviceSecrets) -> bytes:
    return _dump(
        "device_secrets",
        {
            "device_id": secrets.device_id,
            "signing_seed": secrets.signing_key.seed,
            "wrap_suite": int(secrets.wrap_key.suite),
            "wrap_key": secrets.wrap_key.raw,
        },
    )


def load_device_secrets(data: bytes) -> DeviceSecrets:
    fields = _load(data, "device_secrets")
    suite = suite_from_wire(fields["wrap_suite"])
    try:
        wrap_key = WrapPrivateKey(suite, fields["wrap_key"])
    except UsageError as exc:
        raise DecodeError(exc.reason, exc.detail) from None
    return DeviceSecrets(
        device_id=fields["device_id"],
        signing_key=SigningKey(fields["signing_seed"]),
        wrap_key=wrap_key,
    )
