"""This device's wrapping keys: rotating them on a schedule and deleting the old ones.

Every private wrapping key of the device is a row of ``wrap_keys``
(client/wrap_keys.py) in the local store, sealed under the storage key: the
``current`` one (whose
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
from dataclasses import dataclass, field

from e2e_recall.device import DeviceCertificate
from e2e_recall.rotation import (
    DEFAULT_LIFETIME_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DEFAULT_ROTATE_EVERY_MS,
    issue_expiring_certificate,
    rotation_due,
    usable_until,
)
from e2e_recall.wrapping import WrapPrivateKey

from .core import Core
from .errors import RelayRefused, RelayUnreachable, UsageProblem
from .wrap_keys import (
    KeyRow,
    adopt_key,
    certificate_of,
    current_certificate,
    current_row,
    describe_keys,
    drop_keys,
    forget_keys,
    insert_key,
    key_rows,
    pending_row,
    private_keys,
)

__all__ = [
    "LIFETIME_ENV",
    "ROTATE_ENV",
    "KeyRow",
    "Rotation",
    "Schedule",
    "adopt_key",
    "current_certificate",
    "describe_keys",
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
def _make_pending(core: Core) -> KeyRow:
    """The pending key: the one a crash left, or a new one, committed before any upload."""
    store = core.store
    with store.transaction():
        found = pending_row(core)
        if found is not None:
            return found
        current = certificate_of(core, current_row(core).certificate)
        private = WrapPrivateKey.generate(current.wrap_key.suite)
        created_at = max(core.clock(), current.created_at + 1)
        insert_key(store, private, issue_certificate(core, private, created_at), "pending")
    found = pending_row(core)
    assert found is not None
    return found


def _promote(core: Core, pending: KeyRow) -> None:
    store = core.store
    new = certificate_of(core, pending.certificate)
    with store.transaction():
        rows = {r.key_id: r for r in key_rows(store)}
        found = rows.get(pending.key_id)
        if found is None or found.state != "pending":
            return  # another process of this profile promoted it already
        for row in rows.values():
            if row.state == "current":
                until = usable_until(certificate_of(core, row.certificate), new)
                store.execute(
                    "UPDATE wrap_keys SET state = 'previous', usable_until = ? WHERE key_id = ?",
                    (until, row.key_id),
                )
        store.execute("UPDATE wrap_keys SET state = 'current' WHERE key_id = ?", (pending.key_id,))


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
                drop_keys(core, [pending.key_id])  # refused for good: nothing was wrapped to it
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
    drop_keys(core, doomed)
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
        current = certificate_of(core, current_row(core).certificate)
        if pending_row(core) is not None or rotation_due(
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
