"""A device's WebSocket as the relay tests use it: requests paired with answers by id."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from e2e_recall import wire

from driver import Person

BIG = wire.Limits(max_size=1 << 22, max_bin=1 << 21)


class Socket:
    """A device's WebSocket with requests; events that arrive meanwhile are kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.answers: dict[int, dict[str, Any]] = {}
        self.next_id = 1

    async def ask(self, op: str, message_id: bytes | None = None, body: Any = None) -> int:
        frame: dict[str, Any] = {
            "type": "request",
            "id": self.next_id,
            "op": op,
            "message_id": message_id,
            "body": body,
        }
        await self.ws.send_bytes(wire.encode(frame))
        self.next_id += 1
        return int(frame["id"])

    async def answer(self, request_id: int) -> dict[str, Any]:
        while request_id not in self.answers:
            message = await asyncio.wait_for(self.ws.receive(), timeout=10)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            frame = wire.decode(message.data, limits=BIG)
            if frame["type"] == "response":
                self.answers[frame["id"]] = frame
            elif frame["type"] == "event":
                self.events.append(frame)
        return self.answers.pop(request_id)

    async def call(self, op: str, message_id: bytes | None = None, body: Any = None) -> Any:
        return await self.answer(await self.ask(op, message_id, body))

    @classmethod
    async def open(cls, person: Person, device: int = 0) -> Socket:
        """Connect ``person``'s device (the caller closes ``ws``)."""
        return cls(await person.websocket(device).__aenter__())
