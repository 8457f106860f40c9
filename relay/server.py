"""Running the relay: listen, wait for SIGTERM or SIGINT, shut down gracefully.

Shutdown order: stop accepting connections, close every websocket with 1001
("going away"), let in-flight requests finish (up to ``shutdown_timeout``),
then close the database.  The address actually bound is logged (and
written to ``--port-file`` when asked), so ``--port 0`` can be used by
scripts and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from aiohttp import web

from .app import IN_FLIGHT, create_app
from .config import Config
from .services import SERVICES

__all__ = ["run_server", "serve"]

log = logging.getLogger("relay.server")


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def serve(config: Config, port_file: Path | None = None) -> None:
    """Serve until a termination signal arrives, then drain and stop."""
    app = create_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout / 1000,
        keepalive_timeout=config.keepalive_timeout / 1000,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.host,
        config.port,
        ssl_context=_ssl_context(config),
        shutdown_timeout=config.shutdown_timeout / 1000,
    )
    await site.start()
    port = _bound_port(runner)
    log.info(
        "listening",
        extra={
            "event": "listening",
            "host": config.host,
            "port": port,
            "tls": config.tls_cert is not None,
        },
    )
    if port_file is not None:
        port_file.write_text(f"{port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await stop.wait()
    finally:
        log.info(
            "shutting down",
            extra={"event": "shutting_down", "signal": received[0] if received else None},
        )
        await drain(app, runner, config.shutdown_timeout / 1000)


async def drain(app: web.Application, runner: web.AppRunner, timeout: float) -> None:
    """Stop accepting, close websockets (1001), let requests finish, then clean up.

    aiohttp's own cleanup stops reading from every connection at once, which
    would strand an upload that is halfway through; so the relay first stops
    listening and waits (up to ``timeout``) for the requests it is handling.
    """
    for site in list(runner.sites):
        await site.stop()
    if SERVICES in app:
        await app[SERVICES].hub.close_all()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[IN_FLIGHT].idle.wait(), timeout)
    await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the relay is not listening on a TCP port")


def run_server(config: Config, port_file: Path | None = None) -> None:
    asyncio.run(serve(config, port_file))
