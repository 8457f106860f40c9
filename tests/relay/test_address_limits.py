"""The routes that need no session: a rate limit per client address, and a cap on challenges.

Each challenge is a stored row, so an unlimited ``/v1/challenge`` lets anyone
fill the disk.  These tests run a real relay and count the rows in its
database file; X-Forwarded-For is believed only from configured proxies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e_recall import wire
from relay.addresses import client_address, rate_key
from relay.units import parse_networks

from driver import MINUTE, Clock, Person, Relay, RelayRefused, start_relay


async def _challenge(
    http: aiohttp.ClientSession, relay: Relay, forwarded: str | None = None
) -> tuple[int, dict[str, Any], str | None]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with http.post(relay.url + "/v1/challenge", headers=headers) as response:
        body = wire.decode(await response.read())
        return response.status, body, response.headers.get("Retry-After")


async def _challenge_rows(relay: Relay) -> int:
    return await relay.count("SELECT count(*) FROM challenges")


@pytest.fixture
async def limited(
    tmp_path: Path, clock: Clock, database_options: dict[str, Any]
) -> AsyncIterator[Relay]:
    relay = await start_relay(tmp_path, clock, address_requests_per_minute=5, **database_options)
    yield relay
    await relay.runner.cleanup()


async def test_one_address_gets_a_few_challenges_a_minute_and_leaves_a_few_rows(
    limited: Relay, http: aiohttp.ClientSession
) -> None:
    answers = [await _challenge(http, limited) for _ in range(50)]
    assert [status for status, _, _ in answers[:5]] == [200] * 5
    refused = answers[5:]
    assert {status for status, _, _ in refused} == {429}
    assert {body["error"] for _, body, _ in refused} == {"rate_limited"}
    assert "your address" in refused[0][1]["message"]
    assert all(retry is not None and int(retry) >= 1 for _, _, retry in refused)
    assert await _challenge_rows(limited) == 5


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    limited: Relay, http: aiohttp.ClientSession
) -> None:
    statuses = [
        (await _challenge(http, limited, forwarded=f"198.51.100.{index}"))[0] for index in range(8)
    ]
    assert statuses == [200] * 5 + [429] * 3  # a made-up address buys nothing


async def test_the_limit_covers_register_and_login_but_not_signed_in_users(
    limited: Relay, http: aiohttp.ClientSession
) -> None:
    alice = Person("alice", limited, http)
    await alice.add_device()  # challenge, register, challenge, login: 4 of the 5
    with pytest.raises(RelayRefused) as refused:
        await alice.login()  # needs two more
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    await alice.call("GET", f"/v1/users/{alice.user_id.hex()}")  # her session is not limited


async def test_behind_a_trusted_proxy_each_client_has_its_own_budget(
    tmp_path: Path, clock: Clock, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(
        tmp_path,
        clock,
        address_requests_per_minute=3,
        trusted_proxies="127.0.0.1, 10.0.0.0/8",
        **database_options,
    )
    try:
        first = [(await _challenge(http, relay, "203.0.113.7"))[0] for _ in range(4)]
        assert first == [200, 200, 200, 429]
        # another client behind the same proxy is counted apart
        assert (await _challenge(http, relay, "203.0.113.8"))[0] == 200
        # a client cannot escape by writing its own entries: the proxy appends the real one,
        # and an inner trusted proxy (10.1.2.3) is skipped
        for spoofed in ("192.0.2.99, 203.0.113.7", "192.0.2.98, 203.0.113.7, 10.1.2.3"):
            assert (await _challenge(http, relay, spoofed))[0] == 429
    finally:
        await relay.runner.cleanup()


async def test_outstanding_challenges_are_capped_and_expire(
    tmp_path: Path, clock: Clock, http: aiohttp.ClientSession, database_options: dict[str, Any]
) -> None:
    relay = await start_relay(tmp_path, clock, max_pending_challenges=3, **database_options)
    try:
        assert [(await _challenge(http, relay))[0] for _ in range(3)] == [200] * 3
        status, body, retry_after = await _challenge(http, relay)
        assert (status, body["error"]) == (503, "busy")
        assert "try again" in body["message"]
        assert retry_after is not None
        assert await _challenge_rows(relay) == 3
        clock.advance(6 * MINUTE)  # every challenge expired
        await relay.services.retention.run_once()  # the retention job removes them
        assert await _challenge_rows(relay) == 0
        alice = Person("alice", relay, http)
        await alice.add_device()  # and people can log in again
        assert alice.devices[0].token
    finally:
        await relay.runner.cleanup()


# how the address is worked out -------------------------------------------------------------
PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.1", [], "192.0.2.1"),
        ("192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # not a proxy: the header is ignored
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", ["6.6.6.6", "203.0.113.5, 10.0.0.2"], "203.0.113.5"),  # two header lines
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # only proxies: the farthest one
        ("127.0.0.1", ["203.0.113.5, not-an-address"], "127.0.0.1"),  # garbled: the proxy
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("127.0.0.1", ["203.0.113.5:5000"], "203.0.113.5"),
        ("::ffff:127.0.0.1", ["203.0.113.5"], "203.0.113.5"),  # IPv4-mapped peer
    ],
)
def test_the_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == ipaddress.ip_address(client)


def test_ipv6_clients_are_counted_per_64() -> None:
    one = rate_key(ipaddress.ip_address("2001:db8:1:2::1"))
    assert one == rate_key(ipaddress.ip_address("2001:db8:1:2:ffff::9"))
    assert one != rate_key(ipaddress.ip_address("2001:db8:1:3::1"))
    assert rate_key(ipaddress.ip_address("192.0.2.1")) != rate_key(
        ipaddress.ip_address("192.0.2.2")
    )
    assert client_address(None, ["203.0.113.5"], PROXIES) is None
