"""Check a directory of vector files against the implementation.

Each test group type has one runner that feeds the inputs to the public API
exactly as a relay or client would, and returns the outputs to compare.  A
library error counts as the outcome named by its ``expect``; any other
exception is a failure of the implementation (it must never escape).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import wire
from ..auth import sign_login, sign_registration, verify_login, verify_registration
from ..body import decrypt_body, encrypt_body, pad
from ..device import DeviceSecrets, issue_device_certificate, verify_device_certificate
from ..envelope import Header, open_envelope, seal_message
from ..errors import E2ERecallError
from ..identity import direct_conversation_id, fingerprint, safety_number
from ..keyfile import load_device_secrets, load_signing_key, load_verify_key, load_wrap_public_key
from ..recall_rules import MessageFacts, RecallPolicy, decide_recall, refusal_sentence
from ..receipts import (
    sign_deletion_receipt,
    sign_purge_receipt,
    verify_deletion_receipt,
    verify_purge_receipt,
)
from ..report import DeviceReport, DeviceState, Event, describe, next_state
from ..revocation import (
    check_revocation_matches,
    revocation_digest,
    sign_revocation,
    verify_revocation,
)
from ..signing import SigningKey, VerifyKey
from ..wrapping import WrapPrivateKey, WrapPublicKey, WrapSuite, unwrap_message_key, wrap_info
from .check_devices import DEVICE_RUNNERS
from .check_expiry import EXPIRY_RUNNERS
from .check_files import FILE_RUNNERS, descriptors_out
from .check_groups import GROUP_RUNNERS
from .check_rotation import ROTATION_RUNNERS
from .fields import MalformedTest, hex_field
from .gen_codec import tagged

__all__ = ["CheckReport", "MalformedTest", "check_directory", "run_test", "with_group_inputs"]

Runner = Callable[[dict[str, Any], dict[str, Any]], Any]


_h = hex_field


def with_group_inputs(group: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """A test's inputs: its own fields, over those its group states once for all its tests."""
    shared = {key: value for key, value in group.items() if key not in ("type", "tests")}
    return shared | test


def _signer(fields: dict[str, Any]) -> SigningKey | None:
    """The signer a valid test states by its seed, to sign again with; None if it states none."""
    seed = fields.get("signerPrivateKey")
    return None if seed is None else SigningKey(_h(seed))


def _resigned(key: SigningKey | None, **outputs: bytes) -> dict[str, str]:
    """Outputs of signing again, compared with the test's own fields of the same names.

    Ed25519 is deterministic, so the seed and the decoded fields must give
    back exactly the bytes of the vector; the public key derived from the
    seed must be the one the test verifies with.
    """
    if key is None:
        return {}
    return {"signerPublicKey": key.public_key.raw.hex()} | {k: v.hex() for k, v in outputs.items()}


def _wire_decode(group: dict[str, Any], test: dict[str, Any]) -> Any:
    limits = group["limits"]
    decoded = wire.decode(
        _h(test["input"]),
        limits=wire.Limits(
            max_size=limits["maxSize"],
            max_str=limits["maxStr"],
            max_bin=limits["maxBin"],
            max_array=limits["maxArray"],
            max_map=limits["maxMap"],
            max_depth=limits["maxDepth"],
        ),
    )
    return {"value": tagged(decoded)}


def _safety_number(group: dict[str, Any], test: dict[str, Any]) -> Any:
    a, b = VerifyKey(_h(test["keyA"])), VerifyKey(_h(test["keyB"]))
    fa, fb = fingerprint(a), fingerprint(b)
    return {
        "fingerprintA": fa.hex(),
        "fingerprintB": fb.hex(),
        "safetyNumber": safety_number(a, b),
        "directConversationId": direct_conversation_id(fa, fb).hex(),
        "sameFromB": safety_number(b, a) == safety_number(a, b),
    }


def _body(group: dict[str, Any], test: dict[str, Any]) -> Any:
    key, nonce, aad, ct = (_h(test[k]) for k in ("key", "nonce", "aad", "ciphertext"))
    body = decrypt_body(nonce, ct, key, aad)
    _, again = encrypt_body(body, key, aad, rng=lambda n: nonce)
    return {
        "text": body.text,
        "files": descriptors_out(body.files),
        "plaintext": pad(body.encode()).hex(),
        "ciphertext": again.hex(),
    }


def _wrap_open(group: dict[str, Any], test: dict[str, Any]) -> Any:
    private = WrapPrivateKey(WrapSuite(group["suite"]), _h(test["recipientPrivateKey"]))
    ids = {
        "message_id": _h(test["messageId"]),
        "conversation_id": _h(test["conversationId"]),
        "device_id": _h(test["deviceId"]),
    }
    info = wrap_info(
        ids["message_id"], ids["conversation_id"], ids["device_id"], private.public_key.key_id
    )
    key = unwrap_message_key(_h(test["wrap"]), private, **ids)
    return {
        "messageKey": key.hex(),
        "recipientPublicKey": private.public_key.raw.hex(),
        "keyId": private.public_key.key_id.hex(),
        "info": info.hex(),
    }


def _wrap_key(group: dict[str, Any], test: dict[str, Any]) -> Any:
    return {"keyId": WrapPublicKey(WrapSuite(group["suite"]), _h(test["publicKey"])).key_id.hex()}


def _envelope(group: dict[str, Any], test: dict[str, Any]) -> Any:
    envelope = open_envelope(_h(test["envelope"]), VerifyKey(_h(test["signerPublicKey"])))
    message_key = _h(test["messageKey"])
    body = envelope.decrypt(message_key)
    h = envelope.header
    key = _signer(test)
    again = {}
    if key is not None:
        nonce = envelope.nonce
        sealed = seal_message(h, body, key, message_key=message_key, rng=lambda n: nonce)
        again = _resigned(key, envelope=sealed.envelope)
    return again | {
        "expected": {
            "messageId": h.message_id.hex(),
            "conversationId": h.conversation_id.hex(),
            "sender": h.sender.hex(),
            "senderDevice": h.sender_device.hex(),
            "sentAt": h.sent_at,
            "recallSealedUntil": h.recall_sealed_until,
            "recallOpenedUntil": h.recall_opened_until,
            "kind": str(h.kind),
            "replaces": None if h.replaces is None else h.replaces.hex(),
            "expireAfter": h.expire_after,
            "expireFrom": None if h.expire_from is None else str(h.expire_from),
            "text": body.text,
        }
    }


def _revocation(group: dict[str, Any], test: dict[str, Any]) -> Any:
    r = verify_revocation(_h(test["signed"]), VerifyKey(_h(test["signerPublicKey"])))
    key = _signer(test)
    again = {}
    if key is not None:
        signed = sign_revocation(
            key,
            message_id=r.message_id,
            conversation_id=r.conversation_id,
            issued_at=r.issued_at,
            replacement_id=r.replacement_id,
        ).signed
        again = _resigned(key, signed=signed)
    return again | {
        "expected": {
            "messageId": r.message_id.hex(),
            "conversationId": r.conversation_id.hex(),
            "sender": r.sender.hex(),
            "issuedAt": r.issued_at,
            "replacementId": None if r.replacement_id is None else r.replacement_id.hex(),
        }
    }


def _acceptance(group: dict[str, Any], test: dict[str, Any]) -> Any:
    header = Header.decode(_h(test["header"]))
    revocation = verify_revocation(_h(test["revocation"]), VerifyKey(_h(test["signerPublicKey"])))
    facts, p = test["facts"], test["policy"]
    decision = decide_recall(
        revocation,
        MessageFacts(
            header=header,
            first_opened_at=facts["firstOpenedAt"],
            already_revoked=facts["alreadyRevoked"],
            recalls_today=facts["recallsToday"],
            expired_at=facts["expiredAt"],
        ),
        now=test["now"],
        policy=RecallPolicy(
            max_sealed_window_ms=p["maxSealedWindowMs"],
            max_opened_window_ms=p["maxOpenedWindowMs"],
            only_while_unread=p["onlyWhileUnread"],
            max_recalls_per_conversation_per_day=p["maxRecallsPerConversationPerDay"],
            max_clock_skew_ms=p["maxClockSkewMs"],
        ),
    )
    return {
        "decision": {
            "alreadyRecalled": decision.already_recalled,
            "deadline": decision.deadline,
            "expired": decision.expired,
        }
    }


def _match(group: dict[str, Any], test: dict[str, Any]) -> Any:
    header = Header.decode(_h(test["header"]))
    revocation = verify_revocation(_h(test["revocation"]), VerifyKey(_h(test["signerPublicKey"])))
    check_revocation_matches(revocation, header)
    return {}


def _certificate(group: dict[str, Any], test: dict[str, Any]) -> Any:
    c = verify_device_certificate(
        _h(test["signed"]), VerifyKey(_h(test["signerPublicKey"])), now=test["now"]
    )
    key = _signer(test)
    again = {}
    if key is not None:
        signed = issue_device_certificate(
            key,
            c.device_id,
            c.signing_key,
            c.wrap_key,
            created_at=c.created_at,
            expires_at=c.expires_at,
        ).signed
        again = _resigned(key, signed=signed)
    return again | {
        "expected": {
            "user": c.user.hex(),
            "deviceId": c.device_id.hex(),
            "signingKey": c.signing_key.raw.hex(),
            "wrapSuite": int(c.wrap_key.suite),
            "wrapKey": c.wrap_key.raw.hex(),
            "keyId": c.wrap_key.key_id.hex(),
            "createdAt": c.created_at,
            "expiresAt": c.expires_at,
        }
    }


def _digest_of(test: dict[str, Any]) -> bytes | None:
    """The digest of the group's revocation, computed here (never taken from the file)."""
    revocation = test.get("revocation")
    return None if revocation is None else revocation_digest(_h(revocation))


def _deletion(group: dict[str, Any], test: dict[str, Any]) -> Any:
    cert = verify_device_certificate(
        _h(test["deviceCertificate"]), VerifyKey(_h(test["identityPublicKey"])), now=test["now"]
    )
    r = verify_deletion_receipt(
        _h(test["signed"]),
        cert,
        message_id=_h(test["messageId"]),
        conversation_id=_h(test["conversationId"]),
        revocation=_digest_of(test),
    )
    key = _signer(test)
    again = {}
    if key is not None:
        signed = sign_deletion_receipt(
            key,
            user=r.user,
            device_id=r.device_id,
            message_id=r.message_id,
            conversation_id=r.conversation_id,
            deleted_at=r.deleted_at,
            opened_at=r.opened_at,
            cause=r.cause,
            revocation=r.revocation,
        ).signed
        again = _resigned(key, signed=signed)
    return again | {
        "expected": {
            "cause": str(r.cause),
            "openedAt": r.opened_at,
            "deletedAt": r.deleted_at,
            "revocation": None if r.revocation is None else r.revocation.hex(),
        }
    }


def _purge(group: dict[str, Any], test: dict[str, Any]) -> Any:
    r = verify_purge_receipt(
        _h(test["signed"]),
        VerifyKey(_h(test["signerPublicKey"])),
        message_id=_h(test["messageId"]),
        conversation_id=_h(test["conversationId"]),
        revocation=_digest_of(test),
    )
    key = _signer(test)
    again = {}
    if key is not None:
        signed = sign_purge_receipt(
            key,
            message_id=r.message_id,
            conversation_id=r.conversation_id,
            revocation=r.revocation,
            purged_at=r.purged_at,
            devices=r.devices,
        ).signed
        again = _resigned(key, signed=signed)
    return again | {
        "expected": {
            "purgedAt": r.purged_at,
            "devices": [
                {
                    "user": d.user.hex(),
                    "deviceId": d.device_id.hex(),
                    "state": str(d.state),
                    "fetchedAt": d.fetched_at,
                    "keyReleasedAt": d.key_released_at,
                }
                for d in r.devices
            ],
        }
    }


def _check_signers(test: dict[str, Any]) -> list[SigningKey | None]:
    return [_signer(check) for check in test.get("signatureChecks", [])]


def _registration(group: dict[str, Any], test: dict[str, Any]) -> Any:
    relay, challenge, certificate = (
        _h(test["relay"]),
        _h(test["challenge"]),
        _h(test["certificate"]),
    )
    cert = verify_registration(
        VerifyKey(_h(test["identityPublicKey"])),
        certificate,
        relay=relay,
        challenge=challenge,
        identity_signature=_h(test["identitySignature"]),
        device_signature=_h(test["deviceSignature"]),
        now=test["now"],
    )
    outputs: dict[str, str] = {"deviceId": cert.device_id.hex()}
    signers = _check_signers(test)
    if len(signers) == 2 and signers[0] is not None and signers[1] is not None:
        identity_sig, device_sig = sign_registration(
            signers[0], signers[1], relay=relay, challenge=challenge, certificate=certificate
        )
        outputs |= {"identitySignature": identity_sig.hex(), "deviceSignature": device_sig.hex()}
        if signers[1].public_key != cert.signing_key:
            outputs["deviceId"] = "the device seed is not the certificate's signing key"
    return outputs


def _login(group: dict[str, Any], test: dict[str, Any]) -> Any:
    cert = verify_device_certificate(
        _h(test["deviceCertificate"]), VerifyKey(_h(test["identityPublicKey"])), now=test["now"]
    )
    relay, device_id, challenge = _h(test["relay"]), _h(test["deviceId"]), _h(test["challenge"])
    verify_login(cert, _h(test["signature"]), relay=relay, device_id=device_id, challenge=challenge)
    signers = _check_signers(test)
    if len(signers) == 1 and signers[0] is not None:
        again = sign_login(signers[0], relay=relay, device_id=device_id, challenge=challenge)
        return {"signature": again.hex()}
    return {}


_LOADERS: dict[str, Callable[[bytes], Any]] = {
    "signing_key": lambda data: {"publicKey": load_signing_key(data).public_key.raw.hex()},
    "verify_key": lambda data: {"fingerprint": fingerprint(load_verify_key(data)).hex()},
    "wrap_public_key": lambda data: {"keyId": load_wrap_public_key(data).key_id.hex()},
    "device_secrets": lambda data: _device_secrets(load_device_secrets(data)),
}


def _device_secrets(secrets: DeviceSecrets) -> dict[str, str]:
    return {
        "deviceId": secrets.device_id.hex(),
        "signingPublicKey": secrets.signing_key.public_key.raw.hex(),
        "wrapPublicKey": secrets.wrap_key.public_key.raw.hex(),
    }


def _key_load(group: dict[str, Any], test: dict[str, Any]) -> Any:
    return _LOADERS[test["kind"]](_h(test["input"]))


def _transition(group: dict[str, Any], test: dict[str, Any]) -> Any:
    return {"next": str(next_state(DeviceState(test["state"]), Event(test["event"])))}


def _sentence(group: dict[str, Any], test: dict[str, Any]) -> Any:
    line = DeviceReport(
        user=bytes(32),
        device_id=bytes(16),
        state=DeviceState(test["state"]),
        fetched_at=test["fetchedAt"],
        key_released_at=test["keyReleasedAt"],
        deleted_at=test["deletedAt"],
        expired_at=test["expiredAt"],
    )
    return {"sentence": describe(line), "attestedBy": [str(who) for who in line.attested_by]}


def _refusal(group: dict[str, Any], test: dict[str, Any]) -> Any:
    return {"sentence": refusal_sentence(test["reason"], test["facts"])}


RUNNERS: dict[str, Runner] = {
    "WireDecode": _wire_decode,
    "SafetyNumber": _safety_number,
    "BodyDecrypt": _body,
    "BodyTruncated": _body,
    "WrapOpen": _wrap_open,
    "WrapTruncated": _wrap_open,
    "WrapRecipientKey": _wrap_key,
    "EnvelopeOpen": _envelope,
    "EnvelopeTruncated": _envelope,
    "RevocationVerify": _revocation,
    "RevocationTruncated": _revocation,
    "RecallAcceptance": _acceptance,
    "RevocationMatch": _match,
    "DeviceCertificateVerify": _certificate,
    "DeviceCertificateTruncated": _certificate,
    "DeletionReceiptVerify": _deletion,
    "DeletionReceiptTruncated": _deletion,
    "PurgeReceiptVerify": _purge,
    "PurgeReceiptTruncated": _purge,
    "RegistrationVerify": _registration,
    "RegistrationTruncated": _registration,
    "LoginVerify": _login,
    "LoginTruncated": _login,
    "KeyLoad": _key_load,
    "KeyTruncated": _key_load,
    "ReportTransition": _transition,
    "ReportSentence": _sentence,
    "RefusalSentence": _refusal,
    **FILE_RUNNERS,
    **GROUP_RUNNERS,
    **DEVICE_RUNNERS,
    **ROTATION_RUNNERS,
    **EXPIRY_RUNNERS,
}


def _outputs_match(outputs: dict[str, Any], test: dict[str, Any]) -> str | None:
    """Compare each output the test states; outputs the test omits are not compared."""
    for key, value in outputs.items():
        if key == "sameFromB":
            if not value:
                return "safety number differs when computed from the other side"
        elif key in test and test[key] != value:
            return f"{key} differs"
    return None


def run_test(group: dict[str, Any], test: dict[str, Any]) -> str | None:
    """None if the implementation behaves as the test says, else why not (one line)."""
    runner = RUNNERS.get(group.get("type"))  # type: ignore[arg-type]
    if runner is None:
        return f"unknown group type {group.get('type')!r}"
    expect = test.get("expect")
    if not isinstance(expect, str):
        return "malformed test: no expect"
    inputs = with_group_inputs(group, test)
    try:
        outputs = runner(group, inputs)
    except E2ERecallError as exc:
        if exc.expect != expect:
            return f"expected {expect}, got {exc.expect} ({exc.reason})"
        reason = test.get("reason")
        if reason is not None and exc.reason != reason:
            return f"expected reason {reason}, got {exc.reason}"
        return None
    except MalformedTest as exc:
        return f"malformed test: {exc}"
    except KeyError as exc:
        if exc.args and exc.args[0] not in inputs:
            return f"malformed test: no field {exc.args[0]!r}"
        return f"uncaught KeyError: {exc}"
    except Exception as exc:
        return f"uncaught {type(exc).__name__}: {exc}"
    if expect != "success":
        return f"expected {expect}, but it was accepted"
    return _outputs_match(outputs, test)


@dataclass
class CheckReport:
    """Counts and the failures, with file and tcId, for printing."""

    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, where: str, problem: str | None) -> None:
        if problem is None:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(f"{where}: {problem}")


def check_directory(
    directory: Path,
    run: Callable[[dict[str, Any], dict[str, Any]], str | None] = run_test,
    only_applicable: bool = False,
) -> CheckReport:
    """Run ``run`` on every test of every ``*.json`` file in ``directory``.

    ``run`` may return the marker ``"n/a"`` for a test it has nothing to say
    about (the cross-library checker does this for bodies, which only one
    library implements); those are counted neither way.  The files may be a
    user's own copies: a file that is not JSON or not in the vector shape,
    a group without tests, or a test the checker cannot even read counts as
    one failure with a one-line reason, and checking goes on.
    """
    report = CheckReport()
    for path in sorted(directory.glob("*.json")):
        groups = _load_groups(path, report)
        for index, group in enumerate(groups, start=1):
            tests = group.get("tests") if isinstance(group, dict) else None
            if not isinstance(tests, list):
                report.record(f"{path.name} group {index}", "malformed group: no tests list")
                continue
            for test in tests:
                if not isinstance(test, dict):
                    report.record(f"{path.name} group {index}", "malformed test: not an object")
                    continue
                try:
                    problem = run(group, test)
                except Exception as exc:  # a checker must report, never stop
                    problem = f"checker failed: {type(exc).__name__}: {_one_line(exc)}"
                if only_applicable and problem == "n/a":
                    continue
                where = f"{path.name} #{test.get('tcId', '?')} ({test.get('comment', '')})"
                report.record(where, problem)
    return report


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _load_groups(path: Path, report: CheckReport) -> list[Any]:
    """The test groups of one file, or none (and one recorded failure) if it is malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report.record(path.name, f"unreadable vector file: {_one_line(exc)}")
        return []
    groups = data.get("testGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        report.record(path.name, "malformed vector file: no testGroups list")
        return []
    return groups
