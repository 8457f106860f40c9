"""Groups: making membership changes, and believing only the ones that verify.

A group is its chain of signed changes (:mod:`e2e_recall.group`).  This
device makes a change by signing the next link as its user, checking it
against the rules on the state it verified (so a change the rules refuse is
never sent), and posting it; the relay stores the chain and tells every
member.  What the relay says is never taken on its word: a ``group`` event's
change is verified against its signer's identity key and applied by the same
rules, and when this device is behind (or new to the group) it fetches the
whole chain and replays it from the create.  A chain that does not verify,
or that does not extend the one this device already verified, is dropped
with an update saying so, and the stored state stays as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from e2e_recall import (
    GroupAction,
    GroupChange,
    GroupState,
    peek_group_change_signer,
    replay_group,
    sign_group_change,
    verify_group_change,
)
from e2e_recall.errors import E2ERecallError, GroupChangeRefused

from .account import authed
from .contacts import check_not_changed, contact
from .core import Core
from .errors import (
    GroupChainInvalid,
    GroupRefused,
    NotFound,
    RelayRefused,
    RelayUnreachable,
    UsageProblem,
)
from .group_people import display_name, known_key, learn_people
from .group_store import (
    GROUP_NAME,
    StoredGroup,
    by_id,
    by_name,
    list_groups,
    save_group,
)
from .receiving import Update  # receiving imports this module only when an event comes

__all__ = [
    "add_members",
    "create_group",
    "find_group",
    "group_named",
    "leave_group",
    "on_group_event",
    "refresh_group",
    "remove_members",
    "rename_group",
    "state_of",
]


def state_of(group: StoredGroup) -> GroupState:
    """The verified state kept for ``group``."""
    return GroupState(
        group_id=group.group_id,
        seq=group.seq,
        head=group.head,
        members=frozenset(group.member_ids()),
        admins=frozenset(group.admin_ids()),
        conversation_id=group.conversation_id,
    )


def group_named(core: Core, name: str) -> StoredGroup | None:
    return by_name(core.store, name)


def find_group(core: Core, name: str) -> StoredGroup:
    found = by_name(core.store, name)
    if found is None:
        raise NotFound(f"No group named {name!r}; see 'e2e-recall group list'.", "no_group")
    return found


def _check_new_name(core: Core, name: str) -> None:
    if not GROUP_NAME.fullmatch(name):
        raise UsageProblem(
            f"{name!r} is not a usable group name: 1 to 32 letters, digits, '.', '_' or '-'.",
            "bad_name",
        )
    if by_name(core.store, name) is not None:
        raise UsageProblem(f"There is already a group named {name!r}.", "name_taken")
    if core.store.contact_by_name(name) is not None:
        raise UsageProblem(
            f"{name!r} is the name of a contact; choose another name for the group.", "name_taken"
        )


def _auto_name(core: Core, group_id: bytes) -> str:
    base = name = group_id.hex()[:8]
    suffix = 2
    while by_name(core.store, name) is not None or core.store.contact_by_name(name) is not None:
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name


# verifying what the relay says -----------------------------------------------------------------
async def _replay(core: Core, group_id: bytes, changes: Sequence[bytes]) -> GroupState:
    """Verify a whole chain from its create; every signer's key looked up by user id."""
    try:
        signers = {peek_group_change_signer(signed) for signed in changes}
    except E2ERecallError:
        raise GroupChainInvalid(
            "The relay sent a group change that could not be read; it was not applied.",
            "bad_group_change",
        ) from None
    await learn_people(core, signers)
    try:
        return replay_group(list(changes), lambda user: known_key(core, user), group_id=group_id)
    except E2ERecallError as exc:
        raise GroupChainInvalid(
            f"The group's chain of changes does not verify ({exc.sentence.rstrip('.')}); "
            "nothing of it was applied.",
            "group_chain_invalid",
        ) from None


async def _fetch_chain(core: Core, group_id: bytes) -> list[bytes]:
    answer = await authed(core, "GET", f"/v1/groups/{group_id.hex()}")
    changes = answer.get("changes")
    if (
        answer.get("group_id") != group_id
        or not isinstance(changes, list)
        or not all(type(c) is bytes for c in changes)
    ):
        raise GroupChainInvalid("The relay's answer about a group is malformed.", "bad_answer")
    return changes


async def _learn_members(core: Core, state: GroupState) -> None:
    """Fetch the members' keys and handles for showing them; a failure only costs names."""
    with contextlib.suppress(RelayUnreachable, RelayRefused, NotFound):
        await learn_people(core, state.members)


def _store(
    core: Core, state: GroupState, chain: list[bytes], old: StoredGroup | None, name: str | None
) -> StoredGroup:
    stored = StoredGroup.of(
        state,
        chain,
        name=old.name if old else (name or _auto_name(core, state.group_id)),
        me=core.user_id,
        named=bool(old.named) if old else name is not None,
        now=core.clock(),
    )
    with core.store.transaction():
        save_group(core.store, stored)
    return stored


async def refresh_group(core: Core, group_id: bytes, name: str | None = None) -> StoredGroup:
    """Fetch the group's chain, verify it whole, and keep it if it extends ours.

    ``name`` is a name another of our devices gave the group (a link
    answer's): a group new here takes it when it is a valid name that no
    group or contact here has, else a name made from its id.  The chain alone
    decides who the members are.
    """
    old = by_id(core.store, group_id)
    chain = await _fetch_chain(core, group_id)
    known = old.changes() if old else []
    if chain[: len(known)] != known:
        raise GroupChainInvalid(
            "The relay's chain for this group does not extend the one this device verified "
            "(a change was altered or dropped); it was not applied.",
            "group_chain_forked",
        )
    if old is not None and len(chain) == len(known):
        return old
    state = await _replay(core, group_id, chain)
    await _learn_members(core, state)
    return _store(core, state, chain, old, _free_name(core, name))


def _free_name(core: Core, name: str | None) -> str | None:
    """``name`` if it may name a new group here: valid, and no group's or contact's."""
    if name is None or not GROUP_NAME.fullmatch(name):
        return None
    if by_name(core.store, name) is not None or core.store.contact_by_name(name) is not None:
        return None
    return name


async def _verified_next(
    core: Core, old: StoredGroup, signed: bytes
) -> tuple[GroupState, GroupChange]:
    """One change after ``old``: its signer's key, its signature, then the rules."""
    signer = peek_group_change_signer(signed)
    await learn_people(core, [signer])
    key = known_key(core, signer)
    if key is None:
        raise GroupChainInvalid("The change is signed by an unknown user.", "unknown_signer")
    change = verify_group_change(signed, key)
    return state_of(old).apply(change), change


def _describe(core: Core, change: GroupChange, group: str) -> str:
    by = display_name(core, change.by)
    by = "You" if by == "you" else by
    names = ", ".join(display_name(core, m) for m in change.members if m != change.by) or "no one"
    if change.action is GroupAction.LEAVE:
        return f"{by} left {group}."
    if change.action is GroupAction.PROMOTE:
        return f"{by} made {names} admin of {group}."
    if change.action is GroupAction.REMOVE:
        if core.user_id in change.members:
            return f"{by} removed you from {group}; you will get none of its later messages."
        return f"{by} removed {names} from {group}."
    return f"{by} added {names} to {group}."


async def on_group_event(core: Core, event: dict[str, Any]) -> Update | None:
    """A ``group`` event: verify the change it carries (or the whole chain) before applying."""
    group_id, signed = event.get("group_id"), event.get("change")
    if type(group_id) is not bytes or len(group_id) != 16 or type(signed) is not bytes:
        return None
    old = by_id(core.store, group_id)
    label = old.name if old else group_id.hex()[:8]
    try:
        if old is not None:
            known = old.changes()
            if signed in known:
                return None  # a change this device already verified (often its own)
            seq = event.get("seq")
            if seq == old.seq + 1:
                state, change = await _verified_next(core, old, signed)
                await _learn_members(core, state)
                group = _store(core, state, [*known, signed], old, None)
                return Update("group", group_id, group.name, _describe(core, change, group.name))
        group = await refresh_group(core, group_id)
    except RelayUnreachable:
        raise
    except (E2ERecallError, GroupChainInvalid) as exc:
        reason = exc.sentence.rstrip(".")
        return Update(
            "dropped",
            group_id,
            label,
            f"A change to group {label} that does not verify was ignored ({reason}); "
            "the group is as it was.",
        )
    except RelayRefused as exc:
        return Update(
            "dropped", group_id, label, f"A group change could not be checked: {exc.sentence}"
        )
    if old is None:
        signer = _last_signer(group)
        if signer == core.user_id:
            detail = (
                f"A group you are in, changed from another of your devices, is called "
                f"{group.name} here until you rename it ('e2e-recall group rename {group.name} "
                "NEW')."
            )
            return Update("group", group_id, group.name, detail)
        creator = display_name(core, signer)
        if not group.member:
            detail = (
                f"You were added to a group and are no longer in it (the last change was by "
                f"{creator}); it is called {group.name} here, and you will get none of its "
                "later messages."
            )
            return Update("group", group_id, group.name, detail)
        return Update(
            "group",
            group_id,
            group.name,
            f"{creator} added you to a group of {len(group.member_ids())}; it is called "
            f"{group.name} here until you rename it ('e2e-recall group rename {group.name} "
            "NEW').",
        )
    if group.seq == old.seq:
        return Update(
            "dropped",
            group_id,
            label,
            f"A change to group {label} that is not part of its chain was ignored; the group "
            "is as it was.",
        )
    if not group.member:
        return Update("group", group_id, group.name, f"You are no longer a member of {group.name}.")
    return Update(
        "group",
        group_id,
        group.name,
        f"Group {group.name} changed; it has {len(group.member_ids())} members now.",
    )


def _last_signer(group: StoredGroup) -> bytes:
    """Who signed the newest change of a chain already verified (the one that added us)."""
    return peek_group_change_signer(group.changes()[-1])


# making changes ---------------------------------------------------------------------------------
def _user_ids_of_contacts(core: Core, names: Sequence[str]) -> list[bytes]:
    found = []
    for name in names:
        who = contact(core, name)
        check_not_changed(who)
        if who.user_id in found:
            raise UsageProblem(f"{name} is named twice.", "duplicate_member")
        found.append(who.user_id)
    return found


def _member_ref(core: Core, group: StoredGroup, ref: str) -> bytes:
    """A member by contact name, handle, or the start of their user id (8+ hex digits)."""
    members = group.member_ids()
    who = core.store.contact_by_name(ref)
    if who is not None:
        if who.user_id not in members:
            raise UsageProblem(f"{ref} is not a member of {group.name}.", "not_a_member")
        return who.user_id
    by_display = [m for m in members if display_name(core, m) == ref]
    text = ref.lower()
    by_prefix = [m for m in members if len(text) >= 8 and m.hex().startswith(text)]
    matches = by_display or by_prefix
    if len(matches) != 1:
        raise UsageProblem(
            f"{ref!r} is not a member of {group.name} (give a contact name, a member's handle "
            "or the start of their user id, as 'e2e-recall group list' shows).",
            "not_a_member",
        )
    return matches[0]


def _refusal(core: Core, exc: GroupChangeRefused, group: str, action: str) -> GroupRefused:
    code = exc.expect
    sentence = {
        "not_authorised": f"Only an admin of {group} can {action} members.",
        "already_member": f"Someone named is already a member of {group}.",
        "not_a_member": f"Someone named is not a member of {group}.",
        "too_many_members": f"{group} would have more members than a group may have.",
    }.get(str(code), f"This change to {group} is not allowed ({exc.sentence.rstrip('.')}).")
    if exc.reason == "remove_self":
        sentence = f"To leave {group} yourself, use 'e2e-recall group leave {group}'."
    return GroupRefused(sentence, str(code))


async def _submit(
    core: Core,
    group_id: bytes,
    action: GroupAction,
    members: Sequence[bytes],
    *,
    name: str,
    old: StoredGroup | None,
) -> StoredGroup:
    """Sign the next change, check it by the rules, post it; once more if we were behind."""
    for attempt in range(2):
        signed = sign_group_change(
            core.keys.identity,
            group_id=group_id,
            seq=old.seq + 1 if old else 0,
            previous=old.head if old else None,
            action=action,
            members=members,
            issued_at=core.clock(),
        )
        try:
            if old is None:
                state = GroupState.create(signed.change)
            else:
                state = state_of(old).apply(signed.change)
        except GroupChangeRefused as exc:
            raise _refusal(core, exc, name, str(action)) from None
        try:
            await authed(
                core, "POST", f"/v1/groups/{group_id.hex()}/changes", {"change": signed.signed}
            )
        except RelayRefused as exc:
            if exc.code == "stale_head" and attempt == 0 and old is not None:
                old = await refresh_group(core, group_id)  # someone changed it meanwhile
                continue
            raise GroupRefused(f"The relay refused the change: {exc.sentence}", exc.code) from None
        chain = [*(old.changes() if old else []), signed.signed]
        await _learn_members(core, state)
        return _store(core, state, chain, old, name)
    raise GroupRefused(f"{name} kept changing meanwhile; try again.", "stale_head")


async def create_group(core: Core, name: str, contacts: Sequence[str]) -> StoredGroup:
    _check_new_name(core, name)
    members = _user_ids_of_contacts(core, contacts)
    if not members:
        raise UsageProblem("A group needs at least one contact besides you.", "no_members")
    group_id = os.urandom(16)
    return await _submit(
        core, group_id, GroupAction.CREATE, [core.user_id, *members], name=name, old=None
    )


def _still_in(core: Core, group: StoredGroup) -> None:
    if not group.member:
        raise GroupRefused(f"You are no longer a member of {group.name}.", "not_a_member")


async def add_members(core: Core, name: str, contacts: Sequence[str]) -> StoredGroup:
    group = find_group(core, name)
    _still_in(core, group)
    members = _user_ids_of_contacts(core, contacts)
    present = [c for c, m in zip(contacts, members, strict=True) if m in group.member_ids()]
    if present:
        raise GroupRefused(f"{', '.join(present)} already in {name}.", "already_member")
    return await _submit(core, group.group_id, GroupAction.ADD, members, name=name, old=group)


async def remove_members(core: Core, name: str, refs: Sequence[str]) -> StoredGroup:
    group = find_group(core, name)
    _still_in(core, group)
    members = [_member_ref(core, group, ref) for ref in refs]
    if len(set(members)) != len(members):
        raise UsageProblem("Someone is named twice.", "duplicate_member")
    return await _submit(core, group.group_id, GroupAction.REMOVE, members, name=name, old=group)


async def leave_group(core: Core, name: str) -> StoredGroup:
    group = find_group(core, name)
    _still_in(core, group)
    return await _submit(
        core, group.group_id, GroupAction.LEAVE, [core.user_id], name=name, old=group
    )


def rename_group(core: Core, name: str, new: str) -> StoredGroup:
    group = find_group(core, name)
    _check_new_name(core, new)
    with core.store.transaction():
        group.name, group.named = new, 1
        save_group(core.store, group)
    return group


def all_groups(core: Core) -> list[StoredGroup]:
    return list_groups(core.store)
