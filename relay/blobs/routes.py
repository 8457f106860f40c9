"""The HTTP face of the blob store: create, append, resume, download.

Only the blob bytes themselves travel as ``application/octet-stream``, and
both ways they are streamed: a PATCH body is read from the socket piece by
piece (never whole: the app's ``client_max_size`` and ``body_timeout`` are
for msgpack bodies, and a blob has its own limits -- its declared size and
a per-read inactivity timeout), and a download is written in chunks with
the transport's back-pressure.  Every other body is msgpack as in the rest
of the API.  No rule lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from aiohttp import web

from ..api import parse_hex_id, read_request, respond
from ..errors import BadRequest, RangeNotSatisfiable
from ..handlers import session_of
from ..services import SERVICES, Services
from .service import Blobs

__all__ = ["BLOB_ROUTES", "OCTETS"]

OCTETS = "application/octet-stream"
_RANGE = re.compile(r"bytes=([0-9]{1,19})-")  # ASCII digits only: \d matches any script's
_OFFSET = re.compile(r"[0-9]{1,19}")
_SEND = 256 << 10  # bytes per chunk of a download


def _blobs(request: web.Request) -> tuple[Services, Blobs]:
    services = request.app[SERVICES]
    return services, services.blobs


def _blob_id(request: web.Request) -> bytes:
    return parse_hex_id(request.match_info["blob_id"], what="blob id")


async def create(request: web.Request) -> web.Response:
    session = await session_of(request)
    body = await read_request(request, "blob")
    _, blobs = _blobs(request)
    blob, created, offset = await blobs.create(
        session, body["blob_id"], body["size"], body["digest"]
    )
    answer = {"blob_id": blob.blob_id, "offset": offset, "size": blob.size}
    return respond(answer, status=201 if created else 200)


async def status(request: web.Request) -> web.Response:
    session = await session_of(request)
    _, blobs = _blobs(request)
    offset, size, complete = await blobs.status(session, _blob_id(request))
    return respond({"offset": offset, "size": size, "complete": complete})


async def append(request: web.Request) -> web.Response:
    session = await session_of(request)
    blob_id = _blob_id(request)
    text = request.headers.get("Upload-Offset", "")
    if not _OFFSET.fullmatch(text):
        raise BadRequest("Upload-Offset must be the byte offset to append at.", "bad_offset")
    if request.content_type != OCTETS:
        raise BadRequest(f"Send the blob's bytes as {OCTETS}.", "bad_content_type")
    _, blobs = _blobs(request)
    offset, complete = await blobs.append(
        session, blob_id, int(text), request.content, request.content_length
    )
    return respond({"offset": offset, "complete": complete})


def _start(request: web.Request, size: int) -> int | None:
    """The first byte asked for by ``Range: bytes=N-`` (None: the whole blob)."""
    text = request.headers.get("Range")
    if text is None:
        return None
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        raise RangeNotSatisfiable("Only a range of the form bytes=N- is served.", "bad_range")
    start = int(match.group(1))
    if start >= size:
        raise RangeNotSatisfiable(
            f"The blob has {size} bytes; a range must start before its end.", "bad_range"
        )
    return start


async def download(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    _, blobs = _blobs(request)
    readable = await blobs.readable(session, _blob_id(request))
    size = readable.blob.size
    start = _start(request, size)
    offset = start or 0
    try:
        file = await asyncio.to_thread(blobs.open_read, readable.blob.blob_id, offset)
    except FileNotFoundError:
        raise RangeNotSatisfiable("The blob is not available.", "blob_unavailable") from None
    response = web.StreamResponse(status=200 if start is None else 206)
    response.content_type = OCTETS
    response.content_length = size - offset
    response.headers["Accept-Ranges"] = "bytes"
    if start is not None:
        response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    sent = offset
    try:
        await response.prepare(request)
        while sent < size:
            piece = await asyncio.to_thread(file.read, min(_SEND, size - sent))
            if not piece:
                break  # destroyed while being read: the client sees a short body
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        return response  # the client went away; it resumes with a range
    finally:
        with contextlib.suppress(OSError):
            file.close()
    if sent == size:
        await blobs.downloaded(session, readable)
    return response


BLOB_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/blobs", create),
    ("PATCH", "/v1/blobs/{blob_id}", append),
    ("GET", "/v1/blobs/{blob_id}/upload", status),
    ("GET", "/v1/blobs/{blob_id}", download),
]
