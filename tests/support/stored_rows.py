"""Reading what a relay stored, beneath its API, on either backend.

Tests that check the rows themselves (a purge left no ciphertext, a refused
send wrote nothing) name the relay's database by its SQLite file or its
PostgreSQL URL and ask the same SQL of both; ``?`` placeholders are
numbered for PostgreSQL here.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["contents", "count", "query"]


def _is_postgres(database: str | Path) -> bool:
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


async def query(database: str | Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of a read-only query on the relay's database (a SQLite file or a URL)."""
    if _is_postgres(database):
        numbers = itertools.count(1)
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        conn = await asyncpg.connect(str(database))
        try:
            return [tuple(row) for row in await conn.fetch(numbered, *params)]
        finally:
            await conn.close()
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return db.execute(sql, params).fetchall()


async def count(database: str | Path, sql: str, *params: Any) -> int:
    """The single number a ``SELECT count(*) ...`` answers."""
    return int((await query(database, sql, *params))[0][0])


async def contents(database: str | Path) -> bytes:
    """Everything the database holds, to search for what must never be (or no longer be) there.

    SQLite: the bytes of its files (the database, WAL and SHM).  PostgreSQL:
    every value of every row of the relay's tables; what the server's own
    files keep of deleted rows is the remanence suite's subject.
    """
    if not _is_postgres(database):
        path = Path(database)
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        return b"".join(p.read_bytes() for p in sorted(files))
    tables = await query(
        database, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    parts: list[bytes] = []
    for (table,) in tables:
        for row in await query(database, f'SELECT * FROM "{table}"'):
            for value in row:
                if isinstance(value, bytes):
                    parts.append(value)
                elif value is not None:
                    parts.append(str(value).encode())
    return b"\x00".join(parts)
