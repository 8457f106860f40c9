"""What every part of the client shares: the profile's keys, its store, its relay, its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from e2e_recall import VerifyKey, fingerprint

from .errors import NotRegistered
from .keystore import Keys
from .paths import Profile
from .store import LocalStore
from .transport import Transport

__all__ = ["Clock", "Core", "system_clock"]

Clock = Callable[[], int]


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

    @property
    def user_id(self) -> bytes:
        return fingerprint(self.keys.identity.public_key)

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
