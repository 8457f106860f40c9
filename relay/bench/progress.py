"""What the operator watches during a run: a rich progress bar on a terminal, plain lines elsewhere.

On a terminal the bar shows each timed phase (the relay run, each
baseline) with its elapsed time and the operations and errors so far.
When stdout is not a terminal (a pipe, a file, CI) there is no bar: a line
per step goes to stderr, so stdout holds only the figures (or the JSON).
"""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

__all__ = ["Display", "PlainDisplay", "RichDisplay", "display_for"]


class Display(Protocol):
    """Where the runner says what it is doing."""

    def step(self, text: str) -> None:
        """A set-up step (starting the relay, registering users)."""

    def begin(self, label: str, seconds: float) -> None:
        """A timed phase starts."""

    def update(self, elapsed: float, counts: dict[str, int]) -> None:
        """The phase is ``elapsed`` seconds in; ``counts`` are its operations so far."""

    def end(self) -> None:
        """The phase is over (its answers drained)."""


def _summary(counts: dict[str, int]) -> str:
    errors = counts.get("errors", 0)
    shown = ", ".join(f"{kind} {n:,}" for kind, n in counts.items() if kind != "errors")
    return f"{shown or 'starting'}; errors {errors:,}"


class PlainDisplay:
    """One line per step on stderr; nothing while a phase runs."""

    def __init__(self) -> None:
        self.label = ""
        self.counts: dict[str, int] = {}

    def step(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def begin(self, label: str, seconds: float) -> None:
        self.label, self.counts = label, {}
        self.step(f"{label}: running for {seconds:g} s")

    def update(self, elapsed: float, counts: dict[str, int]) -> None:
        self.counts = counts

    def end(self) -> None:
        self.step(f"{self.label}: done ({_summary(self.counts)})")


class RichDisplay:
    """A bar per timed phase, kept on screen afterwards as a record of the run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = self._bar()
        self.task: TaskID | None = None
        self.seconds = 0.0

    def _bar(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.console,
        )

    def step(self, text: str) -> None:
        self.console.print(f"[dim]bench:[/dim] {text}")

    def begin(self, label: str, seconds: float) -> None:
        self.seconds = seconds
        self.progress = self._bar()  # one per phase: a stopped bar stays on screen as it was
        self.progress.start()
        self.task = self.progress.add_task(label, total=seconds, counts="starting")

    def update(self, elapsed: float, counts: dict[str, int]) -> None:
        if self.task is not None:
            done = min(elapsed, self.seconds)
            self.progress.update(self.task, completed=done, counts=_summary(counts))

    def end(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.seconds)
        self.progress.stop()
        self.task = None


def display_for(json_output: bool) -> Display:
    """A bar when stdout is a terminal (drawn on stderr with --json, so stdout stays JSON)."""
    if not sys.stdout.isatty():
        return PlainDisplay()
    return RichDisplay(Console(stderr=json_output))
