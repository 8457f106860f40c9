"""The relay as a real process: ``python -m relay.cli serve`` on a loopback port.

Health, metrics and the relay's published key; structured logs that carry no
secret after a whole register/send/open/recall exchange; graceful shutdown on
SIGTERM and SIGINT (websockets closed with 1001, in-flight requests finished,
exit status 0); data kept across a restart; and HTTPS with a self-signed
certificate.  Every process started here is killed in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ws_close import received_close_code

import e2e_recall as er
from e2e_recall import wire
from e2e_recall.identity import fingerprint

from driver import Person, RelayRefused
from relay_process import EXIT_TIMEOUT, Target, relay_cli, relay_process

MSGPACK = "application/msgpack"
BIG = wire.Limits(max_size=1 << 22, max_bin=1 << 21)


_cli = relay_cli


@contextlib.asynccontextmanager
async def client(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else aiohttp.TCPConnector()
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def _well_known(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/.well-known/e2e-recall") as response:
        assert response.status == 200
        assert response.content_type == MSGPACK
        answer = wire.decode(await response.read(), limits=BIG)
    assert isinstance(answer, dict)
    return answer


async def _people(
    http: aiohttp.ClientSession, url: str, scheme_url: str | None = None
) -> tuple[Target, Person, Person]:
    known = await _well_known(http, url)
    relay = Target(scheme_url or url, known["relay_id"])
    alice, bob = Person("alice", relay, http), Person("bob", relay, http)  # type: ignore[arg-type]
    await alice.add_device(handle="alice")
    await bob.add_device(handle="bob")
    return relay, alice, bob


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), timeout=10)
    assert message.type is aiohttp.WSMsgType.BINARY, message
    frame = wire.decode(message.data, limits=BIG)
    assert isinstance(frame, dict)
    return frame


async def _until_caught_up(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    events = []
    while (frame := await _frame(ws))["type"] != "caught_up":
        events.append(frame)
    return events


def _events(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") == event]


# starting, health, metrics, the relay key --------------------------------------------------------
async def test_serve_starts_on_loopback_and_answers_health_metrics_and_its_key(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with relay_process(tmp_path, data) as relay:
        async with client() as http:
            async with http.get(relay.url() + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "database": "ok"}
            async with http.get(relay.url() + "/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                metrics = await response.text()
            known = await _well_known(http, relay.url())
        assert relay.stop() == 0
        entries = relay.log_entries()

    assert 'relay_requests_total{route="/healthz",status="200"} 1.0' in metrics
    assert "relay_websockets_open 0.0" in metrics
    assert "relay_requests_in_flight 1.0" in metrics  # the scrape itself
    for name in (
        "relay_messages_stored_total",
        "relay_recalls_total",
        "relay_request_seconds",
        "relay_db_ping_seconds",
        "relay_db_commit_seconds",
    ):
        assert f"# TYPE {name}" in metrics, name

    listening = _events(entries, "listening")
    assert len(listening) == 1
    assert listening[0]["host"] == "127.0.0.1"
    assert listening[0]["port"] == relay.port
    assert listening[0]["tls"] is False
    assert (data / "relay.db").is_file()

    assert known["protocol_version"] == 1
    key = er.VerifyKey(known["relay_key"])
    assert known["relay_id"] == fingerprint(key)
    printed = _cli(tmp_path, "key", "--data-dir", data).stdout
    assert f"relay key {known['relay_key'].hex()}" in printed
    assert known["relay_id"].hex() in printed


async def test_serve_takes_settings_from_file_environment_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(
        "[policy]\n"
        'max_sealed_window = "2d"\n'
        'max_opened_window = "20m"\n'
        "recalls_per_conversation_per_day = 0\n"
        "[limits]\n"
        'max_message_size = "64KiB"\n'
        "[retention]\n"
        'retention = "1d"\n'
    )
    with relay_process(
        tmp_path,
        None,
        "--max-opened-window",
        "30m",
        E2E_RECALL_RELAY_CONFIG=str(file),
        E2E_RECALL_RELAY_MAX_OPENED_WINDOW="25m",
        E2E_RECALL_RELAY_RETENTION="3d",
        E2E_RECALL_RELAY_ONLY_WHILE_UNREAD="yes",
    ) as relay:
        async with client() as http:
            known = await _well_known(http, relay.url())
    policy, limits = known["policy"], known["limits"]
    assert policy["max_opened_window_ms"] == 30 * 60_000  # flag over environment over file
    assert policy["max_sealed_window_ms"] == 2 * 86_400_000  # file
    assert policy["retention_ms"] == 3 * 86_400_000  # environment over file
    assert policy["only_while_unread"] is True  # environment
    assert policy["recalls_per_conversation_per_day"] is None  # 0 in the file: no limit
    assert limits["max_message_size"] == 64 * 1024


# log blindness -----------------------------------------------------------------------------------
def _forms(blob: bytes) -> list[str]:
    """The ways a careless log line could spell these bytes."""
    forms = [
        blob.hex(),
        base64.b64encode(blob).decode(),
        base64.urlsafe_b64encode(blob).decode().rstrip("="),
    ]
    if len(blob) >= 16:
        forms += [blob[-16:].hex(), base64.b64encode(blob[-15:]).decode()]
    if len(blob) >= 48:
        middle = blob[len(blob) // 2 : len(blob) // 2 + 16]
        forms += [middle.hex()]
    return forms


async def test_logs_are_json_and_never_contain_tokens_content_or_keys(tmp_path: Path) -> None:
    plaintext = "the launch code is 7471-Zebra-Quartz"
    bogus_token = "bogus-token-" + os.urandom(12).hex()
    with relay_process(tmp_path, None, "--log-level", "debug") as relay:
        async with client() as http:
            _, alice, bob = await _people(http, relay.url())
            async with bob.websocket() as ws:
                assert await _until_caught_up(ws) == []
                header, sealed = alice.seal(bob, plaintext)
                wraps = await alice.wraps_for(bob, header, sealed.message_key)
                sent = await alice.call(
                    "POST",
                    "/v1/messages",
                    {"envelope": sealed.envelope, "wraps": wraps, "blobs": []},
                )
                assert sent["created"] is True
                events = await _until_caught_up(ws)
                assert [e["kind"] for e in events] == ["message"]
                async with http.get(relay.url() + "/metrics") as response:
                    live_metrics = await response.text()

                assert await bob.read(alice, header.message_id) == plaintext
                report = await alice.report(header.message_id)
                opened_at = report["devices"][0]["key_released_at"]
                revocation = alice.revocation(header)
                answer = await alice.call(
                    "POST",
                    f"/v1/messages/{header.message_id.hex()}/recall",
                    {"revocation": revocation.signed, "replacement": None},
                )
                assert answer["already_recalled"] is False
                events = await _until_caught_up(ws)
                assert [e["kind"] for e in events] == ["revocation"]
            await bob.delete_and_receipt(alice, revocation.signed, opened_at=opened_at)

            # refusals are logged too: none of them may echo what was sent
            with pytest.raises(RelayRefused) as refused:
                await alice.call("GET", "/v1/sync", token=bogus_token)
            assert refused.value.status == 401
            with pytest.raises(RelayRefused):
                await alice.call("POST", "/v1/messages", {"envelope": sealed.envelope})
            async with http.post(
                relay.url() + "/v1/messages",
                data=plaintext.encode(),
                headers={
                    "Content-Type": MSGPACK,
                    "Authorization": f"Bearer {alice.devices[0].token}",
                },
            ) as response:
                assert response.status == 400

            async with http.get(relay.url() + "/metrics") as response:
                metrics = await response.text()
        assert relay.stop() == 0
        entries = relay.log_entries()
        stderr = relay.stderr()

    assert "relay_websockets_open 1.0" in live_metrics
    assert "relay_messages_stored_total 1.0" in metrics
    assert 'relay_recalls_total{outcome="accepted"} 1.0' in metrics
    assert 'relay_requests_total{route="/v1/messages",status="201"} 1.0' in metrics

    # the logs saw the exchange (so the check below is not vacuous) ...
    requests = _events(entries, "request")
    routes = {(e["route"], e["status"]) for e in requests}
    assert ("/v1/messages", 201) in routes
    assert ("/v1/messages/{message_id}/recall", 200) in routes
    assert ("/v1/messages/{message_id}/open", 200) in routes
    assert ("/v1/sync", 401) in routes
    assert any(e["level"] == "debug" for e in entries) or len(entries) > len(requests)

    # ... and never what was in it
    tokens = [d.token for p in (alice, bob) for d in p.devices if d.token]
    assert len(tokens) == 2
    secrets: dict[str, list[str]] = {
        "plaintext": [plaintext, "7471-Zebra-Quartz"],
        "bogus token": [bogus_token],
        "token": tokens,
        "envelope": _forms(sealed.envelope),
        "message key": _forms(sealed.message_key),
        "revocation": _forms(revocation.signed),
    }
    for index, item in enumerate(wraps):
        secrets[f"wrap {index}"] = _forms(item["wrap"])
    for name, forms in secrets.items():
        for form in forms:
            assert form not in stderr, f"the {name} appears in the relay's log"
    blobs = [sealed.envelope, sealed.message_key, revocation.signed] + [w["wrap"] for w in wraps]
    for entry in entries:  # nor as the repr of bytes (str(b"...") of a careless extra field)
        for value in entry.values():
            if isinstance(value, str):
                for blob in blobs:
                    assert repr(blob[-12:])[2:-1] not in value, entry


# graceful shutdown -------------------------------------------------------------------------------
async def _until_in_flight(http: aiohttp.ClientSession, url: str, wanted: int) -> None:
    """Wait until the relay's ``relay_requests_in_flight`` gauge reaches ``wanted``."""
    deadline = time.monotonic() + 30
    while True:
        async with http.get(url + "/metrics") as response:
            text = await response.text()
        (line,) = [x for x in text.splitlines() if x.startswith("relay_requests_in_flight ")]
        if float(line.split()[1]) >= wanted:
            return
        assert time.monotonic() < deadline, f"in flight: {line}"
        await asyncio.sleep(0.05)


async def _refused(url: str) -> bool:
    """True once a fresh connection to the relay is refused."""
    async with client() as fresh:
        try:
            async with fresh.get(url + "/healthz") as response:
                await response.read()
        except aiohttp.ClientConnectionError:
            return True
    return False


async def test_sigterm_closes_websockets_with_1001_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with relay_process(tmp_path, data) as relay:
        async with client() as http:
            _, alice, bob = await _people(http, relay.url())
            await alice.send(bob, "stored before the shutdown")
            async with bob.websocket() as ws:
                assert [e["kind"] for e in await _until_caught_up(ws)] == ["message"]
                relay.send_signal(signal.SIGTERM)
                assert await received_close_code(ws) == aiohttp.WSCloseCode.GOING_AWAY
            assert await _refused(relay.url()), "the relay still accepts connections"
            assert await relay.wait_async() == 0
        entries = relay.log_entries()

    assert [e["signal"] for e in _events(entries, "shutting_down")] == ["SIGTERM"]
    assert len(_events(entries, "stopped")) == 1  # the database was closed
    stats = _cli(tmp_path, "stats", "--data-dir", data)
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    assert sum(v for k, v in counts.items() if k.startswith("messages_")) == 1
    assert counts["users"] == 2
    check = _cli(tmp_path, "check", "--data-dir", data)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")


async def test_a_request_in_flight_at_sigterm_still_completes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with relay_process(tmp_path, data, "--shutdown-timeout", "8s") as relay:
        async with client() as http:
            _, alice, bob = await _people(http, relay.url())
            header, sealed = alice.seal(bob, "sent while the relay stops")
            wraps = await alice.wraps_for(bob, header, sealed.message_key)
            body = wire.encode({"envelope": sealed.envelope, "wraps": wraps, "blobs": []})
            first_part_sent = asyncio.Event()
            release = asyncio.Event()

            async def slow_body() -> AsyncIterator[bytes]:
                yield body[:16]
                first_part_sent.set()
                await release.wait()
                yield body[16:]

            async def slow_upload() -> tuple[int, dict[str, Any]]:
                async with http.post(
                    relay.url() + "/v1/messages",
                    data=slow_body(),
                    headers={
                        "Content-Type": MSGPACK,
                        "Authorization": f"Bearer {alice.devices[0].token}",
                    },
                ) as response:
                    return response.status, wire.decode(await response.read(), limits=BIG)

            upload = asyncio.create_task(slow_upload())
            try:
                await asyncio.wait_for(first_part_sent.wait(), timeout=10)
                # The relay has read the headers and started the handler once /metrics
                # counts two requests in flight (the slow one and the scrape itself); a
                # fixed sleep (2 s) was not always enough with the suite on every core.
                await _until_in_flight(http, relay.url(), 2)
                relay.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 10
                while not await _refused(relay.url()):  # the shutdown has begun
                    assert time.monotonic() < deadline, "the relay kept accepting after SIGTERM"
                    await asyncio.sleep(0.05)
                release.set()  # the rest of the body arrives during the shutdown
                status, answer = await asyncio.wait_for(upload, timeout=EXIT_TIMEOUT)
            finally:
                release.set()
                if not upload.done():
                    upload.cancel()
            assert status == 201, answer
            assert answer["created"] is True
            assert answer["message_id"] == header.message_id
            assert await relay.wait_async() == 0
        entries = relay.log_entries()

    stored = [e for e in _events(entries, "request") if e["route"] == "/v1/messages"]
    assert [e["status"] for e in stored] == [201]
    assert len(_events(entries, "stopped")) == 1
    stats = _cli(tmp_path, "stats", "--data-dir", data)
    counts = json.loads(stats.stdout)
    assert sum(v for k, v in counts.items() if k.startswith("messages_")) == 1


async def test_sigint_stops_the_relay_cleanly(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        async with client() as http:
            _, _, bob = await _people(http, relay.url())
            async with bob.websocket() as ws:
                assert await _until_caught_up(ws) == []
                relay.send_signal(signal.SIGINT)
                assert await received_close_code(ws) == aiohttp.WSCloseCode.GOING_AWAY
        assert await relay.wait_async() == 0
        entries = relay.log_entries()  # no KeyboardInterrupt traceback: every line is JSON
    assert [e["signal"] for e in _events(entries, "shutting_down")] == ["SIGINT"]
    assert len(_events(entries, "stopped")) == 1


async def test_sigterm_on_an_idle_relay_exits_0(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        async with client() as http, http.get(relay.url() + "/healthz") as response:
            assert response.status == 200
        assert relay.stop(signal.SIGTERM) == 0
        entries = relay.log_entries()
    assert [e["event"] for e in entries if e.get("event") in ("started", "stopped")] == [
        "started",
        "stopped",
    ]


# restart -----------------------------------------------------------------------------------------
async def test_a_restart_on_the_same_data_directory_keeps_messages_and_the_key(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    text = "still here after the restart"
    async with client() as http:
        with relay_process(tmp_path, data) as first:
            relay, alice, bob = await _people(http, first.url())
            header = await alice.send(bob, text)
            assert first.stop() == 0
        with relay_process(tmp_path, data) as second:
            known = await _well_known(http, second.url())
            assert known["relay_id"] == relay.relay_id
            relay.url = second.url()
            await bob.login()
            assert await bob.read(alice, header.message_id) == text
            report = await alice.report(header.message_id)
            assert [line["state"] for line in report["devices"]] == ["opened"]
            assert second.stop() == 0


# TLS ---------------------------------------------------------------------------------------------
def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_tls_serves_https_and_wss_and_refuses_plain_http(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    with relay_process(tmp_path, None, "--tls-cert", cert, "--tls-key", key) as relay:
        async with client(trusting) as https:
            async with https.get(relay.url("https") + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "database": "ok"}
            _, alice, bob = await _people(https, relay.url("https"))
            async with bob.websocket() as ws:  # wss://
                assert await _until_caught_up(ws) == []
                header = await alice.send(bob, "over TLS")
                events = await _until_caught_up(ws)
            assert [e["message_id"] for e in events] == [header.message_id]

        async with client() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(relay.url("http") + "/healthz") as response:
                    await response.read()
            # the system's trust store does not know this certificate: it really is ours
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with plain.get(relay.url("https") + "/healthz") as response:
                    await response.read()
        assert relay.stop() == 0
        entries = relay.log_entries()
    listening = _events(entries, "listening")
    assert [e["tls"] for e in listening] == [True]
