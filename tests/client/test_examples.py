"""examples/group_recall.py runs as a plain script against a relay process, and says the truth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from relay_process import RelayProcess

ROOT = Path(__file__).parent.parent.parent


def test_the_group_recall_example_reports_each_member_honestly(relay: RelayProcess) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "group_recall.py"), relay.url()],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this tree's client, not an installed one
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert re.search(r"^bob linked his phone [0-9a-f]{8}: registered True$", out, re.M)
    assert "bob's devices: 2\n" in out
    (members,) = re.findall(r"^members: (.+)$", out, re.M)
    assert sorted(re.findall(r"(\w+) \((\d) devices?(, admin)?\)", members)) == [
        ("bob", "2", ""),
        ("carol", "1", ""),
        ("you", "1", ", admin"),
    ]
    assert "bob's laptop reads: leaving at 9, not 10\n" in out
    assert "report: recalled, relay receipt verified\n" in out
    assert "  carol: never_delivered\n" in out
    assert "  bob: deleted, deleted\n" in out
    opened = [line for line in out.splitlines() if "possibly already read" in line]
    assert len(opened) == 1  # only the laptop had the key; the phone never did
    assert "The key was never released to it" in out
    assert "leaving at 9" not in out.split("report:", 1)[1]  # the report never shows the text
