"""The remanence suite, short: recalled ciphertexts, wraps and files leave no 16-byte trace.

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
    # Attachments: bound ones recalled with their message, abandoned ones expired; all were on
    # disk (and seen by the scan) before, and no file and no window of any of them is left.
    assert findings.blobs_bound > 40
    assert findings.blobs_abandoned > 10
    assert findings.blob_files_before == findings.blobs_bound + findings.blobs_abandoned
    assert findings.blob_hits_before_recall > findings.blob_bytes // 2
    assert findings.blob_files_after == 0
