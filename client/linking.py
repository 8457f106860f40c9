"""Linking a new device to this identity, from both ends (docs/protocol.md section 17).

The old device (:class:`LinkOffer`) opens a slot at its relay named by a
one-time code's ``link_id``, waits for the sealed request, certifies the
keys in it with the identity and answers with everything the new device
needs: the identity key, the certificate, an approval for the relay, the
contacts (pinned keys and verification flags), the group ids and the name
this device shows for each.  The new device (:func:`join`) sends the
request, waits for the answer, checks it certifies exactly its own keys,
and only then creates its profile, registers with the approval and fetches
each group's chain, verifying it as any member does; each group takes the
old device's name (the chain, not the name, says who is in it).  History
is not copied.

The code's secret is kept only as long as the exchange lasts (Python cannot
wipe memory; the objects holding it are dropped as soon as the keys are
derived).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import nacl.utils

from e2e_recall import DeviceSecrets, WrapPrivateKey
from e2e_recall.auth import relay_fingerprint
from e2e_recall.device_admin import sign_device_approval
from e2e_recall.errors import BadCode, E2ERecallError
from e2e_recall.link_code import LinkKeys, format_code, link_keys, new_link_secret, parse_code
from e2e_recall.linking import (
    LinkAnswer,
    LinkContact,
    LinkRequest,
    open_link_answer,
    open_link_request,
    seal_link_answer,
    seal_link_request,
)
from e2e_recall.rotation import issue_expiring_certificate

from . import account
from .core import Clock, Core, system_clock
from .errors import ClientError, KeystoreError, RelayRefused, UsageProblem
from .group_store import list_groups
from .groups import refresh_group
from .keystore import DEFAULT_STRENGTH, Keys, create_keystore
from .paths import Profile
from .rotation import schedule
from .store import Contact, LocalStore
from .transport import Transport, check_relay_url
from .wrap_keys import adopt_key, forget_keys

__all__ = ["LinkFailed", "LinkOffer", "join", "short_device"]

POLL_SECONDS = 0.5


class LinkFailed(ClientError):
    """The link could not be completed (expired, used, refused, or it timed out)."""


def short_device(device_id: bytes) -> str:
    """How a device is named to people: its first 8 hex digits."""
    return device_id.hex()[:8]


def _contacts(core: Core) -> list[LinkContact]:
    return [
        LinkContact(c.name, c.user_id, c.identity_key, c.verified_at is not None)
        for c in core.store.contacts()
        if c.changed_key is None  # a contact whose key changed is re-verified on each device
    ]


@dataclass
class LinkOffer:
    """The old device's side of one link."""

    core: Core
    keys: LinkKeys
    code: str
    expires_at: int

    @classmethod
    async def open(cls, core: Core, timeout_ms: int) -> LinkOffer:
        secret = new_link_secret()
        keys, code = link_keys(secret), format_code(secret)
        del secret
        expires_at = core.clock() + timeout_ms
        await account.authed(
            core, "POST", "/v1/links", {"link_id": keys.link_id, "expires_at": expires_at}
        )
        return cls(core, keys, code, expires_at)

    @property
    def path(self) -> str:
        return f"/v1/links/{self.keys.link_id.hex()}"

    async def poll_request(self) -> LinkRequest | None:
        """The new device's request once it is there (checked), else None."""
        try:
            answer = await account.authed(self.core, "GET", self.path)
        except RelayRefused as exc:
            if exc.status == 404:
                raise LinkFailed(
                    "The link expired before a new device used the code.", "link_expired"
                ) from None
            raise
        sealed = answer.get("request")
        if not isinstance(sealed, bytes):
            return None
        try:
            return open_link_request(sealed, link_id=self.keys.link_id, link_key=self.keys.link_key)
        except E2ERecallError as exc:
            raise LinkFailed(
                f"The request at the relay did not open with this code ({exc.sentence}); "
                "nothing was sent.",
                "bad_request",
            ) from None

    async def answer(self, request: LinkRequest) -> None:
        """Certify the requester and send it the identity, contacts and groups."""
        core = self.core
        # like every certificate a client issues, it expires by this profile's schedule;
        # the new device rotates on from there by its own (client/rotation.py)
        certificate = issue_expiring_certificate(
            core.keys.identity,
            request.device_id,
            request.signing_key,
            request.wrap_key,
            created_at=core.clock(),
            lifetime=schedule(core).lifetime,
        ).signed
        approval = sign_device_approval(
            core.keys.device.signing_key,
            relay=relay_fingerprint(core.relay_key),
            approver=core.device_id,
            certificate=certificate,
        )
        handle = core.store.get_meta("handle")
        groups = [g for g in list_groups(core.store) if g.member]
        sealed = seal_link_answer(
            link_id=self.keys.link_id,
            link_key=self.keys.link_key,
            identity=core.keys.identity,
            certificate=certificate,
            approval=approval,
            relay_url=core.relay.url,
            handle=handle.decode() if handle else None,
            contacts=_contacts(core),
            groups=[g.group_id for g in groups],
            group_names={g.group_id: g.name for g in groups},
        )
        await account.authed(core, "PUT", f"{self.path}/answer", {"sealed": sealed})

    async def registered(self, device_id: bytes, until_ms: int) -> bool:
        """Wait (until ``until_ms``) for the new device to appear among this user's devices."""
        while self.core.clock() < until_ms:
            listed = await account.authed(self.core, "GET", "/v1/devices")
            if any(d.get("device_id") == device_id for d in listed.get("devices") or ()):
                return True
            await asyncio.sleep(POLL_SECONDS)
        return False


def parse_user_code(text: str) -> bytes:
    try:
        return parse_code(text)
    except BadCode:
        raise UsageProblem(
            "That is not a valid link code: it has 28 letters and digits (the dashes are "
            "optional). Check it for a typo and type it again.",
            "bad_code",
        ) from None


async def _exchange(
    url: str,
    secret: bytes,
    device: DeviceSecrets,
    name: str | None,
    timeout_ms: int,
    clock: Clock,
    on_sent: Callable[[bytes], None],
) -> LinkAnswer:
    keys = link_keys(secret)
    request = seal_link_request(
        link_id=keys.link_id,
        link_key=keys.link_key,
        device_id=device.device_id,
        signing_key=device.signing_key,
        wrap_key=device.wrap_key.public_key,
        device_name=name,
    )
    path = f"/v1/links/{keys.link_id.hex()}"
    async with Transport(url) as transport:
        try:
            await transport.call("PUT", f"{path}/request", {"sealed": request}, auth=False)
        except RelayRefused as exc:
            if exc.status == 404:
                raise LinkFailed(
                    "The relay knows no link for this code: it expired, was already used, "
                    "or the code or relay URL is wrong. Run 'e2e-recall device link' again.",
                    "unknown_link",
                ) from None
            if exc.code == "link_used":
                raise LinkFailed(
                    "This code was already used by another device; run 'e2e-recall device "
                    "link' again for a new one.",
                    "link_used",
                ) from None
            raise
        on_sent(device.device_id)
        deadline = clock() + timeout_ms
        while clock() < deadline:
            try:
                answer = await transport.call("GET", f"{path}/answer", auth=False)
            except RelayRefused as exc:
                if exc.status == 404:
                    raise LinkFailed(
                        "The link expired or was cancelled before the other device answered.",
                        "link_expired",
                    ) from None
                raise
            sealed = answer.get("answer")
            if isinstance(sealed, bytes):
                expected = LinkRequest(
                    device.device_id,
                    device.signing_key.public_key,
                    device.wrap_key.public_key,
                    name,
                )
                try:
                    return open_link_answer(
                        sealed,
                        link_id=keys.link_id,
                        link_key=keys.link_key,
                        expected=expected,
                        now=clock(),
                    )
                except E2ERecallError as exc:
                    raise LinkFailed(
                        f"The answer did not check out ({exc.sentence}); nothing was kept.",
                        "bad_answer",
                    ) from None
            await asyncio.sleep(POLL_SECONDS)
    raise LinkFailed("No answer from your other device in time; nothing was kept.", "timeout")


def _remove_profile(profile: Profile, whole: bool) -> None:
    """Undo a join that could not register: the files it made (the directory if it made it)."""
    if whole:
        shutil.rmtree(profile.root, ignore_errors=True)
        return
    for path in (profile.keystore, profile.database):
        for leftover in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)


def _save_contacts(core: Core, contacts: tuple[LinkContact, ...]) -> None:
    now = core.clock()
    with core.store.transaction():
        for c in contacts:
            core.store.save_contact(
                Contact(
                    name=c.name,
                    user_id=c.user_id,
                    identity_key=c.identity_key,
                    handle=None,
                    added_at=now,
                    verified_at=now if c.verified else None,
                )
            )


async def join(
    root: Path,
    passphrase: str,
    code: str,
    url: str,
    *,
    suite: str = "x25519",
    strength: str = DEFAULT_STRENGTH,
    timeout_ms: int = 10 * 60 * 1000,
    device_name: str | None = None,
    clock: Clock = system_clock,
    on_sent: Callable[[bytes], None] = lambda device_id: None,
) -> tuple[Core, list[str]]:
    """Make this profile a new device of the identity whose device shows ``code``.

    ``on_sent`` is told this device's id once the request is at the relay
    (for the person to compare with what the other device shows).  Returns the
    core (registered and logged in) and the problems met while fetching
    groups (each a sentence; the rest of the link stands).
    """
    secret = parse_user_code(code)
    url = check_relay_url(url)
    profile = Profile(root)
    if profile.exists():
        raise KeystoreError(
            f"A profile already exists at {root}; join with a new --profile.", "profile_exists"
        )
    if suite not in account.SUITES:
        raise UsageProblem(
            f"Unknown wrapping suite {suite!r}; choose x25519 or xwing.", "bad_suite"
        )
    device = DeviceSecrets.generate(account.SUITES[suite])
    answer = await _exchange(url, secret, device, device_name, timeout_ms, clock, on_sent)
    del secret
    # As at init (client/account.py): the wrapping key lives in the local store, where
    # rotation can delete it; the keystore keeps a placeholder that is never certified.
    placeholder = replace(device, wrap_key=WrapPrivateKey.generate(device.wrap_key.suite))
    keys = Keys(
        answer.identity,
        placeholder,
        answer.certificate.signed,
        bytes(nacl.utils.random(32)),
        wrap_keys_in_store=True,
    )
    fresh_root = not root.exists()
    profile.ensure()
    try:
        store = LocalStore(profile.database, keys.storage_key)
        forget_keys(store)
        adopt_key(store, device.wrap_key, answer.certificate)
        create_keystore(profile.keystore, passphrase, keys, strength)
        core = Core(profile, keys, store, clock)
        _save_contacts(core, answer.contacts)
        try:
            await account.register(core, answer.relay_url, answer.handle, approval=answer.approval)
        except BaseException:
            core.close_store()
            raise
    except BaseException:
        # The answer was used up: a profile that cannot register is of no use. Nothing
        # half-made is left behind, and the person links again.
        _remove_profile(profile, fresh_root)
        raise
    problems = []
    for group_id, name in answer.named_groups():
        try:
            await refresh_group(core, group_id, name=name)  # named as the old device shows it
        except ClientError as exc:
            problems.append(f"group {group_id.hex()[:8]}: {exc.sentence}")
    return core, problems
