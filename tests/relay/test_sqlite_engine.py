"""The SQLite engine's shutdown: it waits for reads in flight and refuses later ones.

A relay that stops while a read runs in the reader pool (a request cancelled
mid-read leaves its thread running) used to close that connection under the
reading thread, which crashed the whole process with a segmentation fault.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from relay.storage.base import StorageError
from relay.storage.sqlite_engine import SqliteEngine


async def test_stop_waits_for_a_read_in_flight_and_later_reads_fail_cleanly(
    tmp_path: Path,
) -> None:
    engine = SqliteEngine(tmp_path / "relay.db")
    engine.start()
    reading = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        reading.set()
        time.sleep(0.3)  # stop() is called meanwhile, from the loop's thread
        return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])

    read = asyncio.ensure_future(engine.read(slow_read))
    assert await asyncio.to_thread(reading.wait, 5)
    started = time.perf_counter()
    engine.stop()
    assert time.perf_counter() - started > 0.1  # it waited for the reader to come back
    assert await read == 0  # and the read finished on an open connection
    for _ in range(2):  # every late read, not only the first, is refused
        with pytest.raises(StorageError, match="closed"):
            await engine.read(lambda conn: conn.execute("SELECT 1").fetchone())
