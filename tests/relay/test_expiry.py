"""Disappearing messages at a real relay process: the timer job, the report, the events.

Every test runs ``e2e-recall-relay serve`` as a subprocess on loopback with
the wall clock, sends a message whose signed header carries a timer, and
waits (with a deadline, never asserting how long it took) for the state the
timer must bring: ciphertext, wraps and blobs gone from the database (SQLite
or PostgreSQL, the test's backend), 410
for the devices, ``expired`` in the report, an ``expired`` event on the
recipient's WebSocket and a report event on the sender's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import stored_rows

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.body import encrypt_body
from e2e_recall.device_admin import sign_device_revocation
from e2e_recall.domains import SIG_ENVELOPE
from e2e_recall.envelope import signed_envelope_bytes

from blob_client import upload
from driver import Person, RelayRefused, states
from relay_process import RelayProcess, Target, relay_process

T = TypeVar("T")
BIG = wire.Limits(max_size=1 << 22, max_bin=1 << 21)
SENT, OPENED = er.ExpireFrom.SENT, er.ExpireFrom.OPENED
DEADLINE = 20.0  # seconds: generous for a loaded machine; no assertion is about speed


async def until(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``check`` until it returns something, or fail after DEADLINE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, database_options: dict[str, Any]
) -> AsyncIterator[tuple[RelayProcess, Person, Person]]:
    """A relay process on the test's backend, Alice with one device and Bob with two."""
    url = database_options.get("database_url")
    with relay_process(tmp_path, None, *(["--database-url", url] if url else [])) as relay:
        async with aiohttp.ClientSession() as http:
            async with http.get(relay.url() + "/.well-known/e2e-recall") as response:
                known = wire.decode(await response.read(), limits=BIG)
            target = Target(relay.url(), known["relay_id"])
            alice = Person("alice", target, http)  # type: ignore[arg-type]
            bob = Person("bob", target, http)  # type: ignore[arg-type]
            await alice.add_device(handle="alice")
            await bob.add_device(handle="bob")
            await bob.add_device()
            yield relay, alice, bob


async def stored(relay: RelayProcess, message_id: bytes) -> dict[str, Any]:
    """What the relay's database holds of one message, read by the test directly."""
    database = relay.database
    ((state, envelope),) = await stored_rows.query(
        database, "SELECT state, envelope FROM messages WHERE message_id = ?", message_id
    )
    wraps = [
        row[0]
        for row in await stored_rows.query(
            database,
            "SELECT wrap FROM deliveries WHERE message_id = ? ORDER BY device_id",
            message_id,
        )
    ]
    blobs = await stored_rows.count(
        database, "SELECT count(*) FROM blobs WHERE message_id = ?", message_id
    )
    return {"state": state, "envelope": envelope, "wraps": wraps, "blobs": blobs}


WINDOW = 16


def windows(secret: bytes) -> set[bytes]:
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


DATABASE_ROWS = "the database's rows"  # what left_on_disk calls PostgreSQL's hits


def _holds(data: bytes, secrets: set[bytes]) -> bool:
    return any(data[i : i + WINDOW] in secrets for i in range(len(data) - WINDOW + 1))


async def left_on_disk(relay: RelayProcess, secrets: set[bytes]) -> list[str]:
    """Which of the relay's files still hold any 16-byte window of ``secrets``.

    On PostgreSQL the database is not among the relay's files: its rows are
    searched instead (:data:`DATABASE_ROWS`); what the server's own files
    keep is the PostgreSQL remanence work's subject.
    """
    found = [
        path.name
        for path in sorted(relay.data_dir.rglob("*"))
        if path.is_file() and _holds(path.read_bytes(), secrets)
    ]
    if isinstance(relay.database, str) and _holds(
        await stored_rows.contents(relay.database), secrets
    ):
        found.append(DATABASE_ROWS)
    return found


def blob_files(relay: RelayProcess) -> list[Path]:
    root = relay.data_dir / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def frames_until(ws: Any, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Read event frames until one satisfies ``wanted``; all of them."""
    seen = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=max(0.1, deadline - loop.time()))
        assert message.type is aiohttp.WSMsgType.BINARY, message
        frame = wire.decode(message.data, limits=BIG)
        seen.append(frame)
        if wanted(frame):
            return seen


def expired_for(message_id: bytes) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("kind") == "expired" and f.get("message_id") == message_id


async def test_a_timer_from_sending_destroys_everything_and_tells_every_device(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    async with world(tmp_path, database_options) as (relay, alice, bob):
        blob = os.urandom(5000)
        blob_id = await upload(alice, blob)
        assert len(blob_files(relay)) == 1
        header, sealed = alice.seal(bob, "gone in two seconds", expire_after=2000, expire_from=SENT)
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        parts = wire.decode(sealed.envelope)
        secrets = windows(parts["nonce"] + parts["ciphertext"] + parts["signature"]) | windows(blob)
        for item in wraps:
            secrets |= windows(item["wrap"])
        async with bob.websocket(0) as bob_ws, alice.websocket(0) as alice_ws:
            await alice.call(
                "POST",
                "/v1/messages",
                {"envelope": sealed.envelope, "wraps": wraps, "blobs": [blob_id]},
            )
            assert await bob.read(alice, header.message_id, device=0) == "gone in two seconds"
            await bob.call("GET", f"/v1/messages/{header.message_id.hex()}", device=1)  # sealed
            before = await stored(relay, header.message_id)
            assert before["envelope"] is not None
            assert all(w is not None for w in before["wraps"])
            held = await left_on_disk(relay, secrets)
            assert any(name.startswith("relay.db") or name == DATABASE_ROWS for name in held), held

            frames = await frames_until(bob_ws, expired_for(header.message_id))
            event = wire.decode(frames[-1]["payload"])
            assert event["conversation_id"] == header.conversation_id
            assert event["expired_at"] >= header.sent_at + 2000

            def all_expired(frame: dict[str, Any]) -> bool:
                if frame.get("kind") != "report":
                    return False
                return states(wire.decode(frame["payload"])) == ["expired", "expired"]

            await frames_until(alice_ws, all_expired)

        after = await stored(relay, header.message_id)
        assert after == {"state": "expired", "envelope": None, "wraps": [None, None], "blobs": 0}
        assert blob_files(relay) == []
        report = await alice.report(header.message_id)
        assert report["state"] == "expired"
        assert report["files"]["destroyed"] is True
        lines = {d["device_id"]: d for d in report["devices"]}
        opened = lines[bob.devices[0].secrets.device_id]
        sealed_line = lines[bob.devices[1].secrets.device_id]
        assert opened["expired_at"] is not None
        for line, exposed in ((opened, True), (sealed_line, False)):
            text = er.describe(
                er.DeviceReport(
                    user=line["user"],
                    device_id=line["device_id"],
                    state=er.DeviceState(line["state"]),
                    key_released_at=line["key_released_at"],
                    expired_at=line["expired_at"],
                )
            )
            assert text.startswith("Expired: the relay destroyed it at ")
            assert ("possibly already read" in text) is exposed
        for device in (0, 1):
            for method, path in (("GET", ""), ("POST", "/open")):
                with pytest.raises(RelayRefused) as refused:
                    await bob.call(
                        method,
                        f"/v1/messages/{header.message_id.hex()}{path}",
                        {} if method == "POST" else None,
                        device=device,
                    )
                assert (refused.value.status, refused.value.code) == (410, "message_expired")

        # Nothing of the ciphertext, the wraps or the file is left in any of the relay's files
        # (database, WAL, blob directory) once its own checkpoint and scrub have run.
        async def scrubbed() -> bool:
            return not await left_on_disk(relay, secrets)

        await until(scrubbed, "every byte of the expired message to leave the relay's disk")

        # Bob's opened device confirms its deletion: its line moves from expired to deleted.
        receipt = er.sign_deletion_receipt(
            bob.devices[0].secrets.signing_key,
            user=bob.user_id,
            device_id=bob.devices[0].secrets.device_id,
            message_id=header.message_id,
            conversation_id=header.conversation_id,
            deleted_at=alice.relay.clock.now,
            opened_at=opened["key_released_at"],
            cause=er.DeletionCause.EXPIRY,
        )
        await bob.call(
            "POST",
            f"/v1/messages/{header.message_id.hex()}/receipt",
            {"receipt": receipt.signed},
            device=0,
        )
        lines = {d["device_id"]: d for d in (await alice.report(header.message_id))["devices"]}
        assert lines[bob.devices[0].secrets.device_id]["state"] == "deleted"
        assert lines[bob.devices[1].secrets.device_id]["state"] == "expired"


async def test_a_timer_from_opening_runs_per_device_and_spares_the_unopened(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    async with world(tmp_path, database_options) as (relay, alice, bob):
        header = await alice.send(bob, "after you read it", expire_after=1500, expire_from=OPENED)
        first, second = (d.secrets.device_id for d in bob.devices)
        await bob.read(alice, header.message_id, device=0)

        async def first_expired() -> dict[str, Any] | None:
            report = await alice.report(header.message_id)
            lines = {d["device_id"]: d for d in report["devices"]}
            return report if lines[first]["state"] == "expired" else None

        report = await until(first_expired, "the opened device's copy to expire")
        lines = {d["device_id"]: d for d in report["devices"]}
        assert lines[second]["state"] == "queued"  # never opened: its copy stays, sealed
        assert lines[second]["expires_at"] is None
        held = await stored(relay, header.message_id)
        assert held["state"] == "live"
        assert held["envelope"] is not None
        assert held["wraps"][sorted([first, second]).index(first)] is None
        assert held["wraps"][sorted([first, second]).index(second)] is not None

        # The second device opens it later: its own timer starts then, and when it ends
        # nothing is left to hold, so the ciphertext goes too.
        assert await bob.read(alice, header.message_id, device=1) == "after you read it"

        async def message_expired() -> dict[str, Any] | None:
            held = await stored(relay, header.message_id)
            return held if held["state"] == "expired" else None

        held = await until(message_expired, "the whole message to expire")
        assert held == {"state": "expired", "envelope": None, "wraps": [None, None], "blobs": 0}
        assert states(await alice.report(header.message_id)) == ["expired", "expired"]


async def test_recalling_an_expired_message_is_accepted_and_changes_nothing(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    async with world(tmp_path, database_options) as (relay, alice, bob):
        header = await alice.send(bob, "short", expire_after=1000, expire_from=SENT)

        async def gone() -> bool:
            return (await stored(relay, header.message_id))["state"] == "expired"

        await until(gone, "the message to expire")
        answer = await alice.recall(header)
        assert answer["expired"] is True
        assert answer["already_recalled"] is False
        assert answer["report"]["state"] == "expired"
        assert answer["report"]["revocation"] is None


def _signed_with_timer(alice: Person, bob: Person, **timer: Any) -> bytes:
    """An envelope Alice really signed whose header carries ``timer`` as given."""
    header, _ = alice.seal(bob, "x")
    fields = header.to_wire() | timer
    header_bytes = wire.encode(fields)
    key = os.urandom(32)
    nonce, ciphertext = encrypt_body(er.Body("x"), key, header_bytes, os.urandom)
    payload = signed_envelope_bytes(header_bytes, nonce, ciphertext)[len(SIG_ENVELOPE) :]
    signature = alice.identity.sign(SIG_ENVELOPE, payload)
    return wire.encode(
        {"header": header_bytes, "nonce": nonce, "ciphertext": ciphertext, "signature": signature}
    )


@pytest.mark.parametrize(
    "timer",
    [
        {"expire_after": 999, "expire_from": "sent"},
        {"expire_after": er.expiry.MAX_EXPIRE_MS + 1, "expire_from": "opened"},
        {"expire_after": 5000, "expire_from": None},
        {"expire_after": None, "expire_from": "sent"},
        {"expire_after": 5000, "expire_from": "read"},
    ],
)
async def test_a_malformed_timer_is_refused_with_bad_expiry(
    tmp_path: Path, timer: dict[str, Any], database_options: dict[str, Any]
) -> None:
    async with world(tmp_path, database_options) as (relay, alice, bob):
        envelope = _signed_with_timer(alice, bob, **timer)
        length = len(await _a_wrap(alice, bob))
        wraps = [
            {
                "device_id": d.secrets.device_id,
                "key_id": d.secrets.wrap_key.public_key.key_id,
                "wrap": os.urandom(length),
            }
            for d in bob.devices
        ]
        with pytest.raises(RelayRefused) as refused:
            await alice.call(
                "POST", "/v1/messages", {"envelope": envelope, "wraps": wraps, "blobs": []}
            )
        assert (refused.value.status, refused.value.code) == (400, "bad_expiry")
        assert "timer" in refused.value.message
        assert await stored_rows.count(relay.database, "SELECT count(*) FROM messages") == 0


async def _a_wrap(alice: Person, bob: Person) -> bytes:
    header, sealed = alice.seal(bob, "x")
    return (await alice.wraps_for(bob, header, sealed.message_key))[0]["wrap"]


async def test_a_device_revoked_before_the_timer_does_not_keep_the_message(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    """Found by the crash suite: a revoked device's line kept the ciphertext past the timer."""
    async with world(tmp_path, database_options) as (relay, alice, bob):
        header, sealed = alice.seal(bob, "two seconds", expire_after=2000, expire_from=SENT)
        wraps = await alice.wraps_for(bob, header, sealed.message_key)
        body = {"envelope": sealed.envelope, "wraps": wraps, "blobs": []}
        await alice.call("POST", "/v1/messages", body)
        assert await bob.read(alice, header.message_id, device=0) == "two seconds"
        revocation = sign_device_revocation(
            bob.identity,
            device_id=bob.devices[1].secrets.device_id,
            revoked_at=alice.relay.clock.now,
            relay=alice.relay.relay_id,
        ).signed
        target = bob.devices[1].secrets.device_id.hex()
        await bob.call("POST", f"/v1/devices/{target}/revoke", {"revocation": revocation})
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while (await stored(relay, header.message_id))["state"] != "expired":
            assert asyncio.get_running_loop().time() < deadline, await stored(
                relay, header.message_id
            )
            await asyncio.sleep(0.1)
        assert (await stored(relay, header.message_id))["envelope"] is None
        states_now = {line["state"] for line in (await alice.report(header.message_id))["devices"]}
        assert states_now == {"expired", "never_delivered"}


async def test_a_recall_after_one_opened_copy_expired_purges_the_rest_with_a_valid_receipt(
    tmp_path: Path, database_options: dict[str, Any]
) -> None:
    """One device's copy ended by its from-opened timer, the other's still sealed: recall it.

    The expired copy's row keeps the moment its key was released; the purge
    receipt must not attest that for an ``expired`` entry (docs/protocol.md),
    and the recall was a 500 when it did.
    """
    async with world(tmp_path, database_options) as (relay, alice, bob):
        header = await alice.send(bob, "read and gone", expire_after=1000, expire_from=OPENED)
        first, second = (d.secrets.device_id for d in bob.devices)
        await bob.read(alice, header.message_id, device=0)

        async def first_expired() -> bool:
            report = await alice.report(header.message_id)
            return {d["device_id"]: d["state"] for d in report["devices"]}[first] == "expired"

        await until(first_expired, "the opened device's copy to expire")
        answer = await alice.recall(header)
        assert answer["already_recalled"] is False
        async with alice.http.get(relay.url() + "/.well-known/e2e-recall") as response:
            known = wire.decode(await response.read(), limits=BIG)
        receipt = er.verify_purge_receipt(
            answer["report"]["purge_receipt"],
            er.VerifyKey(known["relay_key"]),
            message_id=header.message_id,
            conversation_id=header.conversation_id,
        )
        attested = {d.device_id: d for d in receipt.devices}
        assert attested[first].state is er.DeviceState.EXPIRED
        assert attested[first].key_released_at is None
        assert attested[second].key_released_at is None  # never opened
        held = await stored(relay, header.message_id)
        assert held["envelope"] is None
        assert held["wraps"] == [None, None]
