"""Test vectors: a deterministic generator and a checker, for any implementation.

``e2e-recall-vectors generate`` rebuilds ``tests/vectors`` from one seed;
``e2e-recall-vectors check DIR`` runs every vector against this
implementation and, independently, against the other crypto library.
"""

from __future__ import annotations

from .check import check_directory, run_test
from .check_alt import run_alt
from .generate import DEFAULT_SEED, generate, write

__all__ = ["DEFAULT_SEED", "check_directory", "generate", "run_alt", "run_test", "write"]
