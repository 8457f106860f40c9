"""This device's wrapping private keys in the local store (the table rotation works on).

Each key is a row of ``wrap_keys``: its id, its state (``current``, whose
certificate the relay serves; ``previous``, superseded and kept while wraps
to it may be pending; ``pending``, made and not yet accepted by the relay),
the private key sealed under the storage key, its signed certificate and its
dates.  A deleted row is overwritten in place (``secure_delete``) and the
WAL checkpointed and truncated right after (:func:`drop_keys`), the path a
recalled body takes, so a deleted key leaves no copy in the profile's files.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from e2e_recall import wire
from e2e_recall.device import DeviceCertificate, verify_device_certificate
from e2e_recall.errors import E2ERecallError
from e2e_recall.wrapping import WrapPrivateKey, suite_from_wire

from .core import Core
from .errors import KeystoreError
from .store import LocalStore

__all__ = [
    "KeyRow",
    "adopt_key",
    "certificate_of",
    "current_certificate",
    "current_row",
    "describe_keys",
    "drop_keys",
    "forget_keys",
    "insert_key",
    "key_rows",
    "pending_row",
    "private_keys",
]

_TABLE = """
CREATE TABLE IF NOT EXISTS wrap_keys (
    key_id BLOB PRIMARY KEY,
    state TEXT NOT NULL,
    sealed BLOB NOT NULL,
    certificate BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    usable_until INTEGER
)
"""
_ready: weakref.WeakSet[LocalStore] = weakref.WeakSet()


@dataclass
class KeyRow:
    key_id: bytes
    state: str  # current | previous | pending
    sealed: bytes  # the private key, sealed under the storage key
    certificate: bytes
    created_at: int
    expires_at: int | None
    usable_until: int | None  # for a previous key: when the relay stops accepting wraps to it


_COLUMNS = "key_id, state, sealed, certificate, created_at, expires_at, usable_until"
_SELECT = f"SELECT {_COLUMNS} FROM wrap_keys ORDER BY state = 'current' DESC, created_at DESC"  # noqa: S608
_INSERT = f"INSERT OR IGNORE INTO wrap_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608


def _table(store: LocalStore) -> LocalStore:
    if store not in _ready:
        store.execute(_TABLE)
        _ready.add(store)
    return store


def key_rows(store: LocalStore) -> list[KeyRow]:
    """Every kept key, the current one first, then the newest."""
    found = _table(store).execute(_SELECT)
    return [KeyRow(*row) for row in found]


def _seal(store: LocalStore, private: WrapPrivateKey) -> bytes:
    return store.seal(wire.encode({"suite": int(private.suite), "key": private.raw}))


def _unseal(store: LocalStore, row: KeyRow) -> WrapPrivateKey:
    try:
        fields_ = wire.decode(store.unseal(row.sealed))
        assert isinstance(fields_, dict)
        return WrapPrivateKey(suite_from_wire(fields_["suite"]), fields_["key"])
    except (AssertionError, KeyError, TypeError, E2ERecallError):
        raise KeystoreError("A stored wrapping key is damaged.", "store_damaged") from None


def insert_key(
    store: LocalStore, private: WrapPrivateKey, cert: DeviceCertificate, state: str
) -> None:
    row = KeyRow(
        cert.wrap_key.key_id,
        state,
        _seal(store, private),
        cert.signed,
        cert.created_at,
        cert.expires_at,
        None,
    )
    store.execute(
        _INSERT,
        (
            row.key_id,
            row.state,
            row.sealed,
            row.certificate,
            row.created_at,
            row.expires_at,
            row.usable_until,
        ),
    )


def forget_keys(store: LocalStore) -> None:
    """Remove every kept key (a new profile starting over in the same directory)."""
    with _table(store).transaction():
        store.execute("DELETE FROM wrap_keys")


def adopt_key(store: LocalStore, private: WrapPrivateKey, cert: DeviceCertificate) -> None:
    """Keep ``private`` as the current key (a new profile, or one from before rotation)."""
    _table(store)
    with store.transaction():
        if not any(r.state == "current" for r in key_rows(store)):
            insert_key(store, private, cert, "current")


def certificate_of(core: Core, data: bytes) -> DeviceCertificate:
    return verify_device_certificate(data, core.keys.identity.public_key, now=None)


def current_row(core: Core) -> KeyRow:
    for row in key_rows(core.store):
        if row.state == "current":
            return row
    raise KeystoreError("This profile has no wrapping key; it is damaged.", "store_damaged")


def current_certificate(core: Core) -> bytes:
    """The certificate the relay should have for this device (the keystore's for old profiles)."""
    rows = key_rows(core.store)
    current = [r for r in rows if r.state == "current"]
    return current[0].certificate if current else core.keys.certificate


def private_keys(core: Core, key_id: bytes | None) -> list[WrapPrivateKey]:
    """The keys that may open a wrap: the one named, or (no key id) every kept key."""
    rows = key_rows(core.store)
    if not rows:  # a profile that predates rotation and was never converted
        return [core.keys.device.wrap_key]
    if key_id is not None:
        rows = [r for r in rows if r.key_id == key_id]
        if not rows:
            raise KeystoreError(
                "The key this message was wrapped to is no longer on this device.",
                "key_deleted",
            )
    return [_unseal(core.store, r) for r in rows if r.state != "pending"]


def pending_row(core: Core) -> KeyRow | None:
    return next((r for r in key_rows(core.store) if r.state == "pending"), None)


def drop_keys(core: Core, key_ids: list[bytes]) -> None:
    if not key_ids:
        return
    with core.store.transaction():
        for key_id in key_ids:
            core.store.execute("DELETE FROM wrap_keys WHERE key_id = ?", (key_id,))
    core.store.scrub()


def describe_keys(core: Core) -> list[dict[str, Any]]:
    """The kept keys, for ``e2e-recall device keys``: ids and dates, never the keys."""
    return [
        {
            "key_id": r.key_id.hex(),
            "state": r.state,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "usable_until": r.usable_until,
        }
        for r in key_rows(core.store)
    ]
