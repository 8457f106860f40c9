"""At a real terminal (a pseudo-terminal): passphrase prompts, tables and colour.

The other CLI tests pipe output; here the command runs as a session leader
with a pty as its controlling terminal, so ``getpass`` prompts on it and
``rich`` sees a terminal, exactly as in a person's shell.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from pathlib import Path

from cli_harness import Person, console_script


class Terminal:
    """One command on a pseudo-terminal: answer its prompts, collect what it shows."""

    def __init__(self, person: Person, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        environment = {**person.env, **(env or {}), "TERM": "xterm-256color", "COLUMNS": "160"}
        environment.pop("NO_COLOR", None)
        environment.pop("E2E_RECALL_PASSPHRASE", None)

        def take_terminal() -> None:  # runs in the child: own session, pty as controlling tty
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            [str(console_script()), "--profile", str(person.profile), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        self.screen = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.screen += chunk.decode(errors="replace")
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen shows {self.screen!r}")
            self._read(0.1)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            pass
        os.close(self.master)
        code = self.process.wait(timeout=5)
        assert "Traceback" not in self.screen, self.screen
        return code


def test_init_asks_the_passphrase_twice_and_never_echoes_it(tmp_path: Path) -> None:
    person = Person(tmp_path, "dora", passphrase="correct horse battery")
    term = Terminal(person, "init", "--kdf", "interactive")
    term.expect("Passphrase:")
    term.type(person.passphrase)
    term.expect("again:")
    term.type(person.passphrase)
    assert term.finish() == 0
    assert "Created a new identity" in term.screen
    assert person.passphrase not in term.screen
    assert person.run("whoami", "--json").json()["handle"] is None  # the typed one opens it


def test_mismatched_passphrases_create_nothing(tmp_path: Path) -> None:
    person = Person(tmp_path, "erin")
    term = Terminal(person, "init", "--kdf", "interactive")
    term.expect("Passphrase:")
    term.type("first version of it")
    term.expect("again:")
    term.type("second version of it")
    assert term.finish() == 2
    assert "differ" in term.screen
    assert not (person.profile / "keystore").exists()


def test_a_terminal_gets_a_table_and_a_prompted_passphrase(pair: tuple[Person, Person]) -> None:
    alice, bob = pair
    alice.run("send", "bob", "for the table")
    term = Terminal(bob, "inbox")
    term.expect("Passphrase:")
    term.type(bob.passphrase)
    assert term.finish() == 0
    assert "sealed messages" in term.screen
    assert "┃" in term.screen or "│" in term.screen  # a rich table, not piped lines
    assert "\x1b[" in term.screen  # with colour and style
    assert "for the table" not in term.screen
