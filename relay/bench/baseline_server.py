"""The ceiling: a bare aiohttp server, as little work per request as aiohttp allows.

``python -m relay.bench.baseline_server --port-file FILE`` listens on a free
loopback port with the relay's own server settings (an ``AppRunner``, no
access log) and answers two routes:

* ``POST /echo`` reads the whole body and answers a small msgpack map, as
  the relay answers a send (``message_id``, ``received_at``, ``created``);
* ``GET /ws`` echoes every binary frame back on the same WebSocket.

No database, no signature check, no routing beyond these two: what is left
is the cost of aiohttp and the kernel's loopback on this machine, which
the relay cannot beat.  It stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import WSMsgType, web

from e2e_recall import wire

__all__ = ["create_baseline_app", "main"]

ANSWER = wire.encode({"created": True, "message_id": bytes(16), "received_at": 1_800_000_000_000})
MAX_BODY = 1 << 21


async def echo(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/msgpack")


async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY)
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def create_baseline_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/echo", echo)
    app.router.add_get("/ws", websocket_echo)
    return app


async def _serve(port_file: Path) -> None:
    runner = web.AppRunner(create_baseline_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    port_file.write_text(f"{port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.bench.baseline_server")
    parser.add_argument("--port-file", type=Path, required=True, help="write the port here")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
