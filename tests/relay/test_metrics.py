"""``/metrics``: closed by a bearer token when the operator sets one; what it reports.

The gauges of what the database holds are refreshed by the relay's own
timer (``stats_interval``), so the test waits for them to reach the state
it produced; database reads are timed beside commits.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e_recall import wire

from driver import MINUTE, Clock, Person, Relay, start_relay
from relay_process import relay_cli


@pytest.fixture
async def guarded(
    tmp_path: Path, clock: Clock, database_options: dict[str, Any]
) -> AsyncIterator[tuple[Relay, str]]:
    token = os.urandom(24).hex()
    token_file = tmp_path / "metrics.token"
    token_file.write_text(token + "\n")
    relay = await start_relay(
        tmp_path / "relay",
        clock,
        metrics_token_file=str(token_file),
        stats_interval="50ms",
        **database_options,
    )
    yield relay, token
    await relay.runner.cleanup()


async def _metrics(http: aiohttp.ClientSession, relay: Relay, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(relay.url + "/metrics", headers=headers) as response:
        if response.status != 200:
            body = wire.decode(await response.read())
            return response.status, str(body["error"])
        return 200, await response.text()


def _value(text: str, sample: str) -> float | None:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def test_metrics_need_the_token_when_one_is_configured(
    guarded: tuple[Relay, str], http: aiohttp.ClientSession
) -> None:
    relay, token = guarded
    assert await _metrics(http, relay, None) == (401, "bad_token")
    assert await _metrics(http, relay, token[:-1] + "x") == (401, "bad_token")
    assert await _metrics(http, relay, token + "x") == (401, "bad_token")
    status, text = await _metrics(http, relay, token)
    assert status == 200
    assert "relay_requests_total" in text
    async with http.get(relay.url + "/healthz") as response:  # health stays open for probes
        assert response.status == 200


async def test_held_messages_are_a_gauge_and_reads_are_timed(
    guarded: tuple[Relay, str], http: aiohttp.ClientSession
) -> None:
    relay, token = guarded
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)
    await alice.add_device()
    await bob.add_device()
    kept = await alice.send(bob, "kept")
    opened = await alice.send(bob, "opened")
    recalled = await alice.send(bob, "recalled")
    await bob.read(alice, opened.message_id)
    relay.clock.advance(MINUTE)
    await alice.recall(recalled)
    size = (await relay.services.storage.stats())["ciphertext_bytes"]
    assert size > 0
    wanted = {"live": 1.0, "complete": 1.0, "recalled": 1.0, "expired": 0.0}
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        _, text = await _metrics(http, relay, token)
        held = {s: _value(text, f'relay_messages_held{{state="{s}"}}') for s in wanted}
        if held == wanted and _value(text, "relay_ciphertext_bytes_held") == size:
            break
        assert asyncio.get_running_loop().time() < deadline, f"the gauges stayed at {held}"
        await asyncio.sleep(0.05)
    assert _value(text, "relay_messages_stored_total") == 3.0  # the counter is unchanged
    reads = _value(text, "relay_db_read_seconds_count")
    assert reads is not None
    assert reads > 0
    view = await relay.services.storage.get_message(kept.message_id)
    assert view is not None
    assert view.message.state == "live"  # the live one is the one nobody touched


def test_a_token_file_that_is_too_short_stops_the_start(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text("Qx7vTiny\n")
    result = relay_cli(
        tmp_path,
        "serve",
        "--port",
        "0",
        "--data-dir",
        tmp_path / "data",
        "--metrics-token-file",
        token_file,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, result.stderr
    assert "metrics_token_file" in errors[0]
    assert "Qx7vTiny" not in result.stderr  # the token itself is never echoed
