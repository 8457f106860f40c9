"""``e2e-recall bench``: what the client's cryptography costs, against the bare primitives.

It measures local work only and starts no relay.  Three figures, each for
the X25519 and the X-Wing (ML-KEM-768 + X25519) wrapping suites:

* **send**: what ``e2e-recall send`` does once it has the recipient's
  directory answer, for one recipient device: the device certificates
  checked against the pinned identity (verified, or found already verified
  in this session), the per-message key, the header, the body encrypted
  with XChaCha20-Poly1305, the envelope signature, one HPKE wrap per
  device, the outbox request and the local copy sealed under the storage
  key, and the request body for the relay.  It calls the very functions
  ``send_text`` calls (:func:`client.sending.prepare_send`); only the
  database writes (and the contact row they keep) and the network are left
  out.
* **receive**: what a device does for one message from the notice to the
  text: the notice and the fetched answer decoded, the envelope verified
  against the sender's pinned key and sealed at rest
  (:func:`client.receiving.verify_fetched`), then the open answer decoded,
  the key unwrapped, the body decrypted (:func:`client.receiving.decrypt_opened`)
  and sealed at rest.
* **group**: the send path to 2, 16, 64 and 256 recipient devices, time per
  message; ``group_cold`` is the same with no certificate verified yet in
  this session (what a fresh ``e2e-recall send`` process meets).

Each figure is timed against the *bare* calls the same work needs, in the
same run: PyNaCl's XChaCha20-Poly1305, Ed25519 and ``secretbox``,
``cryptography``'s HPKE seal and open, SHA-256 and ``msgpack`` packing and
unpacking, straight in a row with no validation.  The ratio client/bare is
what the client adds.  A figure is the median and the 90th percentile over
``runs`` timed batches; a batch repeats the operation enough times to last
about two milliseconds, client and bare alternate batch by batch, and the
garbage collector is paused while a batch runs (as ``timeit`` does).
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import platform
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import msgpack
import nacl.bindings as sodium
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from rich.console import Console
from rich.table import Table

from e2e_recall import (
    DeviceSecrets,
    SigningKey,
    WrapSuite,
    fingerprint,
    issue_device_certificate,
    wire,
)
from e2e_recall.domains import HASH_CIPHERTEXT, HPKE_WRAP_INFO, PROTOCOL_VERSION, SIG_ENVELOPE

from .contacts import _verified_certificates
from .core import Core
from .errors import UsageProblem
from .keystore import Keys
from .paths import Profile
from .receiving import decrypt_opened, event_body, verify_fetched
from .render import print_json
from .sending import (
    DEFAULT_OPENED_WINDOW,
    DEFAULT_SEALED_WINDOW,
    _check_text,
    post_body,
    prepare_send,
)
from .store import Contact, LocalStore
from .transport import MSGPACK, Transport, encode_body

__all__ = ["GROUP_SIZES", "SUITES", "run_bench"]

SUITES = {"x25519": WrapSuite.X25519, "xwing": WrapSuite.XWING}
GROUP_SIZES = (2, 16, 64, 256)
BODY_BYTES = 1024
PATH_RATIO_TARGET = 1.3  # issue 6: send and receive at most 1.3 times the bare primitives
GROUP_TARGET_MS = 40.0  # issue 6: a 256-device group send under 40 ms
_BATCH_SECONDS = 0.002
_MAX_BATCH = 64
_POOL = 32  # distinct messages the receive path cycles through
_HPKE = {
    WrapSuite.X25519: Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305),
    WrapSuite.XWING: Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305),
}

Op = Callable[[], object]
Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing:
    """Per-operation times in microseconds, one per timed batch."""

    samples: tuple[float, ...]
    batch: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return _percentile(self.samples, 0.9)

    def to_json(self) -> dict[str, Any]:
        return {
            "median_us": round(self.median, 2),
            "p90_us": round(self.p90, 2),
            "runs": len(self.samples),
            "batch": self.batch,
        }


def _percentile(values: tuple[float, ...], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@contextmanager
def _quiet_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _time_batch(op: Op, batch: int) -> float:
    """Microseconds per call of ``op`` over one batch; nothing but the calls is timed."""
    with _quiet_gc():
        start = time.perf_counter_ns()
        for _ in range(batch):
            op()
        elapsed = time.perf_counter_ns() - start
    return elapsed / batch / 1000


def _batch_size(op: Op) -> int:
    """Enough calls for a batch of about two milliseconds (after two warm-up calls)."""
    op()
    start = time.perf_counter_ns()
    op()
    once = max(time.perf_counter_ns() - start, 1) / 1e9
    return max(1, min(_MAX_BATCH, round(_BATCH_SECONDS / once)))


def measure(ops: dict[str, Op], runs: int, *, setup: Op | None = None) -> dict[str, Timing]:
    """Time each op ``runs`` times, interleaved and in alternating order.

    All ops share one batch size, set by the first.  With ``setup`` every
    batch is a single call, and ``setup`` runs (untimed) before each.
    """
    names = list(ops)
    batch = 1 if setup is not None else _batch_size(ops[names[0]])
    for op in ops.values():  # warm every path before anything is timed
        if setup is not None:
            setup()
        op()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            if setup is not None:
                setup()
            samples[name].append(_time_batch(ops[name], batch))
    return {name: Timing(tuple(values), batch) for name, values in samples.items()}


# ---------------------------------------------------------------------------------------------
# The people: Alice sends, Bob receives on one of his devices


@dataclass
class _Person:
    identity: SigningKey
    devices: list[DeviceSecrets]
    certificates: list[bytes]
    core: Core

    @property
    def user_id(self) -> bytes:
        return fingerprint(self.identity.public_key)

    def as_contact(self, name: str) -> Contact:
        return Contact(
            name=name,
            user_id=self.user_id,
            identity_key=self.identity.public_key.raw,
            handle=name,
            added_at=self.core.clock(),
        )


def _person(root: Path, name: str, suite: WrapSuite, devices: int) -> _Person:
    identity = SigningKey.generate()
    now = int(time.time() * 1000)
    secrets = [DeviceSecrets.generate(suite) for _ in range(devices)]
    certificates = [
        issue_device_certificate(
            identity,
            device.device_id,
            device.signing_key.public_key,
            device.wrap_key.public_key,
            created_at=now,
        ).signed
        for device in secrets
    ]
    keys = Keys(
        identity=identity,
        device=secrets[0],
        certificate=certificates[0],
        storage_key=os.urandom(32),
    )
    profile = Profile(root / name)
    profile.ensure()
    store = LocalStore(profile.database, keys.storage_key)
    return _Person(identity, secrets, certificates, Core(profile, keys, store))


# ---------------------------------------------------------------------------------------------
# The send path, as the client runs it and as bare primitive calls


def _client_send(alice: _Person, bob: _Person, text: str) -> Op:
    core = alice.core
    bob_identity, bob_user = bob.identity.public_key.raw, bob.user_id
    signed = list(bob.certificates)

    def send() -> object:
        # refresh_devices, once the directory answered: the certificates against the pin
        devices = _verified_certificates(core, core.verify_key(bob_identity), signed)
        # send_text: the checks, the sealing, the outbox item; then Transport.call's body
        _check_text(text)
        prepared = prepare_send(
            core,
            bob_user,
            text,
            devices,
            sealed_window=DEFAULT_SEALED_WINDOW,
            opened_window=DEFAULT_OPENED_WINDOW,
        )
        return encode_body(post_body(prepared.request))

    return send


def _forget_verified(person: _Person) -> Op:
    """What a new process starts with: no key or certificate verified yet."""

    def forget() -> None:
        person.core._verify_keys.clear()
        person.core._certificates.clear()

    return forget


def _padded(content: bytes) -> bytes:
    length = len(content) + 1
    if length <= 8192:
        size = -(-length // 256) * 256
    else:
        exponent = length.bit_length() - 1
        mask = (1 << (exponent - exponent.bit_length())) - 1
        size = (length + mask) & ~mask
    return content + b"\x80" + bytes(size - length)


def _bare_send(alice: _Person, bob: _Person, suite: WrapSuite, text: str) -> Op:
    """The same work as straight primitive calls: no checks, no layers."""
    secret = sodium.crypto_sign_seed_keypair(alice.identity.seed)[1]
    hpke = _HPKE[suite]
    devices = [
        (d.device_id, d.wrap_key.public_key._hpke_key, d.wrap_key.public_key.key_id)
        for d in bob.devices
    ]
    storage_key = alice.core.keys.storage_key
    sender, sender_device = alice.user_id, alice.devices[0].device_id
    conversation = hashlib.sha256(b"conversation" + sender + bob.user_id).digest()[:16]
    info_prefix = HPKE_WRAP_INFO + bytes([PROTOCOL_VERSION])
    data = text.encode("utf-8")

    def send() -> object:
        message_id, key, nonce = os.urandom(16), os.urandom(32), os.urandom(24)
        now = time.time_ns() // 1_000_000
        header = msgpack.packb(
            {
                "conversation_id": conversation,
                "kind": "text",
                "message_id": message_id,
                "recall_opened_until": now + DEFAULT_OPENED_WINDOW,
                "recall_sealed_until": now + DEFAULT_SEALED_WINDOW,
                "replaces": None,
                "sender": sender,
                "sender_device": sender_device,
                "sent_at": now,
                "version": PROTOCOL_VERSION,
            }
        )
        body = _padded(msgpack.packb({"text": text}))
        ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(body, header, nonce, key)
        digest = hashlib.sha256(HASH_CIPHERTEXT + nonce + ciphertext).digest()
        signed = SIG_ENVELOPE + struct.pack(">I", len(header)) + header + digest
        signature = sodium.crypto_sign(signed, secret)[:64]
        envelope = msgpack.packb(
            {"ciphertext": ciphertext, "header": header, "nonce": nonce, "signature": signature}
        )
        prefix = info_prefix + message_id + conversation
        wraps = [
            {
                "device_id": device,
                "wrap": hpke.encrypt(key, public, info=prefix + device + kid),
                "key_id": kid,
            }
            for device, public, kid in devices
        ]
        outbox = msgpack.packb({"envelope": envelope, "key": key, "wraps": wraps})
        sodium.crypto_secretbox_easy(outbox, os.urandom(24), storage_key)
        sodium.crypto_secretbox_easy(data, os.urandom(24), storage_key)
        return msgpack.packb({"envelope": envelope, "wraps": wraps, "blobs": []})

    return send


# ---------------------------------------------------------------------------------------------
# The receive path


@dataclass(frozen=True)
class _Incoming:
    message_id: bytes
    notice: bytes  # the event payload
    fetched: bytes  # the relay's answer to GET /v1/messages/ID
    opened: bytes  # the relay's answer to POST /v1/messages/ID/open


def _incoming(alice: _Person, bob: _Person, text: str) -> list[_Incoming]:
    """Messages from Alice to Bob's first device, as the relay hands them over."""
    core = alice.core
    devices = _verified_certificates(
        core, core.verify_key(bob.identity.public_key.raw), [bob.certificates[0]]
    )
    pool = []
    for _ in range(_POOL):
        prepared = prepare_send(
            core,
            bob.user_id,
            text,
            devices,
            sealed_window=DEFAULT_SEALED_WINDOW,
            opened_window=DEFAULT_OPENED_WINDOW,
        )
        header, request = prepared.header, prepared.request
        notice = {
            "conversation_id": header.conversation_id,
            "message_id": header.message_id,
            "sender": header.sender,
            "sender_device": header.sender_device,
            "sent_at": header.sent_at,
            "size": len(request["envelope"]),
        }
        pool.append(
            _Incoming(
                header.message_id,
                wire.encode(notice),
                wire.encode({"envelope": request["envelope"]}),
                wire.encode({"wrap": request["wraps"][0]["wrap"]}),
            )
        )
    return pool


def _cycle(pool: list[_Incoming]) -> Callable[[], _Incoming]:
    index = 0

    def take() -> _Incoming:
        nonlocal index
        index = (index + 1) % len(pool)
        return pool[index]

    return take


def _client_receive(alice: _Person, bob: _Person, pool: list[_Incoming]) -> Op:
    core = bob.core
    sender = alice.as_contact("alice")
    relay = Transport("http://127.0.0.1:9")  # never connects: only its answer decoding runs
    take = _cycle(pool)

    def receive() -> object:
        item = take()
        event_body(item.notice)  # process_event
        fetched = relay._answer(200, MSGPACK, item.fetched)  # _on_notice's GET
        _, row = verify_fetched(core, sender, item.message_id, fetched["envelope"])
        answer = relay._answer(200, MSGPACK, item.opened)  # open_message's POST
        text = decrypt_opened(core, row, answer["wrap"])
        return core.store.seal(text.encode("utf-8"))

    return receive


def _bare_receive(alice: _Person, bob: _Person, suite: WrapSuite, pool: list[_Incoming]) -> Op:
    hpke = _HPKE[suite]
    private = bob.devices[0].wrap_key._hpke_key
    device_id, key_id = bob.devices[0].device_id, bob.devices[0].wrap_key.public_key.key_id
    sender_key = alice.identity.public_key.raw
    storage_key = bob.core.keys.storage_key
    info_prefix = HPKE_WRAP_INFO + bytes([PROTOCOL_VERSION])
    take = _cycle(pool)

    def receive() -> object:
        item = take()
        msgpack.unpackb(item.notice)
        envelope_bytes = msgpack.unpackb(item.fetched)["envelope"]
        envelope = msgpack.unpackb(envelope_bytes)
        header_bytes = envelope["header"]
        digest = hashlib.sha256(HASH_CIPHERTEXT + envelope["nonce"] + envelope["ciphertext"])
        signed = SIG_ENVELOPE + struct.pack(">I", len(header_bytes)) + header_bytes
        sodium.crypto_sign_open(envelope["signature"] + signed + digest.digest(), sender_key)
        header = msgpack.unpackb(header_bytes)
        nonce = os.urandom(24)
        stored = sodium.crypto_secretbox_easy(envelope_bytes, nonce, storage_key)
        wrap = msgpack.unpackb(item.opened)["wrap"]
        kept = msgpack.unpackb(sodium.crypto_secretbox_open_easy(stored, nonce, storage_key))
        info = info_prefix + header["message_id"] + header["conversation_id"] + device_id + key_id
        key = hpke.decrypt(wrap, private, info=info)
        padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            kept["ciphertext"], kept["header"], kept["nonce"], key
        )
        text = msgpack.unpackb(padded.rstrip(b"\x00")[:-1])["text"]
        return sodium.crypto_secretbox_easy(text.encode("utf-8"), os.urandom(24), storage_key)

    return receive


# ---------------------------------------------------------------------------------------------
# Single primitives, for the table of what the floor is made of


def _hpke_ops(suite: WrapSuite, key: bytes) -> tuple[Op, Op]:
    hpke = _HPKE[suite]
    device = DeviceSecrets.generate(suite)
    recipient, private = device.wrap_key.public_key._hpke_key, device.wrap_key._hpke_key
    info = os.urandom(90)
    wrap = hpke.encrypt(key, recipient, info=info)

    def seal() -> object:
        return hpke.encrypt(key, recipient, info=info)

    def open_() -> object:
        return hpke.decrypt(wrap, private, info=info)

    return seal, open_


def _primitives(suites: list[WrapSuite], runs: int, text: str) -> list[dict[str, Any]]:
    seed = os.urandom(32)
    public, secret = sodium.crypto_sign_seed_keypair(seed)
    key, nonce, aad = os.urandom(32), os.urandom(24), os.urandom(200)
    body = _padded(msgpack.packb({"text": text}))
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(body, aad, nonce, key)
    payload = os.urandom(260)
    signed = sodium.crypto_sign(payload, secret)
    envelope = {"ciphertext": ciphertext, "header": aad, "nonce": nonce, "signature": signed[:64]}
    packed = msgpack.packb(envelope)
    encrypt = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
    decrypt = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
    ops: dict[str, Op] = {
        "xchacha20poly1305 encrypt 1 KiB": lambda: encrypt(body, aad, nonce, key),
        "xchacha20poly1305 decrypt 1 KiB": lambda: decrypt(ciphertext, aad, nonce, key),
        "ed25519 sign": lambda: sodium.crypto_sign(payload, secret),
        "ed25519 verify": lambda: sodium.crypto_sign_open(signed, public),
        "sha-256 1 KiB": lambda: hashlib.sha256(ciphertext).digest(),
        "msgpack encode envelope": lambda: msgpack.packb(envelope),
        "msgpack decode envelope": lambda: msgpack.unpackb(packed),
    }
    for suite in suites:
        name = suite.name.lower()
        ops[f"hpke seal {name}"], ops[f"hpke open {name}"] = _hpke_ops(suite, key)
    rows = []
    for name, op in ops.items():
        timing = measure({name: op}, runs)[name]
        rows.append({"name": name, **timing.to_json()})
    return rows


# ---------------------------------------------------------------------------------------------
# The whole run


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cryptography": metadata.version("cryptography"),
        "pynacl": metadata.version("pynacl"),
        "msgpack": metadata.version("msgpack"),
    }


def _result(
    suite: str,
    path: str,
    devices: int,
    client: Timing,
    bare: Timing,
    target: float | None,
) -> dict[str, Any]:
    ratio = client.median / bare.median
    met: bool | None = None
    if target is not None:
        met = ratio <= target if path in ("send", "receive") else client.median / 1000 < target
    return {
        "suite": suite,
        "path": path,
        "devices": devices,
        "client": client.to_json(),
        "bare": bare.to_json(),
        "ratio": round(ratio, 3),
        "target": target,
        "met": met,
    }


def _suite_results(
    name: str, suite: WrapSuite, runs: int, text: str, root: Path, progress: Progress
) -> list[dict[str, Any]]:
    results = []
    alice = _person(root, f"alice-{name}", suite, 1)
    bob = _person(root, f"bob-{name}", suite, 1)

    progress(f"{name}: send path")
    timed = measure(
        {"client": _client_send(alice, bob, text), "bare": _bare_send(alice, bob, suite, text)},
        runs,
    )
    results.append(_result(name, "send", 1, timed["client"], timed["bare"], PATH_RATIO_TARGET))

    progress(f"{name}: receive path")
    pool = _incoming(alice, bob, text)
    timed = measure(
        {
            "client": _client_receive(alice, bob, pool),
            "bare": _bare_receive(alice, bob, suite, pool),
        },
        runs,
    )
    results.append(_result(name, "receive", 1, timed["client"], timed["bare"], PATH_RATIO_TARGET))

    cold = []
    for size in GROUP_SIZES:
        progress(f"{name}: group send to {size} devices")
        group = _person(root, f"group-{name}-{size}", suite, size)
        client, bare = _client_send(alice, group, text), _bare_send(alice, group, suite, text)
        timed = measure({"client": client, "bare": bare}, runs)
        target = GROUP_TARGET_MS if size == GROUP_SIZES[-1] else None
        results.append(_result(name, "group", size, timed["client"], timed["bare"], target))
        first = measure({"client": client}, runs, setup=_forget_verified(alice))["client"]
        cold.append(_result(name, "group_cold", size, first, timed["bare"], None))
        group.core.close_store()
    alice.core.close_store()
    bob.core.close_store()
    return results + cold


def bench(runs: int, suites: list[str], progress: Progress = lambda _: None) -> dict[str, Any]:
    """Every figure, as the JSON ``e2e-recall bench --json`` prints."""
    if runs < 1:
        raise UsageProblem("--runs must be at least 1.", "bad_runs")
    text = ("The door code is 4711. " * 64)[:BODY_BYTES]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="e2e-recall-bench-") as root:
        for name in suites:
            results += _suite_results(name, SUITES[name], runs, text, Path(root), progress)
    progress("single primitives")
    primitives = _primitives([SUITES[name] for name in suites], runs, text)
    return {
        "runs": runs,
        "body_bytes": BODY_BYTES,
        "machine": _machine(),
        "results": results,
        "primitives": primitives,
    }


def _time(us: float) -> str:
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.1f}µs"


def _justify(column: str) -> Literal["left", "right"]:
    return "left" if column in ("suite", "path", "primitive", "target") else "right"


def print_bench(out: Console, report: dict[str, Any]) -> None:
    machine = report["machine"]
    out.print(
        f"Client crypto cost: local work only, no relay; {report['body_bytes']} byte bodies; "
        f"median and p90 of {report['runs']} timed batches each; ratio = client / bare.",
        markup=False,
        soft_wrap=True,
    )
    out.print(
        f"{machine['cpu']} ({machine['cores']} cores), Python {machine['python']}, "
        f"cryptography {machine['cryptography']}, PyNaCl {machine['pynacl']}, "
        f"msgpack {machine['msgpack']}",
        markup=False,
        soft_wrap=True,
    )
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    columns = ("suite", "path", "devices", "client", "p90", "bare", "p90", "ratio", "target")
    for column in columns:
        table.add_column(column, justify=_justify(column), no_wrap=True)
    for row in report["results"]:
        client, bare = row["client"], row["bare"]
        goal = ""
        if row["target"] is not None:
            by_ratio = row["path"] in ("send", "receive")
            bound = f"<={row['target']}x" if by_ratio else f"<{row['target']:g}ms"
            goal = f"{bound} {'met' if row['met'] else 'missed'}"
        table.add_row(
            row["suite"],
            row["path"],
            str(row["devices"]),
            _time(client["median_us"]),
            _time(client["p90_us"]),
            _time(bare["median_us"]),
            _time(bare["p90_us"]),
            f"{row['ratio']:.2f}",
            goal,
        )
    out.print(table)
    out.print("Bare primitives:", markup=False)
    floor = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("primitive", "median", "p90"):
        floor.add_column(column, justify=_justify(column), no_wrap=True)
    for row in report["primitives"]:
        floor.add_row(row["name"], _time(row["median_us"]), _time(row["p90_us"]))
    out.print(floor)


def run_bench(runs: int, suite: str | None, *, as_json: bool, out: Console, err: Console) -> int:
    """``e2e-recall bench``: measure, then print a table or the JSON."""
    suites = [suite] if suite else list(SUITES)
    if as_json or not err.is_terminal:
        report = bench(runs, suites)
    else:
        with err.status("measuring") as status:
            report = bench(runs, suites, lambda what: status.update(f"measuring: {what}"))
    if as_json:
        print_json(out, report)
    else:
        print_bench(out, report)
    return 0
