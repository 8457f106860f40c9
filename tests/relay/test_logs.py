"""Internal errors are logged with their stack, and still never with what was handled.

A route added to the real application raises while holding a secret in a
local variable and in the exception's message; the relay answers 500
``internal``, and its log line (one JSON object) names the failing frames
but contains neither the message nor the local.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from e2e_recall import wire
from relay.app import create_app
from relay.config import load_config
from relay.logs import JsonFormatter

from driver import Clock


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield text
    finally:
        root.removeHandler(handler)


def _deep_failure(secret: str) -> None:
    held_key = secret.encode()  # a local the traceback must not show
    raise KeyError(f"lookup of {held_key!r} failed")


async def test_an_internal_error_is_logged_with_frames_and_without_secrets(
    tmp_path: Path, captured: io.StringIO
) -> None:
    secret = "sekrit-" + os.urandom(12).hex()

    async def broken(request: web.Request) -> web.Response:
        try:
            _deep_failure(secret)
        except KeyError as exc:
            raise RuntimeError(f"while handling {secret}") from exc
        raise AssertionError("unreachable")

    config = load_config(env={}, flags={"data_dir": str(tmp_path), "purge_interval": "1h"})
    app = create_app(config, clock=Clock())
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/broken"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 500
            body = wire.decode(await response.read())
        assert body["error"] == "internal"
        assert secret not in body["message"]
    finally:
        await runner.cleanup()

    lines = captured.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    failures = [e for e in entries if e.get("event") == "internal_error"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["exception"] == "RuntimeError"
    assert failure["route"] == "/broken"
    stacks = failure["traceback"]
    assert [s["exception"] for s in stacks] == ["KeyError", "RuntimeError"]  # the cause first
    frames = [frame for s in stacks for frame in s["frames"]]
    assert any("test_logs.py" in f and "in _deep_failure" in f for f in frames), frames
    assert any("in broken" in f for f in frames), frames
    assert secret not in captured.getvalue()
    assert secret.encode().hex() not in captured.getvalue()


def test_the_formatter_keeps_frames_and_drops_messages_and_locals(captured: io.StringIO) -> None:
    secret = "token-" + os.urandom(8).hex()
    try:
        _deep_failure(secret)
    except KeyError:
        logging.getLogger("relay.test").exception(
            "unexpected error", extra={"event": "internal_error", "envelope": secret}
        )
    (line,) = captured.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["exception"] == "KeyError"
    assert entry["traceback"][0]["frames"][-1].startswith("relay/test_logs.py:")
    assert "raise KeyError" in entry["traceback"][0]["frames"][-1]  # the source line, not values
    assert secret not in line
    assert "envelope" not in entry  # not on the allow-list
