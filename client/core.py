"""What every part of the client shares: the profile's keys, its store, its relay, its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from e2e_recall import DeviceCertificate, VerifyKey, direct_conversation_id, fingerprint

from .errors import NotRegistered
from .keystore import Keys
from .paths import Profile
from .store import LocalStore
from .transport import Transport

__all__ = ["Clock", "Core", "FileProgress", "system_clock"]

Clock = Callable[[], int]
# (file name, total bytes) -> a callable told how many more bytes have moved
FileProgress = Callable[[str, int], Callable[[int], None]]
_K = TypeVar("_K")
_V = TypeVar("_V")
_CACHE_LIMIT = 4096  # verified keys and certificates kept per session (oldest dropped first)


def system_clock() -> int:
    """Milliseconds since the Unix epoch (the protocol's unit of time)."""
    return time.time_ns() // 1_000_000


@dataclass
class Core:
    profile: Profile
    keys: Keys
    store: LocalStore
    clock: Clock = system_clock
    transport: Transport | None = field(default=None)
    # How file transfers show their progress (the CLI sets rich bars); None: silently.
    progress: FileProgress | None = field(default=None)
    # What happened on opening, before any command ran (copies whose timer ran out while
    # nothing was running): receiving.Update values, shown by the next sync.
    pending_updates: list[Any] = field(default_factory=list)
    # Pure results of checks already made in this session, so a long-lived client
    # (watch, the library, a group of many devices) does not repeat them for every
    # message.  Keyed by the exact bytes checked; nothing time-dependent is kept.
    _verify_keys: dict[bytes, VerifyKey] = field(default_factory=dict, repr=False)
    _certificates: dict[tuple[bytes, bytes], DeviceCertificate] = field(
        default_factory=dict, repr=False
    )
    _user_id: tuple[VerifyKey, bytes] | None = field(default=None, repr=False)
    _conversations: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict, repr=False)
    # The wrapping-key schedule's state in this process (client/rotation.py owns it).
    rotation: object = field(default=None, repr=False)

    @property
    def user_id(self) -> bytes:
        public = self.keys.identity.public_key
        if self._user_id is None or self._user_id[0] is not public:
            self._user_id = (public, fingerprint(public))
        return self._user_id[1]

    def conversation_with(self, peer: bytes) -> bytes:
        """The id of our one-to-one conversation with the user ``peer``."""
        key = (self.user_id, peer)
        found = self._conversations.get(key)
        if found is None:
            found = direct_conversation_id(*key)
            _remember(self._conversations, key, found)
        return found

    def verify_key(self, raw: bytes) -> VerifyKey:
        """``VerifyKey(raw)``, validated once per session for each key."""
        key = self._verify_keys.get(raw) if type(raw) is bytes else None
        if key is None:
            key = VerifyKey(raw)  # raises for a malformed or weak key, which is never kept
            _remember(self._verify_keys, raw, key)
        return key

    def verified_certificate(self, identity: VerifyKey, data: bytes) -> DeviceCertificate | None:
        """A certificate these exact bytes were already verified as, under ``identity``."""
        return self._certificates.get((identity.raw, data)) if type(data) is bytes else None

    def remember_certificate(
        self, identity: VerifyKey, data: bytes, certificate: DeviceCertificate
    ) -> None:
        _remember(self._certificates, (identity.raw, data), certificate)

    @property
    def device_id(self) -> bytes:
        return self.keys.device.device_id

    @property
    def relay(self) -> Transport:
        """The relay this profile registered with (one Transport per process)."""
        if self.transport is None:
            url = self.store.get_meta("relay_url")
            if url is None:
                raise NotRegistered(
                    "This profile has no relay yet; run 'e2e-recall register URL'.",
                    "not_registered",
                )
            self.transport = Transport(url.decode())
        return self.transport

    @property
    def relay_key(self) -> VerifyKey:
        raw = self.store.get_meta("relay_key")
        if raw is None:
            raise NotRegistered(
                "This profile has no relay yet; run 'e2e-recall register URL'.", "not_registered"
            )
        return VerifyKey(raw)

    def close_store(self) -> None:
        self.store.close()

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.close()
        self.store.close()


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) >= _CACHE_LIMIT:
        del cache[next(iter(cache))]
    cache[key] = value
