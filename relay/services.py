"""The relay's services, built once per application and shared by every handler."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .accounts import Accounts
from .config import Config
from .hub import Hub
from .messaging import Messaging
from .metrics import Metrics
from .ratelimit import RateLimiter
from .recall import Recalls
from .relay_key import load_or_create_relay_key
from .retention import Retention
from .storage.base import Storage

__all__ = ["SERVICES", "Services"]


class Services:
    """Everything a handler needs, built once per app."""

    def __init__(
        self, config: Config, storage: Storage, clock: Callable[[], int], metrics: Metrics
    ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.metrics = metrics
        self.relay_key = load_or_create_relay_key(config.data_path)
        self.accounts = Accounts(storage, self.relay_key, clock, config.session_ttl)
        self.messaging = Messaging(storage, self.accounts, config, clock)
        self.recalls = Recalls(storage, self.messaging, self.relay_key, config, clock)
        self.retention = Retention(storage, self.messaging, config, clock)
        self.hub = Hub(storage, self.metrics, config.max_websockets, clock)
        self.rate = RateLimiter(config.requests_per_minute)
        storage.on_events(self.hub.notify)


SERVICES = web.AppKey("services", Services)


SERVICES = web.AppKey("services", Services)
