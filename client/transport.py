"""HTTP and WebSocket to the relay: msgpack in, msgpack out, errors made typed.

This module knows the relay's URL layout and nothing about messages.  Every
network failure becomes :class:`RelayUnreachable` and every refusal a
:class:`RelayRefused` carrying the relay's own code and sentence.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from e2e_recall import wire
from e2e_recall.errors import E2ERecallError

from .errors import RelayRefused, RelayUnreachable, UsageProblem
from .ws_channel import ChannelClosed, RequestChannel

__all__ = ["MSGPACK", "Transport", "check_relay_url", "encode_body"]

MSGPACK = "application/msgpack"
# Answers carry at most one envelope (<= the relay's max_message_size) or a page of events.
_ANSWER_LIMITS = wire.Limits(max_size=8 << 20, max_bin=4 << 20, max_array=10_000)
_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# A file may take hours to move; what must not happen is a minute with no byte moving.
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
STREAM_CHUNK = 256 * 1024
Progress = Callable[[int], None]  # told how many more bytes have moved
# The routes that go over the event WebSocket while one is open, as the relay's op of the
# same operation (docs/relay-api.md).  Each is answered the same when repeated, so one the
# connection dropped is made again over HTTP.
WS_OPS = {
    ("POST", "/v1/devices/self/certificate"): "certificate",
    ("GET", "/v1/devices/self/keys"): "keys",
}


def encode_body(body: dict[str, Any]) -> bytes:
    """A request body as it goes on the wire (canonical msgpack)."""
    return wire.encode(body)


def check_relay_url(url: str) -> str:
    """An http(s) URL with a host, without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageProblem(
            f"{url!r} is not a relay URL; give one like http://127.0.0.1:8765.", "bad_url"
        )
    return url.rstrip("/")


class Transport:
    """One HTTP session to one relay; the token is set once logged in."""

    def __init__(self, url: str) -> None:
        self.url = check_relay_url(url)
        self.token: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self.channel: RequestChannel | None = None  # the event WebSocket, while one is open

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _unreachable(self, exc: BaseException) -> RelayUnreachable:
        if isinstance(exc, aiohttp.ClientConnectorError):
            detail = exc.os_error.strerror or "connection failed"
        elif isinstance(exc, TimeoutError):
            detail = "no answer in time"
        else:
            detail = str(exc) or type(exc).__name__
        return RelayUnreachable(
            f"Cannot reach the relay at {self.url} ({detail}).", "relay_unreachable"
        )

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        auth: bool = True,
    ) -> dict[str, Any]:
        """One request; the decoded answer map, or a typed error.

        An authenticated route with a WebSocket op goes over the event
        WebSocket while one is open (:data:`WS_OPS`), else over HTTP.
        """
        op = WS_OPS.get((method, path)) if auth else None
        if op is not None and self.channel is not None and self.channel.open:
            try:
                status, answer = await self.channel.request(op, body, _TIMEOUT.total or 30)
            except ChannelClosed:
                pass  # made over HTTP below
            except TimeoutError:
                raise self._unreachable(TimeoutError()) from None
            else:
                return self._checked(status, answer)
        headers = {"Accept": MSGPACK}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            headers["Content-Type"] = MSGPACK
            data = encode_body(body)
        try:
            async with self.http.request(
                method, self.url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
                content_type = response.content_type
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from None
        return self._answer(status, content_type, raw)

    def _answer(self, status: int, content_type: str, raw: bytes) -> dict[str, Any]:
        if content_type != MSGPACK:
            if status >= 500:
                raise RelayUnreachable(
                    f"The relay at {self.url} is not answering properly (HTTP {status}).",
                    "relay_unavailable",
                )
            raise RelayRefused(
                f"The server at {self.url} answered HTTP {status}, not as a relay.",
                "not_a_relay",
                status,
                {},
            )
        try:
            answer = wire.decode(raw, limits=_ANSWER_LIMITS)
        except E2ERecallError:
            raise RelayRefused(
                "The relay's answer could not be decoded.", "bad_answer", status, {}
            ) from None
        if not isinstance(answer, dict):
            raise RelayRefused("The relay's answer is not a map.", "bad_answer", status, {})
        return self._checked(status, answer)

    def _checked(self, status: int, answer: dict[str, Any]) -> dict[str, Any]:
        """A decoded answer map, or the typed error its status and code make it."""
        if status >= 400:
            code = answer.get("error")
            sentence = answer.get("message")
            data = answer.get("facts")
            if status in (502, 503, 504) and code in ("storage", "busy", None):
                raise RelayUnreachable(
                    f"The relay at {self.url} is temporarily unavailable ({sentence}).",
                    "relay_unavailable",
                )
            raise RelayRefused(
                sentence if isinstance(sentence, str) else f"The relay refused (HTTP {status}).",
                code if isinstance(code, str) else "refused",
                status,
                data if isinstance(data, dict) else {},
            )
        return answer

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Accept": MSGPACK, **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def upload(
        self, path: str, source: Path, offset: int, progress: Progress | None = None
    ) -> dict[str, Any]:
        """``PATCH`` the bytes of ``source`` from ``offset`` on, read as they are sent.

        Memory stays at one read buffer whatever the file's size; a broken
        connection is :class:`RelayUnreachable`, after which the relay says how
        far it got and the caller resumes from there.
        """
        headers = self._headers(
            {"Content-Type": "application/octet-stream", "Upload-Offset": str(offset)}
        )
        length = source.stat().st_size - offset

        async def chunks() -> AsyncIterator[bytes]:
            with open(source, "rb") as handle:
                handle.seek(offset)
                while chunk := handle.read(STREAM_CHUNK):
                    yield chunk
                    if progress is not None:
                        progress(len(chunk))

        headers["Content-Length"] = str(length)
        try:
            async with self.http.patch(
                self.url + path, data=chunks(), headers=headers, timeout=_STREAM_TIMEOUT
            ) as response:
                raw = await response.read()
                status, content_type = response.status, response.content_type
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from None
        return self._answer(status, content_type, raw)

    async def download(self, path: str, sink: Callable[[bytes], None], offset: int = 0) -> int:
        """``GET`` a blob from ``offset`` on, handing each piece to ``sink``; bytes received.

        A ``Range`` request when resuming: the relay answers ``206`` from there.
        """
        headers = self._headers({"Accept": "application/octet-stream"})
        if offset:
            headers["Range"] = f"bytes={offset}-"
        received = 0
        try:
            async with self.http.get(
                self.url + path, headers=headers, timeout=_STREAM_TIMEOUT
            ) as response:
                expected = 206 if offset else 200
                if response.status != expected:
                    raw = await response.read()
                    if response.status < 400:
                        raise RelayRefused(
                            f"The relay answered HTTP {response.status} to a download.",
                            "bad_answer",
                            response.status,
                            {},
                        )
                    self._answer(response.status, response.content_type, raw)
                async for chunk in response.content.iter_chunked(STREAM_CHUNK):
                    try:
                        sink(chunk)
                    except OSError as exc:
                        raise UsageProblem(
                            f"Cannot write the download ({exc.strerror}).", "disk_failed"
                        ) from None
                    received += len(chunk)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from None
        return received

    @contextlib.asynccontextmanager
    async def websocket(self, cursor: int) -> AsyncIterator[RequestChannel]:
        """The event WebSocket, resuming after ``cursor``; requests use it while it is open."""
        url = self.url.replace("http", "ws", 1) + f"/v1/ws?cursor={cursor}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.ws_connect(
            url, headers=headers, heartbeat=30, max_msg_size=8 << 20
        ) as ws:
            channel = RequestChannel(ws)
            self.channel = channel
            try:
                yield channel
            finally:
                if self.channel is channel:
                    self.channel = None
                await channel.stop()
