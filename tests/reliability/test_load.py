"""The load suite, short: a few dozen devices on WebSockets for a few seconds.

``python reliability/load.py --clients 1000 --seconds 300`` is the long run.
"""

from __future__ import annotations

from pathlib import Path

from load_harness import LoadConfig, load_suite


async def test_a_steady_mix_on_websockets_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    findings = await load_suite(
        tmp_path, LoadConfig(clients=40, seconds=6, send_interval=1.0, seed=3)
    )
    assert findings.connected == 40
    assert findings.server_errors == []
    assert findings.lost == []
    assert findings.duplicates == []
    assert findings.operations["send"] > 100
    assert findings.operations["open"] > 20
    assert findings.operations["recall"] > 10
    assert len(findings.recall_to_deletion_ms) > 10  # recalls reached online devices
    assert findings.percentiles()["p50"] > 0
