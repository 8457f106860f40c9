"""A profile's life with its relay: create, open, register, log in, stay logged in.

The session token is a credential, so it is kept sealed in the local store
and never printed.  The relay's signing key is pinned at registration: a
relay that later presents another key is refused (its purge receipts could
not be checked, and a login signed for one relay is useless to another).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import nacl.utils

from e2e_recall import (
    DeviceSecrets,
    SigningKey,
    VerifyKey,
    WrapPrivateKey,
    WrapSuite,
    verify_device_certificate,
)
from e2e_recall.auth import relay_fingerprint, sign_login, sign_registration
from e2e_recall.device_admin import sign_device_approval
from e2e_recall.errors import E2ERecallError
from e2e_recall.report import format_time

from . import rotation
from .core import Clock, Core, system_clock
from .errors import DeviceRevoked, KeystoreError, RelayKeyChanged, RelayRefused, UsageProblem
from .keystore import DEFAULT_STRENGTH, Keys, create_keystore, open_keystore, reseal_keystore
from .paths import Profile
from .store import LocalStore
from .transport import Transport, check_relay_url

__all__ = [
    "authed",
    "create_linked_profile",
    "create_profile",
    "ensure_session",
    "login",
    "open_profile",
    "register",
    "revoked",
]

SUITES = {"x25519": WrapSuite.X25519, "xwing": WrapSuite.XWING}


def create_profile(
    profile: Profile,
    passphrase: str,
    *,
    suite: str = "x25519",
    strength: str = DEFAULT_STRENGTH,
    clock: Clock = system_clock,
) -> Core:
    """A new identity and a first device, sealed under ``passphrase``."""
    if suite not in SUITES:
        raise UsageProblem(
            f"Unknown wrapping suite {suite!r}; choose x25519 or xwing.", "bad_suite"
        )
    return _create(profile, passphrase, SigningKey.generate(), SUITES[suite], strength, clock)


def create_linked_profile(
    profile: Profile,
    passphrase: str,
    identity: SigningKey,
    *,
    suite: str = "x25519",
    strength: str = DEFAULT_STRENGTH,
    clock: Clock = system_clock,
) -> Core:
    """Another device for an existing identity, made in-process (the demo and tests).

    People link a device with ``e2e-recall device link`` / ``join``
    (:mod:`client.linking`); this one must be registered with an approver.
    """
    return _create(profile, passphrase, identity, SUITES[suite], strength, clock)


def _create(
    profile: Profile,
    passphrase: str,
    identity: SigningKey,
    suite: WrapSuite,
    strength: str,
    clock: Clock,
) -> Core:
    if profile.exists():
        raise KeystoreError(
            f"A profile already exists at {profile.root}; use another --profile.",
            "profile_exists",
        )
    device = DeviceSecrets.generate(suite)
    # The real wrapping key goes to the local store (client/rotation.py); the keystore
    # keeps a placeholder that is never certified, so it never holds a key to delete.
    placeholder = replace(device, wrap_key=WrapPrivateKey.generate(suite))
    keys = Keys(identity, placeholder, b"", storage_key=_random_key(), wrap_keys_in_store=True)
    profile.ensure()
    store = LocalStore(profile.database, keys.storage_key)
    core = Core(profile, keys, store, clock)
    certificate = rotation.issue_certificate(core, device.wrap_key, clock())
    core.keys = replace(keys, certificate=certificate.signed)
    rotation.forget_keys(store)  # a crash of an earlier init may have left some
    rotation.adopt_key(store, device.wrap_key, certificate)
    create_keystore(profile.keystore, passphrase, core.keys, strength)
    return core


def _random_key() -> bytes:
    return bytes(nacl.utils.random(32))


def open_profile(profile: Profile, passphrase: str, *, clock: Clock = system_clock) -> Core:
    keys = open_keystore(profile.keystore, passphrase)
    store = LocalStore(profile.database, keys.storage_key)
    core = Core(profile, keys, store, clock)
    if not keys.wrap_keys_in_store:
        _move_wrap_key(core, passphrase)
    from .expiring import expire_due  # it imports receiving, which imports this module

    core.pending_updates.extend(expire_due(core))  # before any command shows anything
    return core


def _move_wrap_key(core: Core, passphrase: str) -> None:
    """A profile from before rotation: its wrapping key moves to the store, once.

    The store's row is committed first, then the keystore is replaced with
    one holding a placeholder; a crash between the two repeats the second
    step next time (the row is not added twice).
    """
    keys = core.keys
    certificate = verify_device_certificate(keys.certificate, keys.identity.public_key, now=None)
    rotation.adopt_key(core.store, keys.device.wrap_key, certificate)
    placeholder = replace(keys.device, wrap_key=WrapPrivateKey.generate(keys.device.wrap_key.suite))
    core.keys = replace(keys, device=placeholder, wrap_keys_in_store=True)
    reseal_keystore(core.profile.keystore, passphrase, core.keys)


async def _relay_key(transport: Transport) -> VerifyKey:
    info = await transport.call("GET", "/.well-known/e2e-recall", auth=False)
    try:
        return VerifyKey(info["relay_key"])
    except (KeyError, TypeError, E2ERecallError):
        raise RelayRefused(
            "The server does not publish a valid relay key.", "not_a_relay", 200, {}
        ) from None


async def register(
    core: Core,
    url: str,
    handle: str | None = None,
    approval: bytes | None = None,
    approver: DeviceSecrets | None = None,
) -> None:
    """Register this device (and, the first time, the identity) with the relay at ``url``.

    A linked device passes the ``approval`` its linking device signed
    (docs/protocol.md section 17.4); a device made in-process from an identity
    (the demo, tests) passes the ``approver``'s secrets to sign one here.
    """
    url = check_relay_url(url)
    known = core.store.get_meta("relay_url")
    if known is not None and known.decode() != url:
        raise UsageProblem(
            f"This profile is registered with {known.decode()}; use another --profile "
            "for another relay.",
            "other_relay",
        )
    transport = core.transport = Transport(url)
    relay_key = await _relay_key(transport)
    challenge = (await transport.call("POST", "/v1/challenge", auth=False))["challenge"]
    identity_signature, device_signature = sign_registration(
        core.keys.identity,
        core.keys.device.signing_key,
        relay=relay_fingerprint(relay_key),
        challenge=challenge,
        certificate=rotation.current_certificate(core),
    )
    if approval is None and approver is not None:
        approval = sign_device_approval(
            approver.signing_key,
            relay=relay_fingerprint(relay_key),
            approver=approver.device_id,
            certificate=core.keys.certificate,
        )
    body: dict[str, Any] = {
        "identity_key": core.keys.identity.public_key.raw,
        "certificate": rotation.current_certificate(core),
        "challenge": challenge,
        "identity_signature": identity_signature,
        "device_signature": device_signature,
        "handle": handle,
        "approval": approval,
    }
    try:
        await transport.call("POST", "/v1/register", body, auth=False)
    except RelayRefused as exc:
        if exc.code != "device_exists":  # registering again is harmless
            raise
    with core.store.transaction():
        core.store.set_meta("relay_url", url.encode())
        core.store.set_meta("relay_key", relay_key.raw)
        core.store.set_meta("handle", handle.encode() if handle else None)
    await login(core)


async def login(core: Core) -> None:
    """Challenge-response login with the device key; the token is kept sealed."""
    transport = core.relay
    relay_key = await _relay_key(transport)
    if relay_key != core.relay_key:
        raise RelayKeyChanged(
            f"The relay at {transport.url} presents a different key from the one pinned at "
            "registration; refusing to talk to it.",
            "relay_key_changed",
        )
    challenge = (await transport.call("POST", "/v1/challenge", auth=False))["challenge"]
    signature = sign_login(
        core.keys.device.signing_key,
        relay=relay_fingerprint(relay_key),
        device_id=core.device_id,
        challenge=challenge,
    )
    try:
        answer = await transport.call(
            "POST",
            "/v1/login",
            {"device_id": core.device_id, "challenge": challenge, "signature": signature},
            auth=False,
        )
    except RelayRefused as exc:
        if exc.code == "device_revoked":
            raise revoked(exc.data.get("revoked_at")) from None
        raise
    transport.token = answer["token"]
    with core.store.transaction():
        core.store.set_meta("token", core.store.seal(answer["token"].encode()))
        core.store.set_int("token_expires_at", answer["expires_at"])


def revoked(at: object) -> DeviceRevoked:
    """The error for a device the relay says was revoked (at ``at``, if it says when)."""
    when = f" on {format_time(at)}" if isinstance(at, int) else ""
    return DeviceRevoked(
        f"This device was revoked{when} by another of your devices; it can no longer send "
        "or receive. To use this computer again, link it as a new device: 'e2e-recall "
        "device join CODE URL' with a new --profile.",
        "device_revoked",
    )


async def ensure_session(core: Core) -> None:
    """Use the stored token while it lasts (with a minute to spare); log in otherwise."""
    transport = core.relay
    if not transport.token:
        sealed = core.store.get_meta("token")
        if sealed is not None and core.store.get_int("token_expires_at") > core.clock() + 60_000:
            transport.token = core.store.unseal(sealed).decode()
        else:
            await login(core)
    await rotation.maybe_rotate(core)  # first, if the wrapping key is due (cheap otherwise)


async def authed(
    core: Core, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An authenticated call; a token the relay no longer accepts is renewed once."""
    await ensure_session(core)
    try:
        return await core.relay.call(method, path, body)
    except RelayRefused as exc:
        if exc.status != 401:
            raise
    core.relay.token = None
    await login(core)
    return await core.relay.call(method, path, body)
