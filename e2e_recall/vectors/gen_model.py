"""Vectors for key serialisation and for the report: its table and its sentences."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..keyfile import dump_device_secrets, dump_signing_key, dump_verify_key, dump_wrap_public_key
from ..recall_rules import REFUSAL_SENTENCES, refusal_sentence
from ..report import TRANSITIONS, DeviceReport, DeviceState, Event, describe
from ..wrapping import WrapSuite
from .fixtures import MINUTE, SMALL_ORDER_ED25519, SMALL_ORDER_X25519, T0, Context
from .format import VectorFile
from .truncation import add_truncations, sparse_lengths

__all__ = ["key_vectors", "report_vectors"]


def key_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Key serialisation",
        ["Load input as a serialised key of the given kind; valid tests give what it derives."],
    )
    group = vf.group("KeyLoad")
    alice, laptop = ctx.alice, ctx.bob_laptop

    def add(
        comment: str, expect: str, flags: list[str], kind: str, data: bytes, **out: Any
    ) -> None:
        group.add(comment, expect, flags, kind=kind, input=data.hex(), **out)

    add(
        "identity secret",
        "success",
        ["Valid"],
        "signing_key",
        dump_signing_key(alice),
        publicKey=alice.public_key.raw.hex(),
    )
    add(
        "identity public key",
        "success",
        ["Valid"],
        "verify_key",
        dump_verify_key(alice.public_key),
        fingerprint=ctx.uid(alice).hex(),
    )
    for device in (ctx.bob_device, laptop):
        add(
            f"{device.wrap_key.suite.name} device secrets",
            "success",
            ["Valid"],
            "device_secrets",
            dump_device_secrets(device),
            deviceId=device.device_id.hex(),
            signingPublicKey=device.signing_key.public_key.raw.hex(),
            wrapPublicKey=device.wrap_key.public_key.raw.hex(),
        )
        add(
            f"{device.wrap_key.suite.name} wrapping public key",
            "success",
            ["Valid"],
            "wrap_public_key",
            dump_wrap_public_key(device.wrap_key.public_key),
            keyId=device.wrap_key.public_key.key_id.hex(),
        )

    def doc(kind: str, **fields: Any) -> bytes:
        return wire.encode({"kind": kind, "version": 1, **fields})

    add(
        "a public key where a secret is expected",
        "decode_failure",
        ["TypeConfusion"],
        "signing_key",
        dump_verify_key(alice.public_key),
    )
    add(
        "a secret where a public key is expected",
        "decode_failure",
        ["TypeConfusion"],
        "verify_key",
        dump_signing_key(alice),
    )
    add(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        "signing_key",
        wire.encode({"kind": "signing_key", "version": 2, "seed": alice.seed}),
    )
    add(
        "unknown field",
        "decode_failure",
        ["UnknownField"],
        "signing_key",
        doc("signing_key", seed=alice.seed, x=1),
    )
    add(
        "seed of 31 bytes",
        "decode_failure",
        ["BadLength"],
        "signing_key",
        doc("signing_key", seed=alice.seed[:31]),
    )
    add(
        "unknown kind",
        "decode_failure",
        ["UnknownValue"],
        "signing_key",
        doc("root_key", seed=alice.seed),
    )
    for name, point in SMALL_ORDER_ED25519.items():
        add(
            f"public key of small order ({name})",
            "invalid_key",
            ["SmallOrderKey"],
            "verify_key",
            doc("verify_key", key=point),
        )
    add(
        "wrapping key of small order",
        "invalid_key",
        ["SmallOrderKey"],
        "wrap_public_key",
        doc("wrap_public_key", suite=int(WrapSuite.X25519), key=SMALL_ORDER_X25519["u = 1"]),
    )
    add(
        "unknown wrap suite",
        "decode_failure",
        ["UnknownValue"],
        "wrap_public_key",
        doc("wrap_public_key", suite=9, key=bytes(32)),
    )
    add(
        "device secret wrap key of the wrong length",
        "decode_failure",
        ["BadLength"],
        "device_secrets",
        doc(
            "device_secrets",
            device_id=laptop.device_id,
            signing_seed=laptop.signing_key.seed,
            wrap_suite=int(WrapSuite.XWING),
            wrap_key=laptop.wrap_key.raw[:-1],
        ),
    )
    add(
        "trailing byte",
        "decode_failure",
        ["TrailingBytes"],
        "verify_key",
        dump_verify_key(alice.public_key) + b"\x00",
    )
    _truncations(vf, ctx)
    return vf


def _truncations(vf: VectorFile, ctx: Context) -> None:
    """Every proper prefix of each valid serialisation (sparse for the 1.2 KB X-Wing key)."""
    cut = vf.group("KeyTruncated", note="every proper prefix of one valid serialisation per kind")
    whole: list[tuple[str, str, bytes]] = [
        ("identity secret", "signing_key", dump_signing_key(ctx.alice)),
        ("identity public key", "verify_key", dump_verify_key(ctx.alice.public_key)),
    ]
    for device in (ctx.bob_device, ctx.bob_laptop):
        name = device.wrap_key.suite.name
        whole.append((f"{name} device secrets", "device_secrets", dump_device_secrets(device)))
        whole.append(
            (
                f"{name} wrapping public key",
                "wrap_public_key",
                dump_wrap_public_key(device.wrap_key.public_key),
            )
        )
    for what, kind, data in whole:
        lengths = None
        if len(data) > 1024:
            raw = ctx.bob_laptop.wrap_key.public_key.raw
            at = data.index(raw)
            lengths = sparse_lengths(len(data), [at - 3, at, at + len(raw)])
        add_truncations(cut, data, "input", lengths=lengths, what=what, kind=kind)


def _times(state: DeviceState) -> dict[str, int | None]:
    fetched = (
        T0 + MINUTE if state not in (DeviceState.QUEUED, DeviceState.NEVER_DELIVERED) else None
    )
    released = T0 + 2 * MINUTE if state in (DeviceState.OPENED, DeviceState.PENDING) else None
    deleted = T0 + 9 * MINUTE if state is DeviceState.DELETED else None
    expired = T0 + 5 * MINUTE if state is DeviceState.EXPIRED else None
    return {
        "fetchedAt": fetched,
        "keyReleasedAt": released,
        "deletedAt": deleted,
        "expiredAt": expired,
    }


def report_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Report states, transitions and sentences",
        [
            "ReportTransition: the next state after event, or impossible_transition.",
            "ReportSentence: the exact sentence for a device line (times in ms, shown in UTC).",
            "RefusalSentence: the exact sentence for a refused recall and its facts.",
        ],
    )
    table = vf.group("ReportTransition")
    for state in DeviceState:
        for event in Event:
            following = TRANSITIONS[state].get(event)
            if following is None:
                table.add(
                    f"{event} in {state}",
                    "impossible_transition",
                    ["ImpossibleTransition"],
                    state=str(state),
                    event=str(event),
                )
            else:
                table.add(
                    f"{event} in {state}",
                    "success",
                    ["Valid"],
                    state=str(state),
                    event=str(event),
                    next=str(following),
                )
    sentences = vf.group("ReportSentence")
    lines = [(state, _times(state)) for state in DeviceState]
    lines.append(
        (
            DeviceState.DELETED,
            {
                "fetchedAt": T0 + MINUTE,
                "keyReleasedAt": T0 + 2 * MINUTE,
                "deletedAt": T0 + 9 * MINUTE,
                "expiredAt": None,
            },
        )
    )
    lines.append(
        (
            DeviceState.EXPIRED,
            {
                "fetchedAt": T0 + MINUTE,
                "keyReleasedAt": T0 + 2 * MINUTE,
                "deletedAt": None,
                "expiredAt": T0 + 5 * MINUTE,
            },
        )
    )
    for state, times in lines:
        line = DeviceReport(
            user=ctx.uid(ctx.bob),
            device_id=ctx.bob_device.device_id,
            state=state,
            fetched_at=times["fetchedAt"],
            key_released_at=times["keyReleasedAt"],
            deleted_at=times["deletedAt"],
            expired_at=times["expiredAt"],
        )
        after = state in (DeviceState.DELETED, DeviceState.EXPIRED) and times["keyReleasedAt"]
        opened = " after opening" if after else ""
        sentences.add(
            f"{state}{opened}",
            "success",
            ["Valid"],
            state=str(state),
            **times,
            attestedBy=[str(who) for who in line.attested_by],
            sentence=describe(line),
        )
    refusals = vf.group("RefusalSentence")
    facts = {"closed_at": T0 + 3_600_000, "opened_at": T0 + MINUTE, "limit": 50}
    for reason, template in REFUSAL_SENTENCES.items():
        used = {key: value for key, value in facts.items() if "{" + key + "}" in template}
        refusals.add(
            reason,
            "success",
            ["Valid"],
            reason=reason,
            facts=used,
            sentence=refusal_sentence(reason, used),
        )
    return vf
