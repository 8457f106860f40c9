"""Users and signed group chains for tests of groups (core, relay and client alike).

Everything is seeded, so the same names always have the same keys, and a
:class:`Chain` signs each next change with the right ``seq`` and
``previous`` unless a test asks for something else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from e2e_recall import (
    GroupAction,
    GroupState,
    SeededRandom,
    SignedGroupChange,
    SigningKey,
    VerifyKey,
    fingerprint,
    sign_group_change,
)

T0 = 1_790_000_000_000


class Cast:
    """Named users with seeded identity keys, and the key lookup ``replay_group`` needs."""

    def __init__(self, seed: bytes = b"tests group cast") -> None:
        self._rng = SeededRandom(seed)
        self.keys: dict[str, SigningKey] = {}
        self.by_id: dict[bytes, VerifyKey] = {}

    def __getitem__(self, name: str) -> SigningKey:
        if name not in self.keys:
            key = SigningKey.generate(self._rng)
            self.keys[name] = key
            self.by_id[fingerprint(key.public_key)] = key.public_key
        return self.keys[name]

    def uid(self, name: str) -> bytes:
        return fingerprint(self[name].public_key)

    def uids(self, names: Iterable[str]) -> list[bytes]:
        return [self.uid(name) for name in names]

    def lookup(self, user_id: bytes) -> VerifyKey | None:
        return self.by_id.get(user_id)

    def group_id(self) -> bytes:
        return self._rng(16)


@dataclass
class Chain:
    """A group's chain under construction: signed bytes, and the state after each."""

    cast: Cast
    group_id: bytes
    changes: list[SignedGroupChange] = field(default_factory=list)
    states: list[GroupState] = field(default_factory=list)

    @classmethod
    def create(cls, cast: Cast, creator: str, *others: str) -> Chain:
        chain = cls(cast, cast.group_id())
        chain.append(creator, GroupAction.CREATE, creator, *others)
        return chain

    @property
    def state(self) -> GroupState:
        return self.states[-1]

    @property
    def signed(self) -> list[bytes]:
        return [change.signed for change in self.changes]

    def sign(
        self,
        signer: str,
        action: GroupAction | str,
        *names: str,
        seq: int | None = None,
        previous: bytes | str | None = "auto",
        group_id: bytes | None = None,
        members: Iterable[bytes] | None = None,
        issued_at: int | None = None,
    ) -> SignedGroupChange:
        """The next change (not appended), with any field overridden."""
        next_seq = len(self.changes) if seq is None else seq
        if previous == "auto":
            previous = self.changes[next_seq - 1].digest if next_seq else None
        assert not isinstance(previous, str)
        return sign_group_change(
            self.cast[signer],
            group_id=self.group_id if group_id is None else group_id,
            seq=next_seq,
            previous=previous,
            action=action,
            members=self.cast.uids(names) if members is None else members,
            issued_at=T0 + next_seq if issued_at is None else issued_at,
        )

    def append(self, signer: str, action: GroupAction | str, *names: str) -> SignedGroupChange:
        """Sign the next change, apply it, and keep both."""
        change = self.sign(signer, action, *names)
        if self.states:
            state = self.state.apply(change.change, change.digest)
        else:
            state = GroupState.create(change.change, change.digest)
        self.changes.append(change)
        self.states.append(state)
        return change
