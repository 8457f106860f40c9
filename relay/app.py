"""The aiohttp application: ``create_app(config)``.

Resources live in one cleanup context (storage, relay key, services, the
retention job), so they open when the app starts and close, in reverse,
when it stops; websockets are closed with 1001 on shutdown before in-flight
requests are drained.  One middleware turns every refusal into a 4xx with a
code and a sentence, counts requests, and logs them without content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from e2e_recall.errors import ProtocolError

from .api import BODY_TIMEOUT, respond
from .config import Config, ConfigError
from .errors import PayloadTooLarge, RelayError, ServiceUnavailable, from_protocol_error
from .handlers import setup_routes
from .metrics import Metrics
from .services import SERVICES, Services
from .storage.base import Storage, StorageError
from .storage.postgres import PostgresStorage
from .storage.sqlite import SqliteStorage

__all__ = ["IN_FLIGHT", "InFlight", "create_app"]

log = logging.getLogger("relay.http")


def _wall_clock() -> int:
    return int(time.time() * 1000)


def _storage_for(config: Config, clock: Callable[[], int], metrics: Metrics) -> Storage:
    if config.uses_postgres:
        return PostgresStorage(
            config.database,
            clock,
            config.db_pool_size,
            observer=metrics,
            scrub_interval=config.scrub_interval / 1000,
        )
    return SqliteStorage(
        config.database_path, clock, observer=metrics, scrub_interval=config.scrub_interval / 1000
    )


def _shown(config: Config) -> str:
    """The database as the log may name it: a PostgreSQL URL without its password."""
    if not config.uses_postgres:
        return str(config.database_path)
    parts = urlsplit(config.database)
    host = parts.hostname or ""
    return f"{parts.scheme}://{parts.username or ''}@{host}{parts.path}"


def _metrics_token(path: Path | None) -> bytes | None:
    """The bearer token /metrics requires, from its file (None: /metrics is open)."""
    if path is None:
        return None
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"metrics_token_file: cannot read {path}: {exc.strerror}") from None
    if len(token) < 16 or any(byte < 0x21 or byte > 0x7E for byte in token):
        raise ConfigError(
            f"metrics_token_file: {path} must hold one token of at least 16 printable characters"
        )
    return token


class InFlight:
    """Requests being handled now, so a shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


IN_FLIGHT = web.AppKey("in_flight", InFlight)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    services = request.app[SERVICES]
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    status = 500
    in_flight = request.app[IN_FLIGHT]
    in_flight.enter()
    services.metrics.requests_in_flight.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except RelayError as exc:
        status = exc.status
        return _error(exc)
    except ProtocolError as exc:
        error = from_protocol_error(exc)
        status = error.status
        return _error(error)
    except web.HTTPRequestEntityTooLarge:
        status = 413
        return _error(PayloadTooLarge("The request body is too large.", "too_large"))
    except web.HTTPException as exc:
        status = exc.status
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        sentence = "No such address." if exc.status == 404 else exc.reason
        return respond({"error": code, "message": sentence}, status=exc.status)
    except StorageError as exc:
        status = 503
        log.error("storage failure", extra={"event": "storage_failure", "error": str(exc)[:120]})
        return _error(
            ServiceUnavailable("The relay's database is unavailable; try again shortly.", "storage")
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        status = 500
        log.exception("unexpected error", extra={"event": "internal_error", "route": route})
        return respond(
            {"error": "internal", "message": "The relay failed to handle this request."}, 500
        )
    finally:
        in_flight.leave()
        services.metrics.requests_in_flight.dec()
        seconds = time.perf_counter() - started
        services.metrics.requests.labels(route, str(status)).inc()
        services.metrics.request_seconds.labels(route).observe(seconds)
        log.info(
            "request",
            extra={
                "event": "request",
                "method": request.method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )


def _error(exc: RelayError) -> web.Response:
    body: dict[str, object] = {"error": exc.code, "message": exc.message}
    if exc.data:
        body["facts"] = exc.data
        if "offset" in exc.data:  # an upload refusal says where to resume, at the top level
            body["offset"] = exc.data["offset"]
    response = respond(body, status=exc.status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def create_app(
    config: Config,
    *,
    clock: Callable[[], int] | None = None,
    storage: Storage | None = None,
) -> web.Application:
    """The relay as an aiohttp application (tests and the demo start it in-process).

    ``storage`` replaces the one ``config`` names (the fault-injection suite
    passes a database whose steps it can make fail); the app opens and
    closes it either way.
    """
    app = web.Application(middlewares=[_errors], client_max_size=config.max_request_size)
    app[IN_FLIGHT] = InFlight()
    app[BODY_TIMEOUT] = config.body_timeout / 1000
    tick = clock or _wall_clock

    async def resources(app: web.Application) -> AsyncIterator[None]:
        metrics = Metrics()
        token = _metrics_token(config.metrics_token_file)
        store = storage if storage is not None else _storage_for(config, tick, metrics)
        await store.open()
        services = Services(config, store, tick, metrics)
        services.metrics_token = token
        await services.blobs.start()  # before serving: files a crash left without a row go
        app[SERVICES] = services
        jobs = [
            asyncio.create_task(
                services.cluster.run_led("retention", services.retention.run_forever)
            ),
            asyncio.create_task(services.cluster.run_led("timers", services.timers.run_forever)),
            asyncio.create_task(services.gauges.run_forever()),
        ]
        log.info("started", extra={"event": "started", "database": _shown(config)})
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            await services.inbox.drain()
            await services.cluster.drain()
            await services.blobs.drain()
            await store.close()
            log.info("stopped", extra={"event": "stopped"})

    async def close_websockets(app: web.Application) -> None:
        if SERVICES in app:
            await app[SERVICES].hub.close_all()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_websockets)
    setup_routes(app)
    return app
