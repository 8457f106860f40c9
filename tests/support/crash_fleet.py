"""The relay processes a crash run kills: one on SQLite, or one or more on a PostgreSQL server.

On SQLite there is one process, as there can only be.  On PostgreSQL the
run starts a server of its own (the PostgreSQL kill needs one nobody else
uses) and one or more relay processes sharing a data directory (one relay
key and one blob directory, as behind a load balancer) and the database.
Each request of a client goes to one of the processes at random
(:class:`FleetTarget`), as a load balancer without health checks would
send it: a request that reaches a killed process gets no answer, and the
client's retry goes to either again, so the surviving process serves while
the killed one is down.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from relay.bench.postgres_server import PostgresServer, find_bindir

from relay_process import RelayProcess, WallClock, free_port

__all__ = ["FleetTarget", "RelayFleet", "log_problems"]

_DATABASE = "relay_crash"


class FleetTarget:
    """What the driver's ``Person`` needs of a relay, with a URL that picks a process per use."""

    def __init__(self, fleet: RelayFleet, relay_id: bytes, rng: random.Random) -> None:
        self.fleet = fleet
        self.relay_id = relay_id
        self.clock = WallClock()
        self._rng = rng

    @property
    def url(self) -> str:
        return self._rng.choice(self.fleet.processes).url()


class RelayFleet:
    """The relay processes of one crash run, and the PostgreSQL server if there is one."""

    def __init__(self, work: Path, *, postgres: bool, relays: int, **env: str) -> None:
        if relays > 1 and not postgres:
            raise ValueError("several relay processes need PostgreSQL")
        self.work = work
        self.data_dir = work / "data"
        self.postgres: PostgresServer | None = None
        self.database_url = ""
        args: list[str] = []
        if postgres:
            bindir = find_bindir()
            if bindir is None:
                raise RuntimeError("PostgreSQL's server programs were not found")
            self.postgres = PostgresServer(
                bindir, max_connections=100, prefix="e2e-recall-crash-pg-"
            )
            self.postgres.start()
            self.database_url = self.postgres.create_database(_DATABASE)
            args = ["--database-url", self.database_url]
        self.processes = [
            RelayProcess(work / f"relay-{n}", self.data_dir, *args, port=free_port(), **env)
            for n in range(relays)
        ]
        self.last_started: list[RelayProcess] = []

    # -- the relay processes ----------------------------------------------------------------
    def start(self) -> None:
        for process in self.processes:
            process.start()
        self.last_started = list(self.processes)

    def url(self) -> str:
        return self.processes[0].url()

    @property
    def running(self) -> bool:
        """Whether every process runs."""
        return all(process.running for process in self.processes)

    def kill_one(self, rng: random.Random) -> RelayProcess:
        """SIGKILL one running process (chosen at random) and wait for it to die."""
        victim = rng.choice([p for p in self.processes if p.running] or self.processes)
        victim.kill()  # Popen.kill is SIGKILL
        return victim

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()

    def restart_dead(self) -> None:
        """Start again every process that is down, on its data directory and port."""
        self.last_started = [p for p in self.processes if not p.running]
        for process in self.last_started:
            process.restart()

    def stderr(self) -> str:
        """What the processes started last wrote since (their start-up sweep is there)."""
        return "".join(process.stderr() for process in self.last_started)

    def database_args(self) -> list[str | Path]:
        """The arguments an operator command needs to reach the same database."""
        args: list[str | Path] = ["--data-dir", self.data_dir]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def stop(self) -> None:
        self.kill_all()
        if self.postgres is not None:
            self.postgres.stop()

    def logs(self) -> list[Path]:
        """Every stderr file every process wrote, over all its runs."""
        return sorted(
            path for process in self.processes for path in process.tmp_path.glob("run-*/stderr")
        )


def log_problems(paths: list[Path]) -> list[str]:
    """Lines of the relays' logs that show an unhandled error: a traceback, or not JSON at all.

    The relay logs one JSON object per line and an error it handled as a
    sentence; an error logged with its stack (``traceback``), an
    ``internal_error`` (a 500), or a line that is not JSON (Python printing
    a traceback itself) means something escaped.  A warning may carry a
    stack: asyncpg's pool logs one each time it fails to reconnect while
    PostgreSQL is down, and retries by itself.
    """
    found: list[str] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry: Any = json.loads(line)
            except ValueError:
                found.append(f"{path.parent.parent.name}/{path.parent.name}: {line[:200]}")
                continue
            if not isinstance(entry, dict):
                found.append(f"{path.parent.parent.name}: {line[:200]}")
            elif entry.get("event") == "internal_error" or (
                "traceback" in entry and entry.get("level") in ("error", "critical")
            ):
                found.append(
                    f"{path.parent.parent.name}/{path.parent.name}: "
                    f"{entry.get('event')} {entry.get('exception')} {line[:300]}"
                )
    return found
