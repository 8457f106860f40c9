"""The two ways a bench run ends early, each shown to the operator as one sentence.

The command line never shows a traceback: every failure the bench expects is
one of these, and :mod:`.cli` turns it into a line on stderr and an exit code
(the codes of ``e2e-recall-relay``: 1 the command failed, 2 bad usage).
"""

from __future__ import annotations

__all__ = ["BenchError", "BenchFailed", "BenchUsageError"]


class BenchError(Exception):
    """Something the operator should read as one sentence; ``exit_code`` says which kind."""

    exit_code = 1


class BenchUsageError(BenchError):
    """An option is invalid, or asks for something this installation cannot do."""

    exit_code = 2


class BenchFailed(BenchError):
    """The run could not be carried out: the relay did not start, or did not answer."""

    exit_code = 1
