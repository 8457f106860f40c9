"""The two sealed messages that link a new device to an identity (spec section 17).

Both travel through the relay's link slot, sealed with XChaCha20-Poly1305
under ``link_key`` (:mod:`e2e_recall.link_code`); the relay sees their
length and nothing else.  Sealed form: ``nonce (24) || ciphertext``, with
``aad = AEAD_LINK_REQUEST || link_id`` or ``AEAD_LINK_ANSWER || link_id``,
so neither can be presented as the other, nor moved to another slot.

* **request** (new device to old): the new device's public keys and id, and
  a proof of possession -- its signing key's signature under
  ``SIG_LINK_PROOF`` over ``link_id || canonical map without the proof`` --
  so the old device certifies only a key the requester holds, for this link.
* **answer** (old device to new): the identity's private seed, the
  certificate it signed for the new device, the old device's approval for
  the relay, the relay's URL, the handle, the contacts (with their pinned
  keys and verification flags), the ids of the user's groups and the name
  the old device shows for each.  An answer from before group names (no
  ``group_names`` key) still opens, its groups unnamed.

Decoding is strict and bounded, and every failure is a
:class:`~e2e_recall.errors.ProtocolError`; an AEAD failure says only that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
from nacl.exceptions import CryptoError

from . import wire
from .device import DeviceCertificate, verify_device_certificate
from .domains import (
    AEAD_LINK_ANSWER,
    AEAD_LINK_REQUEST,
    FINGERPRINT_LEN,
    ID_LEN,
    KEY_LEN,
    NONCE_LEN,
    PROTOCOL_VERSION,
    SIG_LINK_PROOF,
    SIGNATURE_LEN,
    TAG_LEN,
)
from .errors import AuthenticationFailure, DecodeError, UsageError, WrongContext, WrongSigner
from .identity import fingerprint
from .randomness import Rng, system_random
from .schema import Field, check_map, check_version
from .signing import SigningKey, VerifyKey
from .wrapping import WrapPublicKey, suite_from_wire

__all__ = [
    "MAX_ANSWER",
    "MAX_REQUEST",
    "LinkAnswer",
    "LinkContact",
    "LinkRequest",
    "open_link_answer",
    "open_link_request",
    "seal_link_answer",
    "seal_link_request",
]

MAX_REQUEST_PLAIN = 8 * 1024
MAX_ANSWER_PLAIN = 768 * 1024  # a sealed answer stays within the relay's 1 MiB byte strings
MAX_REQUEST = NONCE_LEN + MAX_REQUEST_PLAIN + TAG_LEN
MAX_ANSWER = NONCE_LEN + MAX_ANSWER_PLAIN + TAG_LEN
MAX_CONTACTS = 4096
MAX_GROUPS = 4096
MAX_GROUP_NAME = 32  # bytes of UTF-8, as a contact's name

_REQUEST_FIELDS = (
    Field("version", "uint"),
    Field("device_id", "bin", size=ID_LEN),
    Field("signing_key", "bin", size=KEY_LEN),
    Field("wrap_suite", "uint", max_value=0xFFFF),
    Field("wrap_key", "bin", max_len=4096),
    Field("device_name", "str", max_len=64, optional=True),
    Field("proof", "bin", size=SIGNATURE_LEN),
)
_CONTACT_FIELDS = (
    Field("name", "str", min_len=1, max_len=32),
    Field("user_id", "bin", size=FINGERPRINT_LEN),
    Field("identity_key", "bin", size=KEY_LEN),
    Field("verified", "bool"),
)
_ANSWER_FIELDS = (
    Field("version", "uint"),
    Field("identity_key", "bin", size=KEY_LEN),
    Field("certificate", "bin", max_len=8192),
    Field("approval", "bin", max_len=256),
    Field("relay_url", "str", min_len=1, max_len=2048),
    Field("handle", "str", max_len=32, optional=True),
    Field("contacts", "list", max_len=MAX_CONTACTS, item=_CONTACT_FIELDS),
    Field("groups", "list", max_len=MAX_GROUPS),
)
# An answer from before group names lacks this key; one that has it is checked whole.
_ANSWER_FIELDS_NAMED = (*_ANSWER_FIELDS, Field("group_names", "list", max_len=MAX_GROUPS))
_REQUEST_LIMITS = wire.Limits(max_size=MAX_REQUEST_PLAIN, max_bin=4096, max_map=8)
_ANSWER_LIMITS = wire.Limits(
    max_size=MAX_ANSWER_PLAIN, max_bin=8192, max_array=MAX_CONTACTS, max_map=9
)


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """A new device's keys, with its proof of holding the signing key checked."""

    device_id: bytes
    signing_key: VerifyKey
    wrap_key: WrapPublicKey
    device_name: str | None


@dataclass(frozen=True, slots=True)
class LinkContact:
    name: str
    user_id: bytes
    identity_key: bytes
    verified: bool


@dataclass(frozen=True, slots=True)
class LinkAnswer:
    """What the new device receives: everything it needs to act as the user."""

    identity: SigningKey
    certificate: DeviceCertificate
    approval: bytes
    relay_url: str
    handle: str | None
    contacts: tuple[LinkContact, ...]
    groups: tuple[bytes, ...]
    # the old device's name for each group, index by index (None: unnamed, as every group
    # of an answer from before names); the chain, not this, says who the members are
    group_names: tuple[str | None, ...] = ()

    def named_groups(self) -> tuple[tuple[bytes, str | None], ...]:
        """Each group id with the name the old device gave it, if any."""
        names = self.group_names or (None,) * len(self.groups)
        return tuple(zip(self.groups, names, strict=True))


def _check_link_id(link_id: bytes) -> None:
    if type(link_id) is not bytes or len(link_id) != ID_LEN:
        raise UsageError("bad_length", "a link id is 16 bytes")


def _seal(plain: bytes, key: bytes, aad: bytes, rng: Rng) -> bytes:
    nonce = rng(NONCE_LEN)
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, aad, nonce, key)


def _open(sealed: bytes, key: bytes, aad: bytes, maximum: int) -> bytes:
    if type(sealed) is not bytes or len(sealed) < NONCE_LEN + TAG_LEN:
        raise DecodeError("bad_length", "a sealed link message is too short")
    if len(sealed) > maximum:
        raise DecodeError("too_large", "a sealed link message is too long")
    try:
        return bytes(
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed[NONCE_LEN:], aad, sealed[:NONCE_LEN], key
            )
        )
    except CryptoError:
        raise AuthenticationFailure("aead_failure", "the link message does not open") from None


def _proof_payload(link_id: bytes, body: dict[str, Any]) -> bytes:
    return link_id + wire.encode({k: v for k, v in body.items() if k != "proof"})


def seal_link_request(
    *,
    link_id: bytes,
    link_key: bytes,
    device_id: bytes,
    signing_key: SigningKey,
    wrap_key: WrapPublicKey,
    device_name: str | None = None,
    rng: Rng = system_random,
) -> bytes:
    """The new device's request, sealed for the old device."""
    _check_link_id(link_id)
    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "device_id": device_id,
        "signing_key": signing_key.public_key.raw,
        "wrap_suite": int(wrap_key.suite),
        "wrap_key": wrap_key.raw,
        "device_name": device_name,
    }
    body["proof"] = signing_key.sign(SIG_LINK_PROOF, _proof_payload(link_id, body))
    try:
        check_map(body, _REQUEST_FIELDS, "link request")
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    return _seal(wire.encode(body), link_key, AEAD_LINK_REQUEST + link_id, rng)


def open_link_request(sealed: bytes, *, link_id: bytes, link_key: bytes) -> LinkRequest:
    """Open and check a request: AEAD first, then the fields, then the proof."""
    _check_link_id(link_id)
    plain = _open(sealed, link_key, AEAD_LINK_REQUEST + link_id, MAX_REQUEST)
    obj = wire.decode(plain, limits=_REQUEST_LIMITS)
    check_version(obj, "link request", PROTOCOL_VERSION)
    fields = check_map(obj, _REQUEST_FIELDS, "link request")
    signing_key = VerifyKey(fields["signing_key"])
    wrap_key = WrapPublicKey(suite_from_wire(fields["wrap_suite"]), fields["wrap_key"])
    signing_key.verify(SIG_LINK_PROOF, _proof_payload(link_id, fields), fields["proof"])
    return LinkRequest(fields["device_id"], signing_key, wrap_key, fields["device_name"])


def seal_link_answer(
    *,
    link_id: bytes,
    link_key: bytes,
    identity: SigningKey,
    certificate: bytes,
    approval: bytes,
    relay_url: str,
    handle: str | None,
    contacts: list[LinkContact] | tuple[LinkContact, ...],
    groups: Sequence[bytes],
    group_names: Mapping[bytes, str | None] | None = None,
    rng: Rng = system_random,
) -> bytes:
    """The old device's answer, sealed for the new device.

    ``group_names`` gives the name this device shows for a group (a group it
    leaves out goes unnamed); it must name only groups in ``groups``.
    """
    _check_link_id(link_id)
    names = dict(group_names or {})
    if not set(names).issubset(groups):
        raise UsageError("unknown_group", "group_names names a group that is not in groups")
    ordered = sorted(set(groups))
    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "identity_key": identity.seed,
        "certificate": certificate,
        "approval": approval,
        "relay_url": relay_url,
        "handle": handle,
        "contacts": [
            {
                "name": c.name,
                "user_id": c.user_id,
                "identity_key": c.identity_key,
                "verified": c.verified,
            }
            for c in contacts
        ],
        "groups": ordered,
        "group_names": [names.get(g) for g in ordered],
    }
    try:
        _check_answer(body)
    except DecodeError as exc:
        raise UsageError(exc.reason, exc.detail) from None
    return _seal(wire.encode(body), link_key, AEAD_LINK_ANSWER + link_id, rng)


def _check_answer(obj: object) -> dict[str, Any]:
    """The answer's fields; ``group_names`` is filled with nil for an answer without it."""
    checked = check_version(obj, "link answer", PROTOCOL_VERSION)
    named = "group_names" in checked
    fields = check_map(obj, _ANSWER_FIELDS_NAMED if named else _ANSWER_FIELDS, "link answer")
    groups = fields["groups"]
    if any(type(g) is not bytes or len(g) != ID_LEN for g in groups):
        raise DecodeError("bad_length", "link answer.groups holds 16-byte group ids")
    if groups != sorted(set(groups)):
        raise DecodeError("unsorted", "link answer.groups must be sorted and distinct")
    if not named:
        return {**fields, "group_names": [None] * len(groups)}
    names = fields["group_names"]
    if len(names) != len(groups):
        raise DecodeError("bad_length", "link answer.group_names must name each group once")
    for name in names:
        if name is None:
            continue
        if type(name) is not str:
            raise DecodeError("wrong_type", "link answer.group_names holds strings or nil")
        if not 1 <= len(name.encode("utf-8")) <= MAX_GROUP_NAME:
            raise DecodeError("bad_length", "a name in link answer.group_names is 1 to 32 bytes")
    return fields


def open_link_answer(
    sealed: bytes, *, link_id: bytes, link_key: bytes, expected: LinkRequest, now: int
) -> LinkAnswer:
    """Open an answer and check it certifies exactly the device that asked (``expected``)."""
    _check_link_id(link_id)
    plain = _open(sealed, link_key, AEAD_LINK_ANSWER + link_id, MAX_ANSWER)
    fields = _check_answer(wire.decode(plain, limits=_ANSWER_LIMITS))
    identity = SigningKey(fields["identity_key"])
    certificate = verify_device_certificate(fields["certificate"], identity.public_key, now=now)
    if (
        certificate.device_id != expected.device_id
        or certificate.signing_key != expected.signing_key
        or certificate.wrap_key.raw != expected.wrap_key.raw
        or certificate.wrap_key.suite != expected.wrap_key.suite
    ):
        raise WrongContext("other_device", "the certificate is for another device")
    contacts = []
    seen: set[bytes] = set()
    for item in fields["contacts"]:
        key = VerifyKey(item["identity_key"])
        if fingerprint(key) != item["user_id"]:
            raise WrongSigner("not_owner", "a contact's user id is not its key's fingerprint")
        if item["user_id"] in seen:
            raise DecodeError("duplicate", "a contact appears twice in the link answer")
        seen.add(item["user_id"])
        contacts.append(LinkContact(item["name"], item["user_id"], key.raw, item["verified"]))
    return LinkAnswer(
        identity=identity,
        certificate=certificate,
        approval=fields["approval"],
        relay_url=fields["relay_url"],
        handle=fields["handle"],
        contacts=tuple(contacts),
        groups=tuple(fields["groups"]),
        group_names=tuple(fields["group_names"]),
    )
