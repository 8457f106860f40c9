"""The fuzz targets, short: the saved corpus replayed, and a short coverage-guided run each.

``python fuzz/run.py TARGET --runs 1000000`` is the long run recorded in
docs/reliability.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent.parent / "fuzz"
TARGETS = [
    "wire_codec",
    "envelope",
    "revocation",
    "certificate",
    "receipts",
    "unwrap",
    "file_decryptor",
    "body",
    "handlers",
    "group_change",
    "devices",
]
LINE = re.compile(r"^(\w+): (\d+) executions, (\d+) crashes, slowest ")


def _run(*args: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = [m for line in done.stdout.splitlines() if (m := LINE.match(line))]
    assert found, done.stdout + done.stderr
    executions, crashes = int(found[-1][2]), int(found[-1][3])
    assert done.returncode == (1 if crashes else 0), done.stderr[-2000:]
    return executions, crashes


def test_every_target_has_a_saved_corpus() -> None:
    sys.path.insert(0, str(FUZZ))
    from targets import TARGETS as DEFINED

    assert sorted(DEFINED) == sorted(TARGETS)
    for name in TARGETS:
        assert len(list((FUZZ / "corpus" / name).iterdir())) >= 5, name


@pytest.mark.parametrize("target", TARGETS)
def test_the_saved_corpus_replays_without_a_crash(target: str) -> None:
    executions, crashes = _run(target, "--replay")
    assert executions >= 5
    assert crashes == 0


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_fuzzing_run_finds_no_crash(target: str) -> None:
    executions, crashes = _run(target, "--runs", "3000")
    assert executions == 3000
    assert crashes == 0


def test_a_crash_is_caught_counted_and_saved(tmp_path: Path) -> None:
    """The runner itself: an input that escapes the hierarchy is a counted, saved crash."""
    sys.path.insert(0, str(FUZZ))
    import run

    def fragile(data: bytes) -> None:
        if data.startswith(b"boom"):
            raise KeyError("escaped")

    stats = run.Stats("fragile", 0)
    guarded = run._guarded(fragile, stats, tmp_path)
    for data in (b"fine", b"boom!", b"also fine"):
        guarded(data)
    assert stats.executions == 3
    assert stats.crashes == 1
    saved = sorted(p.suffix for p in tmp_path.iterdir())
    assert saved == [".bin", ".txt"]
    assert "KeyError" in next(tmp_path.glob("*.txt")).read_text()
