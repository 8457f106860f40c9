"""Run the real ``e2e-recall`` console script as a person would, one profile each.

Every call is a new process (as from a shell), with the passphrase from the
environment and the profile from ``--profile``.  No call may ever print a
traceback: that check is made here, for every command of every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMAND_TIMEOUT = 60.0


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
        done = subprocess.run(
            self.argv(*args),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env={**self.env, **(env or {})},
            check=False,
        )
        result = Result(args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in result.text, str(result)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A long-running command (``watch``, ``report --follow``), read line by line."""
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def setup(self, relay_url: str, *, handle: str | None = None) -> None:
        """``init`` (cheap key derivation, for tests) and ``register``."""
        self.run("init", "--kdf", "interactive")
        self.run("register", relay_url, "--handle", handle or self.name)
