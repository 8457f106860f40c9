"""The keystore: a profile's private keys, encrypted under the user's passphrase.

The passphrase is stretched with Argon2id (libsodium ``crypto_pwhash`` through
PyNaCl) into a key for XSalsa20-Poly1305 (``SecretBox``).  The file holds the
KDF parameters and salt in the clear, so stronger parameters can be chosen
later without breaking older files, and the sealed secrets:

* the identity signing key (the user id is its fingerprint),
* this device's secrets (device id, signing key, wrapping key),
* this device's certificate (public, but kept with the keys it certifies),
* the *storage key*, 32 random bytes that encrypt message bodies and session
  tokens in the local database, so the database alone reveals no content.

Wrapping private keys rotate (``client/rotation.py``) and old ones must be
deletable without a trace, so they live in the local database, sealed under
the storage key, where a deleted row is overwritten in place
(``secure_delete``) and pushed out of the WAL.  A keystore marked
``wrap_keys = "store"`` therefore holds, in its device secrets, a wrapping
key that was never certified (nothing is ever wrapped to it); profiles from
before rotation are converted once, when they are next opened.

The file is written to a temporary name, flushed and renamed, so a crash
never leaves half a keystore.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from e2e_recall import DeviceSecrets, SigningKey, wire
from e2e_recall.errors import E2ERecallError
from e2e_recall.keyfile import (
    dump_device_secrets,
    dump_signing_key,
    load_device_secrets,
    load_signing_key,
)

from .errors import KeystoreError, UsageProblem, WrongPassphrase

__all__ = [
    "DEFAULT_STRENGTH",
    "KEYSTORE_VERSION",
    "STRENGTHS",
    "Keys",
    "create_keystore",
    "open_keystore",
    "reseal_keystore",
]

KEYSTORE_VERSION = 1
_KDF = "argon2id"
# libsodium's named cost levels.  "moderate" (the default: about 0.7 s and
# 256 MiB on a 2-core machine, paid once per command) or "sensitive" for a
# stronger keystore; "interactive" (0.13 s, 64 MiB) is the floor accepted.
STRENGTHS: dict[str, tuple[int, int]] = {
    "interactive": (
        nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
    ),
    "moderate": (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE),
    "sensitive": (
        nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE,
        nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE,
    ),
}
DEFAULT_STRENGTH = "moderate"
_MIN_OPS, _MIN_MEM = STRENGTHS["interactive"]
_MAX_OPS, _MAX_MEM = STRENGTHS["sensitive"]
MIN_PASSPHRASE = 8
_LIMITS = wire.Limits(max_size=1 << 16, max_bin=1 << 14)


@dataclass(frozen=True)
class Keys:
    """What the keystore holds, once opened."""

    identity: SigningKey
    device: DeviceSecrets
    certificate: bytes
    storage_key: bytes
    # True: the device's wrapping keys are in the local store and ``device.wrap_key``
    # is an uncertified placeholder (see the module docstring).
    wrap_keys_in_store: bool = False

    def to_wire(self) -> bytes:
        fields: dict[str, Any] = {
            "identity": dump_signing_key(self.identity),
            "device": dump_device_secrets(self.device),
            "certificate": self.certificate,
            "storage_key": self.storage_key,
        }
        if self.wrap_keys_in_store:
            fields["wrap_keys"] = "store"
        return wire.encode(fields)

    @classmethod
    def from_wire(cls, data: bytes) -> Keys:
        obj = wire.decode(data, limits=_LIMITS)
        if not isinstance(obj, dict):
            raise KeystoreError("The keystore is damaged.", "keystore_damaged")
        try:
            storage_key = obj["storage_key"]
            if not isinstance(storage_key, bytes) or len(storage_key) != 32:
                raise KeyError("storage_key")
            certificate = obj["certificate"]
            if not isinstance(certificate, bytes):
                raise KeyError("certificate")
            location = obj.get("wrap_keys")
            if location not in (None, "store"):
                raise KeyError("wrap_keys")
            return cls(
                identity=load_signing_key(obj["identity"]),
                device=load_device_secrets(obj["device"]),
                certificate=certificate,
                storage_key=storage_key,
                wrap_keys_in_store=location == "store",
            )
        except (KeyError, TypeError, E2ERecallError):
            raise KeystoreError("The keystore is damaged.", "keystore_damaged") from None


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode("utf-8"),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def create_keystore(
    path: Path, passphrase: str, keys: Keys, strength: str = DEFAULT_STRENGTH
) -> None:
    """Seal ``keys`` under ``passphrase`` into a new keystore at ``path``."""
    if strength not in STRENGTHS:
        raise UsageProblem(
            f"Unknown key-derivation strength {strength!r}; choose one of "
            + ", ".join(STRENGTHS)
            + ".",
            "bad_strength",
        )
    opslimit, memlimit = STRENGTHS[strength]
    if path.exists():
        raise KeystoreError(
            f"A keystore already exists at {path}; use another --profile.", "keystore_exists"
        )
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageProblem(
            f"The passphrase is too short; use at least {MIN_PASSPHRASE} characters.",
            "weak_passphrase",
        )
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    document: dict[str, Any] = {
        "version": KEYSTORE_VERSION,
        "kdf": _KDF,
        "opslimit": opslimit,
        "memlimit": memlimit,
        "salt": salt,
        "sealed": bytes(box.encrypt(keys.to_wire())),
    }
    _write_atomically(path, wire.encode(document))


def reseal_keystore(path: Path, passphrase: str, keys: Keys) -> None:
    """Replace the keystore at ``path`` with ``keys``, at the cost it was made with.

    Atomic (write, fsync, rename): a crash leaves the old keystore or the new
    one.  Used once per profile, to move its wrapping key to the local store.
    """
    document = wire.decode(path.read_bytes(), limits=_LIMITS)
    assert isinstance(document, dict)  # open_keystore checked it moments ago
    opslimit, memlimit = document["opslimit"], document["memlimit"]
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    document.update(salt=salt, sealed=bytes(box.encrypt(keys.to_wire())))
    _write_atomically(path, wire.encode(document))


def open_keystore(path: Path, passphrase: str) -> Keys:
    """Open the keystore at ``path``; a wrong passphrase is :class:`WrongPassphrase`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(
            f"No profile at {path.parent}; run 'e2e-recall init' first.", "no_profile"
        ) from None
    except OSError as exc:
        raise KeystoreError(f"Cannot read the keystore: {exc.strerror}.", "keystore_io") from None
    try:
        document = wire.decode(data, limits=_LIMITS)
    except E2ERecallError:
        raise KeystoreError("The keystore is damaged.", "keystore_damaged") from None
    if not isinstance(document, dict) or document.get("version") != KEYSTORE_VERSION:
        raise KeystoreError("The keystore is damaged or from a newer version.", "keystore_damaged")
    salt, sealed = document.get("salt"), document.get("sealed")
    opslimit, memlimit = document.get("opslimit"), document.get("memlimit")
    if (
        document.get("kdf") != _KDF
        or not isinstance(salt, bytes)
        or len(salt) != nacl.pwhash.argon2id.SALTBYTES
        or not isinstance(sealed, bytes)
        or not isinstance(opslimit, int)
        or not isinstance(memlimit, int)
        or not _MIN_OPS <= opslimit <= _MAX_OPS
        or not _MIN_MEM <= memlimit <= _MAX_MEM
    ):
        raise KeystoreError("The keystore is damaged.", "keystore_damaged")
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    try:
        plain = box.decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(
            "The passphrase does not open this profile's keystore.", "wrong_passphrase"
        ) from None
    return Keys.from_wire(plain)
