"""This device's wrapping keys: rotating them on a schedule and deleting the old ones.

Every private wrapping key of the device is a row of ``wrap_keys`` in the
local store, sealed under the storage key: the ``current`` one (whose
certificate the relay serves), ``previous`` ones (superseded, kept while
wraps to them may still be pending) and at most one ``pending`` one (made,
not yet accepted by the relay).  Why the store and not the keystore: a
deleted row is overwritten in place (``secure_delete``) and then pushed out
of the WAL, the path recalled bodies already take, whereas rewriting the
keystore leaves the old file's blocks to the file system; and the keystore
would need the passphrase at every rotation (keystore.py explains the
placeholder key it keeps instead).

A rotation is crash-safe: the new private key is committed (``synchronous
= FULL``) before the relay learns its certificate, so a crash can never
leave a certificate whose private key is lost; a crash after that only
means the upload is repeated, which the relay answers as a retry.

An old key is deleted once the relay no longer accepts wraps to it (its
``usable_until`` passed, by the rule of protocol section 5.1, and the
relay's key status no longer lists it) and the relay says no wrap for this
device made to it is still pending.  A message wrapped to it but never
opened keeps it alive; that is the window docs/threat-model.md describes.

Every command that talks to the relay calls :func:`maybe_rotate` (through
``account.ensure_session``): a comparison of dates, and at most one check a
minute in a long-running client such as ``watch``.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Any

from e2e_recall import wire
from e2e_recall.device import DeviceCertificate, verify_device_certificate
from e2e_recall.errors import E2ERecallError
from e2e_recall.rotation import (
    DEFAULT_LIFETIME_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DEFAULT_ROTATE_EVERY_MS,
    issue_expiring_certificate,
    rotation_due,
    usable_until,
)
from e2e_recall.wrapping import WrapPrivateKey, suite_from_wire

from .core import Core
from .errors import KeystoreError, RelayRefused, RelayUnreachable, UsageProblem
from .store import LocalStore

__all__ = [
    "LIFETIME_ENV",
    "ROTATE_ENV",
    "KeyRow",
    "Rotation",
    "Schedule",
    "adopt_key",
    "current_certificate",
    "forget_keys",
    "key_rows",
    "maybe_rotate",
    "private_keys",
    "prune",
    "rotate",
    "schedule",
    "set_schedule",
]

ROTATE_ENV = "E2E_RECALL_ROTATE_EVERY"
LIFETIME_ENV = "E2E_RECALL_KEY_LIFETIME"
CHECK_EVERY_MS = 60_000  # a long-running client looks at the schedule at most this often
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


@dataclass(frozen=True)
class Schedule:
    rotate_every: int
    lifetime: int


@dataclass(frozen=True)
class Rotation:
    key_id: bytes
    created_at: int
    expires_at: int | None
    deleted: tuple[bytes, ...] = ()  # old keys deleted afterwards


@dataclass
class _State:
    """Per open profile, in memory: when the schedule was last looked at, and overrides."""

    checked_at: int | None = None
    busy: bool = False
    rotate_every: int | None = None  # the --rotate-every hook
    problem: str | None = None  # why the last automatic rotation did not happen
    deleted: list[bytes] = field(default_factory=list)


def _state(core: Core) -> _State:
    if not isinstance(core.rotation, _State):
        core.rotation = _State()
    return core.rotation


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


def _insert(
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
            _insert(store, private, cert, "current")


def _certificate(core: Core, data: bytes) -> DeviceCertificate:
    return verify_device_certificate(data, core.keys.identity.public_key, now=None)


def _current(core: Core) -> KeyRow:
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


# -- the schedule -------------------------------------------------------------------------------
def _duration(text: str, what: str) -> int:
    from .commands import parse_duration  # commands imports the client, which imports this

    try:
        return parse_duration(text)
    except UsageProblem:
        raise UsageProblem(
            f"{what} {text!r} is not a duration; write it like 90s, 15m, 1h, 7d or 2w.",
            "bad_duration",
        ) from None


def schedule(core: Core) -> Schedule:
    """The rotation period and key lifetime: environment, else the profile's, else defaults."""
    store = core.store
    rotate_every = store.get_int("rotate_every") or DEFAULT_ROTATE_EVERY_MS
    lifetime = store.get_int("key_lifetime") or DEFAULT_LIFETIME_MS
    if os.environ.get(ROTATE_ENV):
        rotate_every = _duration(os.environ[ROTATE_ENV], ROTATE_ENV)
    if os.environ.get(LIFETIME_ENV):
        lifetime = _duration(os.environ[LIFETIME_ENV], LIFETIME_ENV)
    override = _state(core).rotate_every
    return _checked(Schedule(override or rotate_every, lifetime))


def _checked(plan: Schedule) -> Schedule:
    if plan.rotate_every <= 0 or plan.lifetime <= 0:
        raise UsageProblem("Rotation period and key lifetime must be positive.", "bad_schedule")
    if plan.lifetime > DEFAULT_MAX_LIFETIME_MS:
        raise UsageProblem(
            "A key may live at most 90 days (relays refuse longer certificates).", "bad_schedule"
        )
    return plan


def set_schedule(core: Core, rotate_every: int | None, lifetime: int | None) -> Schedule:
    """Keep a rotation period and/or key lifetime as this profile's setting."""
    current = schedule(core)
    plan = _checked(Schedule(rotate_every or current.rotate_every, lifetime or current.lifetime))
    with core.store.transaction():
        core.store.set_int("rotate_every", plan.rotate_every)
        core.store.set_int("key_lifetime", plan.lifetime)
    return plan


def check_interval(core: Core) -> int:
    """How often a long-running client looks at the schedule: a minute, or the period if shorter."""
    return min(CHECK_EVERY_MS, schedule(core).rotate_every)


def override_rotate_every(core: Core, rotate_every: int) -> None:
    """The ``--rotate-every`` hook: this process only, nothing stored."""
    _state(core).rotate_every = rotate_every


def issue_certificate(core: Core, private: WrapPrivateKey, created_at: int) -> DeviceCertificate:
    """A certificate for this device and ``private``, expiring by the schedule."""
    return issue_expiring_certificate(
        core.keys.identity,
        core.device_id,
        core.keys.device.signing_key.public_key,
        private.public_key,
        created_at=created_at,
        lifetime=schedule(core).lifetime,
    )


# -- rotating -----------------------------------------------------------------------------------
def _pending(core: Core) -> KeyRow | None:
    return next((r for r in key_rows(core.store) if r.state == "pending"), None)


def _make_pending(core: Core) -> KeyRow:
    """The pending key: the one a crash left, or a new one, committed before any upload."""
    store = core.store
    with store.transaction():
        found = _pending(core)
        if found is not None:
            return found
        current = _certificate(core, _current(core).certificate)
        private = WrapPrivateKey.generate(current.wrap_key.suite)
        created_at = max(core.clock(), current.created_at + 1)
        _insert(store, private, issue_certificate(core, private, created_at), "pending")
    found = _pending(core)
    assert found is not None
    return found


def _promote(core: Core, pending: KeyRow) -> None:
    store = core.store
    new = _certificate(core, pending.certificate)
    with store.transaction():
        rows = {r.key_id: r for r in key_rows(store)}
        found = rows.get(pending.key_id)
        if found is None or found.state != "pending":
            return  # another process of this profile promoted it already
        for row in rows.values():
            if row.state == "current":
                until = usable_until(_certificate(core, row.certificate), new)
                store.execute(
                    "UPDATE wrap_keys SET state = 'previous', usable_until = ? WHERE key_id = ?",
                    (until, row.key_id),
                )
        store.execute("UPDATE wrap_keys SET state = 'current' WHERE key_id = ?", (pending.key_id,))


def _drop(core: Core, key_ids: list[bytes]) -> None:
    if not key_ids:
        return
    with core.store.transaction():
        for key_id in key_ids:
            core.store.execute("DELETE FROM wrap_keys WHERE key_id = ?", (key_id,))
    core.store.scrub()


async def rotate(core: Core) -> Rotation:
    """Rotate now: a new key, its certificate accepted by the relay, then old keys pruned."""
    from .account import authed  # account calls maybe_rotate

    state = _state(core)
    was_busy, state.busy = state.busy, True  # the upload's own session check must not rotate
    try:
        pending = _make_pending(core)
        try:
            await authed(
                core, "POST", "/v1/devices/self/certificate", {"certificate": pending.certificate}
            )
        except RelayRefused as exc:
            if exc.status < 500 and exc.code != "certificate_changed":
                _drop(core, [pending.key_id])  # refused for good: nothing was wrapped to it
            raise
        _promote(core, pending)
    finally:
        state.busy = was_busy
    deleted = await prune(core)
    return Rotation(pending.key_id, pending.created_at, pending.expires_at, tuple(deleted))


async def prune(core: Core) -> list[bytes]:
    """Delete every previous key the relay no longer accepts wraps to and has none pending for."""
    from .account import authed

    now = core.clock()
    candidates = [
        r
        for r in key_rows(core.store)
        if r.state == "previous" and r.usable_until is not None and now >= r.usable_until
    ]
    if not candidates:
        return []
    status = await authed(core, "GET", "/v1/devices/self/keys")
    usable = {k["key_id"] for k in status["keys"]}
    pending = {p["key_id"] for p in status["pending"] if p["count"] > 0}
    if None in pending:  # wraps from before key ids: they could be to any key, keep them all
        return []
    doomed = [r.key_id for r in candidates if r.key_id not in usable and r.key_id not in pending]
    _drop(core, doomed)
    _state(core).deleted.extend(doomed)
    return doomed


async def maybe_rotate(core: Core) -> Rotation | None:
    """Rotate first if it is due (and prune); at most one look a minute. Never fails a command.

    A relay that cannot be reached or refuses leaves the current key in use:
    the command goes on, and the next one tries again.
    """
    state = _state(core)
    now = core.clock()
    waited = None if state.checked_at is None else now - state.checked_at
    if state.busy or (waited is not None and waited < check_interval(core)):
        return None
    if core.store.get_meta("relay_url") is None or not key_rows(core.store):
        return None
    state.checked_at, state.busy = now, True
    try:
        current = _certificate(core, _current(core).certificate)
        if _pending(core) is not None or rotation_due(
            current, now=now, rotate_every=schedule(core).rotate_every
        ):
            return await rotate(core)
        await prune(core)
        state.problem = None
    except (RelayUnreachable, RelayRefused) as exc:
        state.problem = exc.sentence
    finally:
        state.busy = False
    return None


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
