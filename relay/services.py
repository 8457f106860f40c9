"""The relay's services, built once per application and shared by every handler.

Handlers reach the rules only through these objects (accounts, messaging,
recalls, the inbox of each device, the hub of live connections); apart from
the readiness ping of ``/healthz``, no handler touches storage directly.
Tests build the same object without HTTP to drive the rules.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .accounts import Accounts
from .blobs.service import Blobs
from .blobs.store import FileBlobStore
from .cluster import Cluster
from .config import Config
from .devices.service import Devices
from .expiry import ExpiryTimer
from .gauges import HeldGauges
from .groups.service import Groups
from .hub import Hub
from .inbox import Inbox
from .keys.service import WrapKeys
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
        self.accounts = Accounts(
            storage,
            self.relay_key,
            clock,
            config.session_ttl,
            max_pending_challenges=config.max_pending_challenges,
        )
        self.groups = Groups(storage, self.accounts, clock, config.max_group_members)
        self.wrap_keys = WrapKeys(storage, self.accounts, clock, config.max_certificate_lifetime)
        self.messaging = Messaging(
            storage, self.accounts, config, clock, self.groups, self.wrap_keys
        )
        self.recalls = Recalls(storage, self.messaging, self.relay_key, config, clock)
        self.blobs = Blobs(storage, FileBlobStore(config.blob_path), self.messaging, config, clock)
        storage.on_blobs_destroyed(self.blobs.on_destroyed)
        self.retention = Retention(storage, self.messaging, config, clock, self.blobs.sweep)
        self.timers = ExpiryTimer(storage, self.messaging, clock)
        self.inbox = Inbox(storage)
        self.hub = Hub(
            self.inbox,
            metrics,
            clock,
            config.max_websockets,
            config.max_websockets_per_user,
            push_from_memory=storage.announces_in_order,
        )
        self.devices = Devices(storage, self.accounts, self.hub, clock)
        self.gauges = HeldGauges(storage, metrics, config.stats_interval)
        self.rate = RateLimiter(config.requests_per_minute)
        self.address_rate = RateLimiter(config.address_requests_per_minute)
        self.metrics_token: bytes | None = None  # set by the app from metrics_token_file
        storage.on_events(self.hub.notify)
        self.cluster = Cluster(storage, self.accounts, self.hub, self.timers)


SERVICES = web.AppKey("services", Services)
