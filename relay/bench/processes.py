"""The servers the bench starts itself: the relay, and the bare baseline server.

Each runs as its own process, in its own session (so a Ctrl-C at the
terminal reaches the bench, which then stops them in order, rather than
killing them halfway through a measurement), with stdout and stderr going
to files in the run's temporary directory (a full pipe cannot block it).
Because the bench started them, it can read their cost from ``/proc``:
user plus system CPU seconds, and the peak resident set (``VmHWM``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import BenchFailed

__all__ = ["ProcessCost", "ServerProcess", "machine_cpu_seconds", "relay_command"]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

RELAXED = {
    "--requests-per-minute": "0",
    "--address-requests-per-minute": "0",
    "--recalls-per-conversation-per-day": "0",
    "--user-quota": "1024GiB",
    "--log-level": "warning",
}
"""Limits a bench would otherwise run into: what is measured is the relay, not its brakes."""


class ProcessCost:
    """CPU seconds and peak RSS of a running process, from ``/proc/PID``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        """User plus system CPU time so far."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime

    def peak_rss_bytes(self) -> int:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used so far (all cores; 0 without /proc).

    Read at both ends of a window, it shows how much else was running: a
    machine shared with other work gives lower figures, and the JSON says so.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def relay_command(port_file: Path, data_dir: Path, devices: int, config: Path | None) -> list[str]:
    """``serve`` on a free loopback port with the bench's relaxed limits."""
    command = [sys.executable, "-m", "relay.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--port-file", str(port_file), "--data-dir", str(data_dir)]
    if config is not None:
        command += ["--config", str(config)]
    for flag, value in RELAXED.items():
        command += [flag, value]
    return [*command, "--max-websockets-per-user", str(max(16, devices))]


class ServerProcess:
    """One server subprocess that writes its port to a file once it listens."""

    def __init__(
        self,
        name: str,
        command: list[str],
        work: Path,
        port_file: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.work = work
        self.port_file = port_file
        self.extra_env = env or {}  # settings kept off the command line (a database URL)
        self.file_stem = name.replace(" ", "-")
        self.stderr_path = work / f"{self.file_stem}.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
        env.update(self.extra_env)
        with (
            self.stderr_path.open("wb") as err,
            (self.work / f"{self.file_stem}.stdout").open("wb") as out,
        ):
            self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and fixed arguments
                self.command,
                cwd=self.work,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            text = self.port_file.read_text() if self.port_file.exists() else ""
            if text.endswith("\n"):
                self.port = int(text)
                return self
            if self.process.poll() is not None:
                raise BenchFailed(
                    f"The {self.name} exited with code {self.process.returncode} before "
                    f"listening: {self.last_error()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise BenchFailed(f"The {self.name} did not start within {STARTUP_TIMEOUT:.0f} s.")
            time.sleep(0.02)

    def last_error(self) -> str:
        """The last line the process wrote to stderr: usually its own one-sentence reason."""
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "it said nothing."

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cost(self) -> ProcessCost:
        assert self.process is not None
        return ProcessCost(self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (the relay drains and closes its database), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
