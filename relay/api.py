"""Request and response bodies of the relay's HTTP API, through the core codec.

Every request body is one canonical msgpack map, checked field by field
before any handler sees it; every response is a canonical msgpack map too
(errors included, as ``{"error": code, "message": sentence}``).  The shapes
are listed in docs/relay-api.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from e2e_recall import wire
from e2e_recall.domains import FINGERPRINT_LEN, ID_LEN, KEY_LEN, SIGNATURE_LEN
from e2e_recall.errors import DecodeError
from e2e_recall.linking import MAX_ANSWER
from e2e_recall.schema import Field, check_map

from .errors import BadRequest, PayloadTooLarge, RequestTimeout

__all__ = [
    "BODY_TIMEOUT",
    "MSGPACK",
    "REQUESTS",
    "check_body",
    "parse_body",
    "parse_hex_id",
    "read_request",
    "respond",
]

MSGPACK = "application/msgpack"
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # seconds a request body may take to arrive
_CHALLENGE = Field("challenge", "bin", size=32)
_WRAPS = Field(
    "wraps",
    "list",
    min_len=1,
    max_len=4096,
    item=(
        Field("device_id", "bin", size=ID_LEN),
        Field("wrap", "bin", max_len=2048),
        Field("key_id", "bin", size=ID_LEN),  # the wrapping key the wrap is made to
    ),
)
# The blobs a send binds (each a bin[16], checked by relay.blobs.rules.check_blob_list).
_BLOBS = Field("blobs", "list", max_len=16)

REQUESTS: dict[str, tuple[Field, ...]] = {
    "register": (
        Field("identity_key", "bin", size=KEY_LEN),
        Field("certificate", "bin", max_len=8192),
        _CHALLENGE,
        Field("identity_signature", "bin", size=SIGNATURE_LEN),
        Field("device_signature", "bin", size=SIGNATURE_LEN),
        Field("handle", "str", max_len=32, optional=True),
        Field("approval", "bin", max_len=256, optional=True),
    ),
    "login": (
        Field("device_id", "bin", size=ID_LEN),
        _CHALLENGE,
        Field("signature", "bin", size=SIGNATURE_LEN),
    ),
    "send": (Field("envelope", "bin", max_len=1 << 20), _WRAPS, _BLOBS),
    "receipt": (Field("receipt", "bin", max_len=4096),),
    "recall": (
        Field("revocation", "bin", max_len=4096),
        Field("replacement", "map", optional=True),
    ),
    "replacement": (Field("envelope", "bin", max_len=1 << 20), _WRAPS, _BLOBS),
    "blob": (
        Field("blob_id", "bin", size=ID_LEN),
        Field("size", "uint", max_value=2**62),
        Field("digest", "bin", size=32),
    ),
    "ack": (Field("seq", "uint", max_value=2**63 - 1),),
    # a signed group change: 1024 members of 32 bytes and the rest fit well within this
    "group_change": (Field("change", "bin", max_len=64 * 1024),),
    "open": (),
    "link": (
        Field("link_id", "bin", size=ID_LEN),
        Field("expires_at", "uint", max_value=2**63 - 1),
    ),
    "link_message": (Field("sealed", "bin", max_len=MAX_ANSWER),),
    "device_revocation": (Field("revocation", "bin", max_len=1024),),
    # a device's rotated certificate (relay/keys)
    "certificate": (Field("certificate", "bin", max_len=8192),),
}

# Keys a request may leave out (added later; older clients do not send them).
_MAY_OMIT: dict[str, dict[str, Any]] = {"register": {"approval": None}}

_LIMITS = wire.Limits(max_size=1 << 21, max_bin=1 << 20, max_array=4096, max_map=16, max_depth=4)


async def read_request(request: web.Request, kind: str) -> dict[str, Any]:
    """The request's body as a checked map, or a 4xx that says what is wrong."""
    if request.content_type != MSGPACK:
        raise BadRequest(f"Send the body as {MSGPACK}.", "bad_content_type")
    limit = request.app[BODY_TIMEOUT]
    try:
        body = await asyncio.wait_for(request.read(), timeout=limit)
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("The request body is too large.", "too_large") from None
    except TimeoutError:
        # A client that trickles its body (or stops halfway) must not hold a
        # connection and a handler for ever: nothing of it is kept.
        raise RequestTimeout(
            f"The request body did not arrive within {limit:g} seconds.", "request_timeout"
        ) from None
    return parse_body(body, kind)


def parse_body(body: bytes, kind: str) -> dict[str, Any]:
    try:
        value = wire.decode(body, limits=_LIMITS)
    except DecodeError as exc:
        raise BadRequest(
            f"The {kind} request is malformed: {exc.detail or exc.reason}.", exc.reason
        ) from None
    return check_body(value, kind)


def check_body(value: Any, kind: str) -> dict[str, Any]:
    """An already decoded body (a WebSocket request's), checked like an HTTP one."""
    if isinstance(value, dict) and kind in _MAY_OMIT:
        value = _MAY_OMIT[kind] | value
    try:
        return check_map(value, REQUESTS[kind], kind)
    except DecodeError as exc:
        raise BadRequest(
            f"The {kind} request is malformed: {exc.detail or exc.reason}.", exc.reason
        ) from None


def respond(value: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(value), status=status, content_type=MSGPACK)


def parse_hex_id(text: str, size: int = ID_LEN, what: str = "id") -> bytes:
    """An id from the URL path: lowercase hex of exactly ``size`` bytes."""
    if len(text) != 2 * size or any(c not in "0123456789abcdef" for c in text):
        raise BadRequest(
            f"The {what} in the address must be {2 * size} lowercase hex digits.", "bad_id"
        )
    return bytes.fromhex(text)


USER_ID_LEN = FINGERPRINT_LEN
