"""Vectors for linking and withdrawing devices (spec section 17).

``linking.json``: link codes (valid spellings and every kind of typo),
sealed link requests and answers (valid ones reproducible from the stated
secrets and nonce; tampered, wrong key, wrong associated data, moved to
another slot, oversized, bad proofs and bad contents).
``device_revocation.json``: identity-signed device revocations and
device-signed approvals, with the signature attacks every signed structure
gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium

from .. import wire
from ..device import DeviceSecrets, issue_device_certificate
from ..device_admin import approval_payload, sign_device_approval
from ..domains import (
    AEAD_LINK_ANSWER,
    AEAD_LINK_REQUEST,
    SIG_DEVICE_APPROVAL,
    SIG_DEVICE_CERTIFICATE,
    SIG_DEVICE_REVOCATION,
    SIG_LINK_PROOF,
    SIG_REVOCATION,
)
from ..link_code import ALPHABET, _check_symbols, format_code, link_keys
from ..linking import MAX_ANSWER, MAX_REQUEST, LinkContact, seal_link_answer, seal_link_request
from ..signing import SigningKey
from ..wrapping import WrapSuite
from .fixtures import MINUTE, T0, Context, fixed, flip_bit
from .format import Group, VectorFile
from .signatures import SignedCase, add_signature_attacks, signature_fields

__all__ = ["linking_vectors", "revocation_device_vectors"]

ANSWER_NOW = T0 + 2 * MINUTE


def _raw_seal(plain: bytes, key: bytes, aad: bytes, nonce: bytes) -> bytes:
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, aad, nonce, key)


def _codes(ctx: Context, vf: VectorFile) -> None:
    group = vf.group("LinkCode")
    secret = ctx.rng(16)
    code = format_code(secret)
    keys = link_keys(secret)
    good = {"secret": secret.hex(), "linkId": keys.link_id.hex(), "linkKey": keys.link_key.hex()}
    group.add("as shown", "success", ["Valid"], code=code, formatted=code, **good)
    spaced = code.lower().replace("-", " ")
    group.add("lower case, spaces", "success", ["Valid"], code=spaced, formatted=code, **good)
    for other in (bytes(16), b"\xff" * 16, ctx.rng(16)):
        k = link_keys(other)
        group.add(
            f"secret {other.hex()[:8]}...",
            "success",
            ["Valid"],
            code=format_code(other),
            formatted=format_code(other),
            secret=other.hex(),
            linkId=k.link_id.hex(),
            linkKey=k.link_key.hex(),
        )
    flat = code.replace("-", "")
    look_alike = flat.replace("1", "L").replace("0", "O")
    if look_alike != flat:
        group.add(
            "I/L for 1, O for 0", "success", ["Valid"], code=look_alike, formatted=code, **good
        )

    def bad(comment: str, text: str, reason: str) -> None:
        group.add(comment, "bad_code", ["Typo"], code=text, reason=reason)

    swap = "1" if flat[27] != "1" else "2"
    bad("checksum symbol changed", flat[:27] + swap, "bad_checksum")
    changed = "A" if flat[10] != "A" else "B"
    bad("secret symbol changed", flat[:10] + changed + flat[11:], "bad_checksum")
    bad("two symbols swapped", flat[:4] + flat[5] + flat[4] + flat[6:], "bad_checksum")
    bad("one symbol short", flat[:-1], "bad_code")
    bad("one symbol too many", flat + "0", "bad_code")
    bad("U is not a symbol", "U" + flat[1:], "bad_code")
    digits = [8] + [ALPHABET.index(c) for c in flat[1:26]]
    too_big = "".join(ALPHABET[d] for d in digits + _check_symbols(digits))
    bad("a valid codeword whose first symbol is above 7", too_big, "bad_code")
    bad("empty", "", "bad_code")


def _request_inputs(secret: bytes) -> dict[str, Any]:
    return {"linkSecret": secret.hex()}


def _device_fields(device: DeviceSecrets) -> dict[str, Any]:
    return {
        "deviceId": device.device_id.hex(),
        "signingKey": device.signing_key.public_key.raw.hex(),
        "wrapSuite": int(device.wrap_key.public_key.suite),
        "wrapKey": device.wrap_key.public_key.raw.hex(),
    }


def _request_body(device: DeviceSecrets, link_id: bytes, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "device_id": device.device_id,
        "signing_key": device.signing_key.public_key.raw,
        "wrap_suite": int(device.wrap_key.public_key.suite),
        "wrap_key": device.wrap_key.public_key.raw,
        "device_name": "phone",
    }
    signer = over.pop("signer", device.signing_key)
    proof_id = over.pop("proof_link_id", link_id)
    body.update(over)
    unsigned = {k: v for k, v in body.items() if k != "proof"}
    body["proof"] = signer.sign(SIG_LINK_PROOF, proof_id + wire.encode(unsigned))
    return body


def _requests(ctx: Context, vf: VectorFile, secret: bytes) -> None:
    group = vf.group("LinkRequestOpen")
    keys = link_keys(secret)
    for suite, name in ((WrapSuite.X25519, "phone"), (WrapSuite.XWING, None)):
        device = DeviceSecrets.generate(suite, ctx.rng)
        nonce = ctx.rng(24)
        sealed = seal_link_request(
            link_id=keys.link_id,
            link_key=keys.link_key,
            device_id=device.device_id,
            signing_key=device.signing_key,
            wrap_key=device.wrap_key.public_key,
            device_name=name,
            rng=fixed(nonce),
        )
        group.add(
            f"{suite.name.lower()} device",
            "success",
            ["Valid", "Deterministic"],
            sealed=sealed.hex(),
            nonce=nonce.hex(),
            devicePrivateKey=device.signing_key.seed.hex(),
            expected={**_device_fields(device), "deviceName": name},
            **_request_inputs(secret),
        )
    device = DeviceSecrets.generate(WrapSuite.X25519, ctx.rng)
    nonce = ctx.rng(24)
    aad = AEAD_LINK_REQUEST + keys.link_id

    def add(comment: str, expect: str, flags: list[str], sealed: bytes, **more: Any) -> None:
        group.add(comment, expect, flags, sealed=sealed.hex(), **_request_inputs(secret), **more)

    good = _raw_seal(wire.encode(_request_body(device, keys.link_id)), keys.link_key, aad, nonce)
    add("ciphertext bit flipped", "auth_failure", ["Tampered"], flip_bit(good, 40))
    add("nonce bit flipped", "auth_failure", ["Tampered"], flip_bit(good, 3))
    add("tag bit flipped", "auth_failure", ["Tampered"], flip_bit(good, len(good) - 1))
    other = link_keys(ctx.rng(16))
    plain = wire.encode(_request_body(device, keys.link_id))
    add(
        "sealed under another code's key",
        "auth_failure",
        ["WrongKey"],
        _raw_seal(plain, other.link_key, aad, nonce),
    )
    add(
        "sealed with the answer's associated data",
        "auth_failure",
        ["WrongContext"],
        _raw_seal(plain, keys.link_key, AEAD_LINK_ANSWER + keys.link_id, nonce),
    )
    add(
        "sealed for another slot",
        "auth_failure",
        ["WrongContext"],
        _raw_seal(plain, keys.link_key, AEAD_LINK_REQUEST + other.link_id, nonce),
    )
    add("shorter than nonce and tag", "decode_failure", ["Truncated"], good[:39])
    add(
        "longer than a request may be",
        "decode_failure",
        ["TooLarge"],
        _raw_seal(bytes(MAX_REQUEST - 39), keys.link_key, aad, nonce),
    )

    def sealed_body(body: dict[str, Any]) -> bytes:
        return _raw_seal(wire.encode(body), keys.link_key, aad, nonce)

    stranger = SigningKey.generate(ctx.rng)
    add(
        "proof by another key",
        "bad_signature",
        ["WrongSigner"],
        sealed_body(_request_body(device, keys.link_id, signer=stranger)),
    )
    add(
        "proof made for another slot",
        "bad_signature",
        ["WrongContext"],
        sealed_body(_request_body(device, keys.link_id, proof_link_id=other.link_id)),
    )
    tampered = _request_body(device, keys.link_id)
    tampered["device_name"] = "laptop"
    add("field changed after the proof", "bad_signature", ["Tampered"], sealed_body(tampered))
    extra = _request_body(device, keys.link_id)
    extra["colour"] = "red"
    add("unknown field", "decode_failure", ["UnknownField"], sealed_body(extra))
    missing = _request_body(device, keys.link_id)
    del missing["wrap_key"]
    add("missing wrap_key", "decode_failure", ["MissingField"], sealed_body(missing))
    add(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        sealed_body(_request_body(device, keys.link_id, version=2)),
    )
    add(
        "signing key of small order",
        "invalid_key",
        ["SmallOrderKey"],
        sealed_body(_request_body(device, keys.link_id, signing_key=bytes(32))),
    )
    add(
        "device id of 15 bytes",
        "decode_failure",
        ["BadLength"],
        sealed_body(_request_body(device, keys.link_id, device_id=bytes(15))),
    )
    add(
        "not a map",
        "decode_failure",
        ["TypeConfusion"],
        _raw_seal(wire.encode([1, 2]), keys.link_key, aad, nonce),
    )


def _answer_body(ctx: Context, device: DeviceSecrets, **over: Any) -> dict[str, Any]:
    identity = over.pop("identity", ctx.alice)
    signer = over.pop("cert_signer", identity)
    certified = over.pop("certified", device)
    cert = issue_device_certificate(
        signer,
        certified.device_id,
        certified.signing_key.public_key,
        certified.wrap_key.public_key,
        created_at=T0,
    ).signed
    body: dict[str, Any] = {
        "version": 1,
        "identity_key": identity.seed,
        "certificate": cert,
        "approval": sign_device_approval(
            ctx.alice_device.signing_key,
            relay=ctx.uid(ctx.relay),
            approver=ctx.alice_device.device_id,
            certificate=cert,
        ),
        "relay_url": "https://relay.example",
        "handle": "alice",
        "contacts": [
            {
                "name": "bob",
                "user_id": ctx.uid(ctx.bob),
                "identity_key": ctx.bob.public_key.raw,
                "verified": True,
            }
        ],
        "groups": sorted([bytes([7]) * 16, bytes([9]) * 16]),
        "group_names": ["family", None],
    }
    body.update(over)
    return body


def _answers(ctx: Context, vf: VectorFile, secret: bytes) -> None:
    keys = link_keys(secret)
    device = DeviceSecrets.generate(WrapSuite.X25519, ctx.rng)
    group = vf.group(
        "LinkAnswerOpen",
        linkSecret=secret.hex(),
        now=ANSWER_NOW,
        request=_device_fields(device),
    )
    nonce = ctx.rng(24)
    body = _answer_body(ctx, device)
    sealed = seal_link_answer(
        link_id=keys.link_id,
        link_key=keys.link_key,
        identity=ctx.alice,
        certificate=body["certificate"],
        approval=body["approval"],
        relay_url=body["relay_url"],
        handle=body["handle"],
        contacts=[LinkContact("bob", ctx.uid(ctx.bob), ctx.bob.public_key.raw, True)],
        groups=body["groups"],
        group_names={body["groups"][0]: "family"},
        rng=fixed(nonce),
    )
    expected = {
        "user": ctx.uid(ctx.alice).hex(),
        "certificate": body["certificate"].hex(),
        "approval": body["approval"].hex(),
        "relayUrl": body["relay_url"],
        "handle": "alice",
        "contacts": [
            {
                "name": "bob",
                "userId": ctx.uid(ctx.bob).hex(),
                "identityKey": ctx.bob.public_key.raw.hex(),
                "verified": True,
            }
        ],
        "groups": [g.hex() for g in body["groups"]],
        "groupNames": ["family", None],
    }
    group.add(
        "identity, certificate, a contact and two groups, one named",
        "success",
        ["Valid", "Deterministic"],
        sealed=sealed.hex(),
        nonce=nonce.hex(),
        expected=expected,
    )
    aad = AEAD_LINK_ANSWER + keys.link_id

    def add(comment: str, expect: str, flags: list[str], sealed: bytes) -> None:
        group.add(comment, expect, flags, sealed=sealed.hex())

    def sealed_body(b: dict[str, Any], with_aad: bytes = aad, key: bytes = keys.link_key) -> bytes:
        return _raw_seal(wire.encode(b), key, with_aad, nonce)

    add("ciphertext bit flipped", "auth_failure", ["Tampered"], flip_bit(sealed, 60))
    add(
        "sealed under another code's key",
        "auth_failure",
        ["WrongKey"],
        sealed_body(body, key=link_keys(ctx.rng(16)).link_key),
    )
    add(
        "sealed with the request's associated data",
        "auth_failure",
        ["WrongContext"],
        sealed_body(body, AEAD_LINK_REQUEST + keys.link_id),
    )
    add(
        "longer than an answer may be",
        "decode_failure",
        ["TooLarge"],
        _raw_seal(bytes(MAX_ANSWER - 39), keys.link_key, aad, nonce),
    )
    other = DeviceSecrets.generate(WrapSuite.X25519, ctx.rng)
    add(
        "certificate for another device",
        "wrong_context",
        ["WrongContext"],
        sealed_body(_answer_body(ctx, device, certified=other)),
    )
    add(
        "certificate signed by another identity",
        "bad_signature",
        ["WrongSigner"],
        sealed_body(_answer_body(ctx, device, cert_signer=ctx.carol)),
    )
    liar = _answer_body(ctx, device)
    liar["contacts"] = [{**liar["contacts"][0], "user_id": ctx.uid(ctx.carol)}]
    add(
        "contact whose user id is not its key's", "wrong_signer", ["WrongSigner"], sealed_body(liar)
    )
    unsorted = _answer_body(ctx, device)
    unsorted["groups"] = list(reversed(unsorted["groups"]))
    add("groups unsorted", "decode_failure", ["Unsorted"], sealed_body(unsorted))
    add(
        "a group id of 15 bytes",
        "decode_failure",
        ["BadLength"],
        sealed_body(_answer_body(ctx, device, groups=[bytes(15)])),
    )
    add(
        "version 2",
        "unsupported_version",
        ["UnknownVersion"],
        sealed_body(_answer_body(ctx, device, version=2)),
    )
    extra = _answer_body(ctx, device)
    extra["history"] = []
    add("unknown field", "decode_failure", ["UnknownField"], sealed_body(extra))
    _group_name_cases(ctx, device, group, sealed_body, expected)


def _group_name_cases(
    ctx: Context,
    device: DeviceSecrets,
    group: Group,
    sealed_body: Callable[[dict[str, Any]], bytes],
    expected: dict[str, Any],
) -> None:
    """Answers from before group names, and group names that break the rules."""
    legacy = _answer_body(ctx, device)
    del legacy["group_names"]
    group.add(
        "made before group names: the groups are unnamed",
        "success",
        ["Valid", "Legacy"],
        sealed=sealed_body(legacy).hex(),
        expected={**expected, "groupNames": [None, None]},
    )
    for comment, names, flags in (
        ("one name for two groups", ["family"], ["BadLength"]),
        ("an empty group name", ["", None], ["BadLength"]),
        ("a group name of 33 bytes", ["f" * 33, None], ["BadLength"]),
        ("a group name as bytes", [b"family", None], ["TypeConfusion"]),
    ):
        bad = _answer_body(ctx, device, group_names=names)
        group.add(comment, "decode_failure", flags, sealed=sealed_body(bad).hex())


def linking_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Linking devices: link codes, HKDF-SHA256 and XChaCha20-Poly1305",
        [
            "LinkCode: parse code to the 16-byte secret (or bad_code), format it again, and",
            "derive linkId and linkKey.  LinkRequestOpen / LinkAnswerOpen: derive the keys",
            "from linkSecret, open sealed (nonce || ciphertext) with aad = label || linkId and",
            "check the contents; valid tests seal again from nonce (and devicePrivateKey).",
        ],
    )
    _codes(ctx, vf)
    secret = ctx.rng(16)
    _requests(ctx, vf, secret)
    _answers(ctx, vf, secret)
    return vf


def _revocation_body(ctx: Context, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "user": ctx.uid(ctx.alice),
        "device_id": ctx.alice_device.device_id,
        "revoked_at": T0 + 3 * MINUTE,
        "relay": ctx.uid(ctx.relay),
    }
    body.update(over)
    return body


def _revocation_expected(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "expected": {
            "user": body["user"].hex(),
            "deviceId": body["device_id"].hex(),
            "revokedAt": body["revoked_at"],
            "relay": body["relay"].hex(),
        }
    }


def revocation_device_vectors(ctx: Context) -> VectorFile:
    vf = VectorFile(
        "Device revocations (identity-signed) and device approvals (device-signed)",
        [
            "DeviceRevocationVerify: verify signed with signerPublicKey under the",
            "device-revocation label before decoding; the user must be the signer's",
            "fingerprint and relay the relay id given.  DeviceApprovalVerify: verify the",
            "approval with approverPublicKey over relay || approver id || SHA-256(",
            "certificate label || certificate) under the device-approval label.",
        ],
    )
    relay = ctx.uid(ctx.relay)
    group = vf.group("DeviceRevocationVerify", relay=relay.hex())
    body = _revocation_body(ctx)
    case = SignedCase(ctx.alice, SIG_DEVICE_REVOCATION, wire.encode(body))
    group.add(
        "revoke a device",
        "success",
        ["Valid", "Deterministic"],
        **case.fields(seed=True),
        **_revocation_expected(body),
    )
    add_signature_attacks(ctx, group, case, [SIG_REVOCATION, SIG_DEVICE_CERTIFICATE], lambda: {})
    for comment, expect, flags, changed in (
        (
            "made for another relay",
            "wrong_context",
            ["WrongContext"],
            _revocation_body(ctx, relay=ctx.uid(ctx.carol)),
        ),
        (
            "names another user",
            "wrong_signer",
            ["WrongSigner"],
            _revocation_body(ctx, user=ctx.uid(ctx.bob)),
        ),
        ("version 2", "unsupported_version", ["UnknownVersion"], _revocation_body(ctx, version=2)),
        (
            "device id of 17 bytes",
            "decode_failure",
            ["BadLength"],
            _revocation_body(ctx, device_id=bytes(17)),
        ),
        (
            "revoked_at as a string",
            "decode_failure",
            ["TypeConfusion"],
            _revocation_body(ctx, revoked_at="now"),
        ),
    ):
        bad = SignedCase(ctx.alice, SIG_DEVICE_REVOCATION, wire.encode(changed))
        group.add(comment, expect, flags, **bad.fields())

    approvals = vf.group("DeviceApprovalVerify", relay=relay.hex())
    approver = ctx.alice_device
    new = ctx.bob_laptop
    cert = issue_device_certificate(
        ctx.alice, new.device_id, new.signing_key.public_key, new.wrap_key.public_key, created_at=T0
    ).signed
    approval = sign_device_approval(
        approver.signing_key, relay=relay, approver=approver.device_id, certificate=cert
    )
    payload = approval_payload(relay, approver.device_id, cert)
    signature = approver.signing_key.sign(SIG_DEVICE_APPROVAL, payload)
    fields = signature_fields(
        approver.signing_key.public_key.raw,
        SIG_DEVICE_APPROVAL + payload,
        signature,
        approver.signing_key,
    )
    approvals.add(
        "approval of a new certificate",
        "success",
        ["Valid", "Deterministic"],
        approval=approval.hex(),
        certificate=cert.hex(),
        approverPublicKey=approver.signing_key.public_key.raw.hex(),
        expected={"approver": approver.device_id.hex()},
        **fields,
    )
    common = {"approverPublicKey": approver.signing_key.public_key.raw.hex()}
    other_cert = issue_device_certificate(
        ctx.alice,
        new.device_id,
        new.signing_key.public_key,
        new.wrap_key.public_key,
        created_at=T0 + 1,
    ).signed
    approvals.add(
        "presented for another certificate",
        "bad_signature",
        ["WrongContext"],
        approval=approval.hex(),
        certificate=other_cert.hex(),
        **common,
    )
    approvals.add(
        "verified with another device's key",
        "bad_signature",
        ["WrongKey"],
        approval=approval.hex(),
        certificate=cert.hex(),
        approverPublicKey=ctx.bob_device.signing_key.public_key.raw.hex(),
    )
    flipped = wire.encode({"device_id": approver.device_id, "signature": flip_bit(signature, 5)})
    approvals.add(
        "signature bit flipped",
        "bad_signature",
        ["Tampered"],
        approval=flipped.hex(),
        certificate=cert.hex(),
        **common,
    )
    moved = wire.encode({"device_id": ctx.bob_device.device_id, "signature": signature})
    approvals.add(
        "names another approving device",
        "bad_signature",
        ["WrongContext"],
        approval=moved.hex(),
        certificate=cert.hex(),
        **common,
    )
    for_other_relay = sign_device_approval(
        approver.signing_key,
        relay=ctx.uid(ctx.carol),
        approver=approver.device_id,
        certificate=cert,
    )
    approvals.add(
        "made for another relay",
        "bad_signature",
        ["WrongContext"],
        approval=for_other_relay.hex(),
        certificate=cert.hex(),
        **common,
    )
    approvals.add(
        "signature of 63 bytes",
        "decode_failure",
        ["BadLength"],
        approval=wire.encode({"device_id": approver.device_id, "signature": signature[:63]}).hex(),
        certificate=cert.hex(),
        **common,
    )
    approvals.add(
        "not msgpack",
        "decode_failure",
        ["Truncated"],
        approval=approval[:-5].hex(),
        certificate=cert.hex(),
        **common,
    )
    return vf
