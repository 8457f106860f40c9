"""``python -m relay.bench.files``: one file up to a relay of its own and back, measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_file_bench_moves_a_file_and_reports_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay.bench.files",
            "--size",
            "300KiB",
            "--json",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["file_bytes"] == 300 * 1024
    assert figures["blob_bytes"] > figures["file_bytes"]
    assert list(figures["steps"]) == ["encrypt", "upload", "download", "decrypt"]
    for step in figures["steps"].values():
        assert step["seconds"] > 0
        assert step["mib_per_second"] > 0
        assert step["relay_rss_growth_bytes"] >= 0
    assert figures["relay_peak_rss_bytes"] > 0
    assert list(tmp_path.iterdir()) == []  # its files and relay lived in a temporary directory


def test_a_size_that_is_not_one_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relay.bench.files", "--size", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "lots" in done.stderr
