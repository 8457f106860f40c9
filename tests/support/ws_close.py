"""The close code a relay sent, as the client received it.

``ClientWebSocketResponse.close_code`` is not that: when the relay drops the
TCP connection right after its close frame (it may, once it has sent it),
the client's own close reply fails and aiohttp overwrites the code with 1006.
What a test must check is the frame the relay sent, so this reads it.
"""

from __future__ import annotations

import asyncio

import aiohttp

_ENDED = (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def received_close_code(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> int:
    """Read frames until the relay's close frame; its code, or 1006 if none came."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout=max(0.0, deadline - loop.time()))
        if message.type is aiohttp.WSMsgType.CLOSE:
            return int(message.data)
        if message.type in _ENDED:
            return int(ws.close_code or aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
