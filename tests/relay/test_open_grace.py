"""A device whose answer to "open" was lost can open again, for ``open_grace``.

The crash suite found this: a relay killed between releasing the last
device's key and sending the answer used to delete the ciphertext and wraps
at once, so that device could never read a message the report rightly
called opened.  Now both stay for ``open_grace`` after the last release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from driver import MINUTE, Clock, Person, Relay, RelayRefused, start_relay


@pytest.fixture
async def graceful(tmp_path: Path, database_options: dict[str, Any]) -> AsyncIterator[Relay]:
    relay = await start_relay(tmp_path / "relay", Clock(), open_grace="10m", **database_options)
    yield relay
    await relay.runner.cleanup()


async def test_the_last_device_can_open_again_until_the_grace_is_over(
    graceful: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob = Person("alice", graceful, http), Person("bob", graceful, http)
    await alice.add_device()
    await bob.add_device()
    header = await alice.send(bob, "read twice")
    path = f"/v1/messages/{header.message_id.hex()}"
    first = (await bob.call("POST", path + "/open", {}))["wrap"]
    # The answer was lost on the way; Bob's device asks again, and can still read it.
    assert await bob.read(alice, header.message_id) == "read twice"
    assert (await bob.call("POST", path + "/open", {}))["wrap"] == first
    assert (await alice.report(header.message_id))["state"] == "live"

    graceful.clock.advance(10 * MINUTE + 1)
    assert (await graceful.services.retention.run_once()).completed == 1
    with pytest.raises(RelayRefused) as gone:
        await bob.call("POST", path + "/open", {})
    assert gone.value.status == 410
    assert gone.value.code == "message_complete"
    report = await alice.report(header.message_id)
    assert report["state"] == "complete"
    assert [d["state"] for d in report["devices"]] == ["opened"]


async def test_a_recall_in_the_grace_destroys_everything_at_once(
    graceful: Relay, http: aiohttp.ClientSession
) -> None:
    alice, bob = Person("alice", graceful, http), Person("bob", graceful, http)
    await alice.add_device()
    await bob.add_device()
    header = await alice.send(bob, "regretted")
    await bob.read(alice, header.message_id)
    graceful.clock.advance(MINUTE)
    answer = await alice.recall(header)
    assert [d["state"] for d in answer["report"]["devices"]] == ["pending"]
    view = await graceful.services.storage.get_message(header.message_id)
    assert view is not None
    assert view.message.envelope is None
    assert all(d.wrap is None for d in view.deliveries)
    with pytest.raises(RelayRefused) as gone:
        await bob.call("POST", f"/v1/messages/{header.message_id.hex()}/open", {})
    assert gone.value.status == 410
