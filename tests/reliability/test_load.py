"""The load suite, short: a few dozen devices on WebSockets for a few seconds.

``python reliability/load.py --clients 1000 --seconds 300`` is the long run
(``--postgres [--processes N]`` for PostgreSQL).  On PostgreSQL it runs
smaller (the database costs about three times the relay CPU per send, and CI
has two cores), once with one relay process and once with two on one
database, where most pushes and recalls cross from one process to the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from backends import BACKENDS

from load_harness import LoadConfig, LoadFindings, load_suite


def _nothing_lost(findings: LoadFindings, clients: int) -> None:
    assert findings.connected == clients
    assert findings.server_errors == []
    assert findings.lost == []
    assert findings.duplicates == []
    assert findings.out_of_order == []


async def test_a_steady_mix_on_websockets_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    findings = await load_suite(
        tmp_path, LoadConfig(clients=40, seconds=6, send_interval=1.0, seed=3)
    )
    _nothing_lost(findings, 40)
    assert findings.operations["send"] > 100
    assert findings.operations["open"] > 20
    assert findings.operations["recall"] > 10
    assert len(findings.recall_to_deletion_ms) > 10  # recalls reached online devices
    assert findings.percentiles()["p50"] > 0


@pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="E2E_RECALL_TEST_BACKENDS has no postgresql"
)
@pytest.mark.parametrize("processes", [1, 2])
async def test_the_mix_on_postgresql_loses_and_duplicates_nothing(
    tmp_path: Path, processes: int
) -> None:
    config = LoadConfig(
        clients=20, seconds=4, send_interval=1.0, seed=5, backend="postgresql", processes=processes
    )
    findings = await load_suite(tmp_path, config)
    _nothing_lost(findings, 20)
    assert findings.operations["send"] > 40
    assert findings.operations["open"] > 10
    assert findings.operations["recall"] > 4
    assert len(findings.recall_to_deletion_ms) > 4
    assert findings.percentiles()["p50"] > 0
    crossed = findings.operations["notice across processes"]  # pushed by the other process
    recalled = findings.operations["recall across processes"]
    assert (crossed > 15 and recalled > 1) if processes > 1 else crossed == recalled == 0
