"""``Client``: the one class a program uses to talk through an e2e-recall relay.

It owns a profile (keystore and local store) and a connection to the relay,
and offers the whole life of a message: register, contacts, send, receive,
open, recall (with or without a replacement), deletion receipts, and the
report; groups (:class:`client.client_groups.GroupsMixin`) and this user's
devices and keys (:class:`client.client_devices.DevicesMixin`) come from
the two mixins it is made of.  :meth:`Client.watch` keeps a WebSocket open
(:mod:`client.live`), so nothing is missed, and :meth:`Client.follow_report`
follows one report through its updates.

Every method calls into the modules that do the work, which the CLI
commands call through this class as well, so a program and the command line
take the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from e2e_recall import SigningKey, format_fingerprint

from . import account, attachments, contacts, expiring, linking, live, recalling, receiving, sending
from .attachments import ReceivedFile
from .client_devices import DevicesMixin
from .client_groups import GroupsMixin
from .core import Clock, Core, system_clock
from .errors import NotFound, UsageProblem
from .expiring import Timer
from .group_people import display_name
from .group_store import by_conversation
from .groups import group_named
from .keystore import DEFAULT_STRENGTH
from .paths import Profile, default_downloads_dir
from .recalling import RecallOutcome
from .receiving import Update
from .reporting import ReportView, fetch_report
from .sending import DEFAULT_OPENED_WINDOW, DEFAULT_SEALED_WINDOW, SendOutcome
from .store import Contact, StoredMessage

__all__ = ["Client", "Entry"]


@dataclass(frozen=True)
class Entry:
    """A message as a listing shows it: never the text unless it was opened."""

    message_id: bytes
    peer: str
    outgoing: bool
    sent_at: int
    state: str
    text: str | None
    replaced_by: bytes | None
    replaces: bytes | None
    problem: str | None
    files: tuple[ReceivedFile, ...] = ()  # names and sizes; where saved, once saved
    group: str | None = None  # the group's local name, for a message in a group
    expires_at: int | None = None  # when this copy is deleted here (None: no timer, or unopened)


class Client(GroupsMixin, DevicesMixin):
    """One profile, one device, one relay; see the module docstring."""

    def __init__(self, core: Core) -> None:
        self.core = core

    # profile --------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: Path,
        passphrase: str,
        *,
        suite: str = "x25519",
        strength: str = DEFAULT_STRENGTH,
        clock: Clock = system_clock,
        identity: SigningKey | None = None,
    ) -> Client:
        """A new profile; with ``identity``, a further device of an existing identity."""
        profile = Profile(root)
        if identity is None:
            core = account.create_profile(
                profile, passphrase, suite=suite, strength=strength, clock=clock
            )
        else:
            core = account.create_linked_profile(
                profile, passphrase, identity, suite=suite, strength=strength, clock=clock
            )
        return cls(core)

    @classmethod
    def open(cls, root: Path, passphrase: str, *, clock: Clock = system_clock) -> Client:
        return cls(account.open_profile(Profile(root), passphrase, clock=clock))

    @classmethod
    async def join(
        cls,
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
    ) -> tuple[Client, list[str]]:
        """A new profile at ``root`` that becomes a device of the identity showing ``code``.

        Waits until the other device (:meth:`link_device`) answers, then
        registers; ``on_sent`` is told this device's id once the request is at
        the relay, for the person to compare.  Returns the client and the
        problems met fetching groups (sentences; the link stands).  History is
        not copied; :meth:`sync` next to fetch what waits.
        """
        core, problems = await linking.join(
            root,
            passphrase,
            code,
            url,
            suite=suite,
            strength=strength,
            timeout_ms=timeout_ms,
            device_name=device_name,
            clock=clock,
            on_sent=on_sent,
        )
        return cls(core), problems

    async def close(self) -> None:
        await self.core.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def user_id(self) -> bytes:
        return self.core.user_id

    @property
    def device_id(self) -> bytes:
        return self.core.device_id

    def whoami(self) -> dict[str, Any]:
        store = self.core.store
        url, handle = store.get_meta("relay_url"), store.get_meta("handle")
        return {
            "user_id": self.user_id.hex(),
            "fingerprint": format_fingerprint(self.user_id),
            "device_id": self.device_id.hex(),
            "wrap_suite": self.core.keys.device.wrap_key.suite.name.lower(),
            "handle": handle.decode() if handle else None,
            "relay": url.decode() if url else None,
            "profile": str(self.core.profile.root),
        }

    async def register(
        self, url: str, handle: str | None = None, *, approver: Client | None = None
    ) -> None:
        """Register; a further device made in-process is approved by ``approver``."""
        secrets = approver.core.keys.device if approver is not None else None
        await account.register(self.core, url, handle, approver=secrets)

    # contacts -------------------------------------------------------------------------------------
    async def add_contact(self, name: str, who: str) -> Contact:
        return await contacts.add_contact(self.core, name, who)

    def contacts(self) -> list[Contact]:
        return self.core.store.contacts()

    def contact(self, name: str) -> Contact:
        return contacts.contact(self.core, name)

    def safety_number(self, name: str) -> str:
        return contacts.safety_number_with(self.core, self.contact(name))

    def mark_verified(self, name: str) -> Contact:
        return contacts.mark_verified(self.core, name)

    def accept_key(self, name: str) -> Contact:
        return contacts.accept_key(self.core, name)

    def remove_contact(self, name: str) -> None:
        contacts.remove_contact(self.core, name)

    # messages -------------------------------------------------------------------------------------
    async def send(
        self,
        name: str,
        text: str,
        *,
        sealed_window: int = DEFAULT_SEALED_WINDOW,
        opened_window: int = DEFAULT_OPENED_WINDOW,
        files: Sequence[Path] = (),
        timer: Timer | Literal["default"] | None = "default",
    ) -> SendOutcome:
        """Send ``text`` and ``files`` (encrypted here, uploaded before the message).

        ``name`` is a contact or a group (:mod:`client.groups`).  ``timer`` makes
        it disappear (:mod:`client.expiring`); ``"default"`` takes the
        conversation's own (``expire NAME``), None sends it without one.
        """
        if group_named(self.core, name) is not None:
            if self.core.store.contact_by_name(name) is not None:
                raise UsageProblem(
                    f"{name!r} names both a contact and a group; rename the group first "
                    f"('e2e-recall group rename {name} NEW').",
                    "ambiguous",
                )
            return await self.send_to_group(
                name,
                text,
                sealed_window=sealed_window,
                opened_window=opened_window,
                files=files,
                timer=timer,
            )
        await live.flush_quietly(self.core)
        if timer == "default":
            timer = expiring.conversation_timer(self.core, self.conversation_id(name))
        return await sending.send_text(
            self.core,
            name,
            text,
            sealed_window=sealed_window,
            opened_window=opened_window,
            files=files,
            timer=timer,
        )

    def conversation_id(self, name: str) -> bytes:
        """The conversation a name stands for: a contact's (first), else a group's."""
        if self.core.store.contact_by_name(name) is None:
            group = group_named(self.core, name)
            if group is not None:
                return group.conversation_id
        return self.core.conversation_with(self.contact(name).user_id)

    def conversation_timer(self, name: str) -> Timer | None:
        return expiring.conversation_timer(self.core, self.conversation_id(name))

    def set_conversation_timer(self, name: str, timer: Timer | None) -> None:
        expiring.set_conversation_timer(self.core, self.conversation_id(name), timer)

    def expire_due(self) -> list[Update]:
        """Delete every copy here whose timer has run out (no network)."""
        return expiring.expire_due(self.core)

    async def open_message(self, message_id: bytes, downloads: Path | None = None) -> Entry:
        """Open a message and save its files in ``downloads`` (default: the platform's).

        Opening again after a failed download carries on where it stopped.
        """
        row = await receiving.open_message(self.core, message_id)
        if self.core.store.files(message_id):
            await attachments.save_files(
                self.core, message_id, downloads or default_downloads_dir(), self.core.progress
            )
        return self.entry(row)

    async def recall(self, message_id: bytes, replacement: str | None = None) -> RecallOutcome:
        """Recall a message sent from here (a group message from every member at once).

        With ``replacement``, the correction goes out in the same request, so no
        recipient sees neither.  Refusals raise :class:`RecallNotAccepted`.
        """
        return await recalling.recall(self.core, message_id, replacement)

    def delete_for_me(self, message_id: bytes) -> None:
        receiving.delete_for_me(self.core, message_id)

    async def report(self, message_id: bytes, *, refresh: bool = True) -> ReportView:
        """The checked report; ``refresh`` asks the relay, otherwise the last one pushed.

        Works alike for a group message: a line per member device
        (:meth:`ReportView.by_person` groups them per member).
        """
        return await fetch_report(self.core, message_id, refresh=refresh)

    async def follow_report(
        self,
        message_id: bytes,
        stop: asyncio.Event | None = None,
        *,
        since: ReportView | None = None,
    ) -> AsyncGenerator[ReportView | Update, None]:
        """Each new version of a report, until it is settled or ``stop`` is set.

        ``since`` is the report the caller already shows (fetched now if not
        given).  On every pushed change the relay is asked again rather than
        the pushed snapshot trusted: events queued while nothing ran describe
        the past and must not be shown as news.  The ``disconnected`` and
        ``displaced`` updates of :meth:`watch` are passed on; after
        ``displaced`` it ends.
        """
        shown = since if since is not None else await self.report(message_id)
        if shown.settled:
            return
        async with contextlib.aclosing(self.watch(stop)) as updates:
            async for update in updates:
                if update.kind in ("disconnected", "displaced"):
                    yield update
                if update.kind != "report" or update.message_id != message_id:
                    continue
                view = await self.report(message_id)
                if view == shown:
                    continue
                shown = view
                yield view
                if view.settled:
                    return

    # listings -------------------------------------------------------------------------------------
    def find(self, short_id: str) -> StoredMessage:
        """A message by the hex prefix people type (at least 4 digits, unique)."""
        text = short_id.strip().lower()
        if len(text) < 4 or any(c not in "0123456789abcdef" for c in text) or len(text) > 32:
            raise UsageProblem(
                f"{short_id!r} is not a message id (4 to 32 hex digits).", "bad_message_id"
            )
        found = self.core.store.messages_matching(text)
        if not found:
            raise NotFound(f"No message with an id starting {text}.", "no_message")
        if len(found) > 1:
            raise UsageProblem(f"{text} matches several messages; type more digits.", "ambiguous")
        return found[0]

    def entry(self, row: StoredMessage) -> Entry:
        group = by_conversation(self.core.store, row.conversation_id)
        if group is not None:
            name = group.name if row.outgoing else display_name(self.core, row.peer)
        else:
            peer = self.core.store.contact_by_user(row.peer)
            name = peer.name if peer else row.peer.hex()[:8]
        text = self.core.store.unseal(row.body).decode("utf-8") if row.body is not None else None
        return Entry(
            message_id=row.message_id,
            peer=name,
            outgoing=bool(row.outgoing),
            sent_at=row.sent_at,
            state=row.state,
            text=text,
            replaced_by=row.replaced_by,
            replaces=row.replaces,
            problem=row.problem,
            files=tuple(attachments.read_files(self.core, row.message_id)),
            group=group.name if group else None,
            expires_at=row.expires_at,
        )

    def inbox(self) -> list[Entry]:
        """Received messages still sealed: sender and time only, never a preview."""
        return [self.entry(row) for row in self.core.store.incoming_in_state("sealed")]

    def history(self, name: str) -> list[Entry]:
        """The conversation with a contact, or a group's (when no contact has that name)."""
        group = group_named(self.core, name)
        if group is not None and self.core.store.contact_by_name(name) is None:
            rows = self.core.store.in_conversation(group.conversation_id)
        else:
            who = self.contact(name)
            direct = self.core.conversation_with(who.user_id)
            rows = [
                r for r in self.core.store.conversation(who.user_id) if r.conversation_id == direct
            ]
        return [self.entry(row) for row in rows if row.state != "deleted"]

    def outbox_size(self) -> int:
        return len(self.core.store.outbox())

    # events -------------------------------------------------------------------------------------
    async def sync(self) -> list[Update]:
        """Send what waits in the outbox, then fetch and apply every queued event."""
        return await live.sync(self.core)

    def watch(self, stop: asyncio.Event | None = None) -> AsyncGenerator[Update, None]:
        """Live updates over the WebSocket, reconnecting with backoff until ``stop`` is set.

        Connection changes come as updates too: ``connected``, ``caught_up``,
        ``disconnected`` (it reconnects) and, last, ``displaced`` when another
        session of this device took over the connection (it does not).
        """
        return live.watch(self.core, stop)
