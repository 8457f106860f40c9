"""Progress bars for file transfers: name, bytes moved of total, speed, time left.

A 1 GiB upload takes long enough that a silent terminal looks hung.  The
bars go to standard error, so ``--json`` on standard output stays clean,
and only to a terminal: piped output gets one line per finished file
instead of redrawn bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .core import FileProgress
from .render import format_size

__all__ = ["transfer_progress"]


@contextmanager
def transfer_progress(
    console: Console, verb: str, *, enabled: bool = True
) -> Iterator[FileProgress | None]:
    """A :data:`FileProgress` for the duration of a command (``None`` when disabled)."""
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        yield _plain(console, verb)
        return
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )

    def start(name: str, total: int) -> Callable[[int], None]:
        task: TaskID = progress.add_task(f"{verb} {name}", total=total)
        return lambda moved: progress.advance(task, moved)

    with progress:
        yield start


def _plain(console: Console, verb: str) -> FileProgress:
    """For a pipe or a log: one line when a file has moved completely."""

    def start(name: str, total: int) -> Callable[[int], None]:
        done = 0

        def moved(count: int) -> None:
            nonlocal done
            before = done
            done += count
            if before < total <= done:
                console.print(f"{verb} {name}: {format_size(total)} done.", markup=False)

        return moved

    return start
