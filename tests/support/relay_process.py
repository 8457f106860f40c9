"""The relay as a real process (``python -m relay.cli``), for every suite that needs one.

``RelayProcess`` starts ``serve`` with stdout and stderr going to files (a full
pipe cannot block it), waits for the port file, and can stop it with a
signal, kill it, or start it again on the same data directory and port.
``relay_cli`` runs one of the operator commands beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from forked_commands import run_command

import e2e_recall as er
from e2e_recall import wire

STARTUP_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0


class WallClock:
    """A relay process keeps real time, so the people talking to it do too."""

    @property
    def now(self) -> int:
        return int(time.time() * 1000)


@dataclass
class Target:
    """What the test driver's ``Person`` needs of a relay: its URL, its id and a clock."""

    url: str
    relay_id: bytes
    clock: WallClock = field(default_factory=WallClock)


async def relay_id(http: aiohttp.ClientSession, url: str) -> bytes:
    """The relay's id, from the key it publishes (the same across restarts)."""
    async with http.get(url + "/.well-known/e2e-recall") as response:
        answer = wire.decode(await response.read(), limits=wire.Limits(max_bin=1 << 20))
    assert isinstance(answer, dict)
    return er.fingerprint(er.VerifyKey(answer["relay_key"]))


async def target(http: aiohttp.ClientSession, url: str) -> Target:
    return Target(url, await relay_id(http, url))


def free_port() -> int:
    """A loopback port nobody listens on now (for a relay that must come back on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def relay_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without the operator's relay settings, and a private data home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env.update(extra)
    return env


class RelayProcess:
    """One ``serve`` subprocess on 127.0.0.1."""

    def __init__(
        self,
        tmp_path: Path,
        data_dir: Path,
        *args: str | Path,
        port: int = 0,
        **env: str,
    ) -> None:
        self.tmp_path = tmp_path
        self.data_dir = data_dir
        self.wanted_port = port
        self.extra_args = [str(a) for a in args]
        self.env = relay_env(tmp_path, **env)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._new_run_dir()

    def _new_run_dir(self) -> None:
        runs = len(list(self.tmp_path.glob("run-*")))
        self.run_dir = self.tmp_path / f"run-{runs}"
        self.run_dir.mkdir(parents=True)
        self.port_file = self.run_dir / "port"
        self.stderr_path = self.run_dir / "stderr"
        self.stdout_path = self.run_dir / "stdout"

    @property
    def args(self) -> list[str]:
        return [
            "serve",
            "--port",
            str(self.wanted_port),
            "--port-file",
            str(self.port_file),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def start(self) -> RelayProcess:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relay.cli", *self.args],
                cwd=self.tmp_path,
                env=self.env,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.port_file.exists():
                text = self.port_file.read_text()
                if text.endswith("\n"):
                    self.port = int(text)
                    return self
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the relay exited with {self.process.returncode} before listening:\n"
                    + self.stderr()
                )
            if time.monotonic() > deadline:
                raise AssertionError("the relay did not write its port file:\n" + self.stderr())
            time.sleep(0.05)

    def restart(self) -> RelayProcess:
        """Start again on the same data directory and the same port as before."""
        self.kill()
        if self.port:
            self.wanted_port = self.port
        self._new_run_dir()
        return self.start()

    @property
    def database(self) -> str | Path:
        """Its database: the ``--database-url`` it was given, else the SQLite file."""
        if "--database-url" in self.extra_args:
            return self.extra_args[self.extra_args.index("--database-url") + 1]
        return self.data_dir / "relay.db"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        """Every stderr line, each of which must be one JSON object."""
        entries = []
        for line in self.stderr().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"a stderr line is not JSON: {line!r}") from None
            assert isinstance(entry, dict), line
            entries.append(entry)
        return entries

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    async def wait_async(self, timeout: float = EXIT_TIMEOUT) -> int:
        return await asyncio.to_thread(self.wait, timeout)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.send_signal(sig)
        return self.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=EXIT_TIMEOUT)


@contextlib.contextmanager
def relay_process(
    tmp_path: Path, data_dir: Path | None = None, *args: str | Path, port: int = 0, **env: str
) -> Iterator[RelayProcess]:
    """A started relay, killed on the way out whatever happened."""
    process = RelayProcess(tmp_path, data_dir or tmp_path / "data", *args, port=port, **env)
    try:
        yield process.start()
    finally:
        process.kill()


def relay_cli(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """One ``e2e-recall-relay`` operator command, run to completion."""
    argv = [sys.executable, "-m", "relay.cli", *map(str, args)]
    return run_command("relay.cli", argv, env=relay_env(tmp_path), cwd=tmp_path)
