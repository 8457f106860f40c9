"""The remanence suite, short: recalled ciphertexts and wraps leave no 16-byte trace.

``python reliability/remanence.py --messages 1000`` runs the long version.
"""

from __future__ import annotations

from pathlib import Path

from remanence_harness import remanence_suite


async def test_recalled_messages_leave_no_window_in_anything_the_relay_keeps(
    tmp_path: Path,
) -> None:
    findings = await remanence_suite(tmp_path, count=60)
    assert findings.hits_before_recall > 0  # the scan can see them while they are there
    assert findings.hits_after == []
    names = {Path(f).name for f in findings.files_scanned}
    assert {"relay.db", "stderr"} <= names
    assert findings.bytes_scanned > 0
