"""Run our command lines (``e2e-recall``, ``e2e-recall-relay``) as forks of a warm process.

Each call is still a process of its own, forked by ``fork_server`` from a
process that imported both command lines once, so a test pays a few
milliseconds for a command instead of the half second a new interpreter spends
on imports.  A call made while another thread's command runs (the server does
one at a time) starts a new interpreter instead, as it always did.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SERVED = ("client.cli", "relay.cli")


class ForkServer:
    """The harness's end of ``fork_server``: started on first use, one command at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = b""  # answer bytes read past the last whole line
        self._files = Path(tempfile.mkdtemp(prefix="e2e-recall-forks-"))
        atexit.register(self.close)

    def run(
        self,
        module: str,
        argv: list[str],
        env: dict[str, str],
        stdin: str,
        cwd: Path,
        timeout: float,
    ) -> subprocess.CompletedProcess[str] | None:
        """The finished command, or None if another thread's command holds the server."""
        if not self._lock.acquire(blocking=False):
            return None
        request: dict[str, Any] = {"module": module, "argv": argv, "env": env, "cwd": str(cwd)}
        try:
            return self._run(request, stdin, timeout)
        finally:
            self._lock.release()

    def _server(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("fork_server.py")), *SERVED],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            self._pending = b""
        return self._process

    def _run(
        self, request: dict[str, Any], stdin: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        server = self._server()
        assert server.stdin is not None
        streams = {name: self._files / name for name in ("stdin", "stdout", "stderr")}
        streams["stdin"].write_text(stdin)
        for name in ("stdout", "stderr"):
            streams[name].write_bytes(b"")
        request = {**request, **{name: str(path) for name, path in streams.items()}}
        argv = request["argv"]
        server.stdin.write(json.dumps(request).encode() + b"\n")
        server.stdin.flush()
        pid = self._answer(server, time.monotonic() + timeout)["pid"]
        try:
            code = self._answer(server, time.monotonic() + timeout)["code"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._answer(server, time.monotonic() + timeout)
            raise subprocess.TimeoutExpired(argv, timeout) from None
        out = streams["stdout"].read_text(errors="replace")
        err = streams["stderr"].read_text(errors="replace")
        return subprocess.CompletedProcess(argv, code, out, err)

    def _answer(self, server: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
        """The next answer line, read from the descriptor itself: a buffered reader
        could hold the next answer where ``select`` does not see it."""
        assert server.stdout is not None
        fd = server.stdout.fileno()
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"the command fork server ended ({server.wait()})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=60)
        shutil.rmtree(self._files, ignore_errors=True)


_FORKS = ForkServer()


def _starts_otherwise(env: dict[str, str]) -> bool:
    """Whether ``env`` changes how an interpreter starts (``PYTHONPATH`` and the like).

    A fork has started already, with the server's, so such a command needs
    an interpreter of its own (a test that hides a module behind PYTHONPATH).
    """
    names = {name for name in (*env, *os.environ) if name.startswith("PYTHON")}
    return any(env.get(name) != os.environ.get(name) for name in names)


def run_command(
    module: str,
    argv: list[str],
    *,
    env: dict[str, str],
    stdin: str = "",
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``argv`` (as a shell would start it) run by ``module``'s ``main``, to completion.

    ``argv[0]`` is the program as started afresh: the console script, or the
    interpreter with ``-m module`` (then ``main`` gets what follows those).
    """
    where = cwd or Path.cwd()
    if module not in SERVED:
        raise ValueError(f"{module} is not a command the fork server holds")
    done = None if _starts_otherwise(env) else _FORKS.run(module, argv, env, stdin, where, timeout)
    if done is not None:
        return done
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=where,
        check=False,
    )
