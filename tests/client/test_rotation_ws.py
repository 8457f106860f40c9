"""The client's wrapping-key requests go over its event WebSocket while it holds one.

The client library runs in-process against a relay process on loopback; the
relay's own request counters (``/metrics``, labelled ``ws:OP`` for
WebSocket requests and by path for HTTP) say which transport carried each
request.  A refusal is the same typed error, with the same code, either way.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from client import account, rotation
from client.client import Client
from client.errors import RelayRefused

from relay_process import RelayProcess

PASSPHRASE = "a long enough passphrase"
CERTIFICATE = "/v1/devices/self/certificate"


async def _counts(relay: RelayProcess) -> dict[tuple[str, str], float]:
    """relay_requests_total by (route, status), as the relay counts them."""
    async with aiohttp.ClientSession() as http, http.get(relay.url() + "/metrics") as answer:
        text = await answer.text()
    found = re.findall(r'relay_requests_total\{route="([^"]+)",status="(\d+)"\} ([0-9.e+]+)', text)
    return {(route, status): float(count) for route, status, count in found}


async def test_rotation_and_key_status_use_the_websocket_and_refusals_match_http(
    tmp_path: Path, relay: RelayProcess
) -> None:
    bob = Client.create(tmp_path / "bob", PASSPHRASE, strength="interactive")
    try:
        await bob.register(relay.url(), "bob")
        core = bob.core
        await account.ensure_session(core)
        (first,) = rotation.key_rows(core.store)
        async with core.relay.websocket(core.store.get_int("cursor")):
            done = await rotation.rotate(core)
            assert done.key_id != first.key_id
            status = await core.relay.call("GET", "/v1/devices/self/keys")
            assert {k["key_id"] for k in status["keys"]} == {first.key_id, done.key_id}
            with pytest.raises(RelayRefused) as over_ws:
                await core.relay.call("POST", CERTIFICATE, {"certificate": b"not a certificate"})
        assert core.relay.channel is None  # closed with the socket: HTTP again
        with pytest.raises(RelayRefused) as over_http:
            await core.relay.call("POST", CERTIFICATE, {"certificate": b"not a certificate"})
        assert (over_ws.value.status, over_ws.value.code) == (400, "decode_failure")
        assert (over_http.value.status, over_http.value.code) == (400, "decode_failure")
        assert over_ws.value.sentence == over_http.value.sentence
        counts = await _counts(relay)
        assert counts.get(("ws:certificate", "201")) == 1
        assert counts.get(("ws:certificate", "400")) == 1
        assert counts.get(("ws:keys", "200")) == 1
        assert ("/v1/devices/self/keys", "200") not in counts
        assert counts.get((CERTIFICATE, "400")) == 1
        assert (CERTIFICATE, "201") not in counts
        # The rotated key is the one the relay serves, and a message wrapped to it opens.
        alice = Client.create(tmp_path / "alice", PASSPHRASE, strength="interactive")
        try:
            await alice.register(relay.url(), "alice")
            await alice.add_contact("bob", "bob")
            sent = await alice.send("bob", "to the key rotated over the socket")
            await bob.add_contact("alice", "alice")
            await bob.sync()
            opened = await bob.open_message(sent.message_id)
            assert opened.text == "to the key rotated over the socket"
        finally:
            await alice.close()
    finally:
        await bob.close()
