"""``e2e-recall-relay bench`` run as an operator runs it, for the bench's tests.

The command runs as a process of its own (``forked_commands``) with the
relay's own environment settings cleared (the bench decides the relay's
settings), and its JSON figures are read back; a traceback anywhere fails
the test, since every failure the bench expects must be one sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from forked_commands import run_command

__all__ = ["SMALL", "TIMEOUT", "assert_ordered", "bench", "bench_env", "figures_of"]

TIMEOUT = 90
SMALL = ("--users", "4", "--prepare", "100", "--drain", "3s")


def bench_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def bench(
    tmp_path: Path, *args: str | Path, timeout: float = TIMEOUT, **env: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "relay.cli", "bench", *map(str, args)]
    environment = bench_env(tmp_path, **env)
    result = run_command("relay.cli", argv, env=environment, cwd=tmp_path, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def figures_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert isinstance(figures, dict)
    return figures


def assert_ordered(latency: dict[str, float] | None, kind: str) -> None:
    assert latency is not None, f"no {kind} latency measured"
    assert latency["count"] > 0, kind
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], latency
