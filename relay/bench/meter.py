"""What the servers the bench started cost over the measured window: CPU seconds and peak RSS.

With ``--processes N`` there are N relays; each is read on its own, at the
same two moments, so the figures show both how the load spread over them
and what they cost together.  The drain after the window is left out: its
idle seconds would lower the cores the relays were seen to use under load.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .processes import ProcessCost, ServerProcess, machine_cpu_seconds

__all__ = ["Meter", "ServerCost"]


@dataclass(frozen=True)
class ServerCost:
    """One server process over the window."""

    name: str
    url: str
    pid: int
    cpu_seconds: float
    peak_rss_bytes: int


class Meter:
    """The servers' and the machine's CPU time, read by timers at the window's start and end."""

    def __init__(self, servers: list[ServerProcess], start: float, seconds: float) -> None:
        self.servers = servers
        self.costs: list[ProcessCost] = [server.cost for server in servers]
        self.readings: list[tuple[list[float], float]] = []
        self.timers = [
            threading.Timer(max(0.0, at - time.monotonic()), self._read)
            for at in (start, start + seconds)
        ]
        for timer in self.timers:
            timer.start()

    def _read(self) -> None:
        self.readings.append(([c.cpu_seconds() for c in self.costs], machine_cpu_seconds()))

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()

    def result(self) -> tuple[list[ServerCost], float] | None:
        """Each server's cost and the machine's CPU seconds; None if the window never ended.

        Waits for the reading at the window's end (due by now, but on its own thread).
        """
        for timer in self.timers:
            timer.join()
        if len(self.readings) < 2:
            return None
        (before, machine_before), (after, machine_after) = self.readings
        costs = [
            ServerCost(server.name, server.url, cost.pid, end - begin, cost.peak_rss_bytes())
            for server, cost, begin, end in zip(
                self.servers, self.costs, before, after, strict=True
            )
        ]
        return costs, machine_after - machine_before
