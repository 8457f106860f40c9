"""Which database a relay *process* of the reliability suites runs on.

The relay's own tests (tests/relay/conftest.py) run in-process on both
backends; the reliability suites start ``serve`` as a subprocess, so here a
backend becomes command-line arguments: none for SQLite (the file in the data
directory), ``--database-url`` with a throwaway database for PostgreSQL.

``BACKENDS`` reads the same ``E2E_RECALL_TEST_BACKENDS`` as the relay's tests,
so one setting narrows a local run everywhere; CI runs both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest
from postgres import postgres_database

from relay_process import RelayProcess, free_port

__all__ = ["BACKENDS", "RelayPerBackend", "database_args", "on_backends", "on_both_backends"]

BACKENDS = os.environ.get("E2E_RECALL_TEST_BACKENDS", "sqlite,postgresql").split(",")

on_both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
"""For a test whose outcome depends on storage: run it on every backend.

It parametrises the ``backend`` fixture (tests/reliability/conftest.py), which is
SQLite for a test without it.  Function-scoped on purpose: a module-scoped
parameter makes pytest regroup the tests and restart relays between groups;
``RelayPerBackend`` keeps one relay per backend for the module instead.
"""


@contextlib.contextmanager
def database_args(backend: str) -> Iterator[list[str]]:
    """The ``serve`` arguments that put a relay on ``backend``; its database lives as long."""
    if backend == "sqlite":
        yield []
        return
    if backend != "postgresql":
        raise ValueError(f"no such backend {backend!r}: sqlite or postgresql")
    with postgres_database() as dsn:
        yield ["--database-url", dsn]


def on_backends(
    argname: str, everywhere: list[str], on_postgresql: list[str]
) -> pytest.MarkDecorator:
    """Parametrise ``argname`` over ``everywhere`` on SQLite, ``on_postgresql`` on PostgreSQL.

    For a parametrised attack whose storage-dependent part is the same for every
    value (one session lookup behind every route): all values on one backend,
    a representative few on the other, so CI does not pay for the product.
    """
    wanted = {"sqlite": everywhere, "postgresql": on_postgresql}
    cases = [
        pytest.param(value, backend, id=f"{value}-{backend}")
        for backend in BACKENDS
        for value in wanted[backend]
    ]
    return pytest.mark.parametrize((argname, "backend"), cases, indirect=["backend"])


class RelayPerBackend:
    """One relay process per backend, started when a test first asks for it.

    A module's attacks share a relay (starting one costs a second or two), and
    the tests of both backends interleave, so both stay up until ``close``:
    each relay is killed before its database is dropped.
    """

    def __init__(self, make: Callable[[str, list[str]], RelayProcess]) -> None:
        self._make = make
        self._stack = contextlib.ExitStack()
        self._started: dict[str, RelayProcess] = {}
        self._read: dict[str, int] = {}

    def get(self, backend: str) -> RelayProcess:
        if backend not in self._started:
            database = self._stack.enter_context(database_args(backend))
            process = self._make(backend, database)
            self._stack.callback(process.kill)
            self._started[backend] = process.start()
        return self._started[backend]

    def new_errors(self) -> list[str]:
        """The exceptions the relays logged since the last call: an attack must cause none.

        A 4xx the test sees could hide a traceback the operator sees (a failed
        push, a job that died), so the log is read too.
        """
        found = []
        for backend, process in self._started.items():
            entries = process.log_entries()
            found += [
                f"{backend}: {entry.get('event')}: {entry.get('message')}"
                for entry in entries[self._read.get(backend, 0) :]
                if entry.get("level") in ("error", "critical")
            ]
            self._read[backend] = len(entries)
        return found

    def __enter__(self) -> RelayPerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def relays_in(
    tmp_path_factory: pytest.TempPathFactory, prefix: str, **env: str
) -> Iterator[RelayPerBackend]:
    """A module's relays (body of its module-scoped fixture): own directories, ``env`` set."""

    def make(backend: str, database: list[str]) -> RelayProcess:
        work = tmp_path_factory.mktemp(f"{prefix}-{backend}")
        return RelayProcess(work, work / "data", *database, port=free_port(), **env)

    with RelayPerBackend(make) as started:
        yield started
