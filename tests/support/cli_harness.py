"""Run the real ``e2e-recall`` command as a person would, one profile each.

Every call is a process of its own (as from a shell), with the passphrase from
the environment and the profile from ``--profile``: forked from a server that
imported the command once (``forked_commands``), or, for long-running commands
and when that server is busy, the console script started afresh.  No call may
ever print a traceback: that check is made here, for every command of every test.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from forked_commands import run_command

COMMAND_TIMEOUT = 60.0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# One freshly made profile per person's name, made by the real ``init`` once per
# test run and copied for each test: ``init`` is a whole process with a key
# derivation, and every test would otherwise pay it for every person.  Each test
# still registers its copy with its own relay; the tests of ``init`` itself run it.
_TEMPLATES = Path(tempfile.mkdtemp(prefix="e2e-recall-profiles-"))
atexit.register(shutil.rmtree, _TEMPLATES, ignore_errors=True)


def console_script() -> Path:
    """The installed ``e2e-recall`` entry point beside this interpreter."""
    script = Path(sys.executable).with_name("e2e-recall")
    if not script.exists():
        raise AssertionError(
            f"{script} is missing: install the project first (pip install -e '.[dev]')"
        )
    return script


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def text(self) -> str:
        return self.out + self.err

    def __str__(self) -> str:
        return f"e2e-recall {' '.join(self.args)} -> {self.code}\n{self.out}\n{self.err}"


def _clean(env: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in env.items() if not k.startswith("E2E_RECALL")}
    # Wide and plain, so sentences are not wrapped or coloured in the captured output.
    keep.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    return keep


class Person:
    """One profile directory and its passphrase."""

    def __init__(self, root: Path, name: str, passphrase: str | None = None) -> None:
        self.name = name
        self.profile = root / name
        self.passphrase = passphrase or f"{name}'s long passphrase"
        self.env = _clean(dict(os.environ))
        self.env["XDG_DATA_HOME"] = str(root / "xdg-data")
        self.env["E2E_RECALL_PASSPHRASE"] = self.passphrase

    def argv(self, *args: str) -> list[str]:
        return [str(console_script()), "--profile", str(self.profile), *args]

    def run(
        self,
        *args: str,
        expect: int | None = 0,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        argv = self.argv(*args)
        environment = {**self.env, **(env or {})}
        text = stdin if stdin is not None else ""
        done = run_command("client.cli", argv, env=environment, stdin=text, timeout=COMMAND_TIMEOUT)
        result = Result(args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in result.text, str(result)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    def start(self, *args: str) -> Stream:
        """A long-running command (``watch``, ``report --follow``), read line by line."""
        # A file, so a chatty stderr can never block it; Stream.kill closes it.
        errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
        process = subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=self.env,
            # Ctrl-C works as at a terminal even if the suite was started where SIGINT is
            # ignored (a background job of a script), which children would inherit.
            preexec_fn=_default_sigint,
        )
        return Stream(args, process, errors)

    def setup(self, relay_url: str, *, handle: str | None = None) -> None:
        """``init`` (cheap key derivation, for tests) and ``register``."""
        self.initialise()
        self.run("register", relay_url, "--handle", handle or self.name)

    def initialise(self) -> None:
        """A new profile as ``init`` makes it: this name's template, copied."""
        settings = {k for k in self.env if k.startswith("E2E_RECALL")} - {"E2E_RECALL_PASSPHRASE"}
        if settings:  # init reads them (a key lifetime, say, counted from now): run it
            self.run("init", "--kdf", "interactive")
            return
        secret = hashlib.sha256(self.passphrase.encode()).hexdigest()[:12]
        template = _TEMPLATES / f"{self.name}-{secret}"
        if not template.exists():
            maker = Person(_TEMPLATES / "making", self.name, self.passphrase)
            maker.run("init", "--kdf", "interactive")
            maker.profile.rename(template)
        shutil.copytree(template, self.profile)


class Stream:
    """A running command whose output lines are waited for, never polled blindly."""

    def __init__(
        self, args: tuple[str, ...], process: subprocess.Popen[str], errors: IO[str]
    ) -> None:
        self.args = args
        self.process = process
        self._errors = errors
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, wanted: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The next line for which ``wanted`` holds; lines before it are kept in ``lines``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"{' '.join(self.args)}: no matching line in {timeout}s; saw {self.lines}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"{' '.join(self.args)} ended ({self.process.wait()}) without a matching "
                    f"line; saw {self.lines}; stderr: {self.stderr()}"
                )
            self.lines.append(line)
            if wanted(line):
                return line

    def expect_json(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next ``--json`` line whose ``kind`` is ``kind``."""

        def matches(line: str) -> bool:
            try:
                return bool(json.loads(line).get("kind") == kind)
            except ValueError:
                return False

        found: dict[str, Any] = json.loads(self.expect(matches, timeout))
        return found

    def stderr(self) -> str:
        """What it wrote to stderr so far; never a traceback."""
        self._errors.seek(0)
        text = self._errors.read()
        assert "Traceback" not in text, text
        return text

    def interrupt(self) -> int:
        """Ctrl-C, as a person would stop it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=COMMAND_TIMEOUT)

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return code

    def kill(self) -> None:
        """Stop it if it still runs, and release its pipes (always call, in a finally)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=COMMAND_TIMEOUT)
        self._reader.join(timeout=COMMAND_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr()
        self._errors.close()
