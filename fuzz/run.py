#!/usr/bin/env python3
"""Run one fuzz target: ``python fuzz/run.py TARGET --runs N`` (or ``--replay``).

Coverage-guided with atheris (libFuzzer) over the e2e_recall and relay
packages, starting from the saved corpus in fuzz/corpus/TARGET.  An input
that raises anything outside the package's error hierarchy is a crash: it is
saved under fuzz/crashes/ and counted, and fuzzing goes on.  At the end one
line says ``TARGET: N executions, C crashes, slowest S ms``; the exit status
is 1 if C is not zero.  ``--replay`` runs only the saved corpus, with no
fuzzer, as CI does on every change.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
INSTRUMENTED = [
    "e2e_recall",
    "relay",
    "targets",
    "handler_target",
    "group_target",
    "device_target",
]
MAX_LEN = {"file_decryptor": 140_000}  # a blob of three chunks; every other target: 8192


class Stats:
    """What one run did, printed as one line at the end."""

    def __init__(self, name: str, runs: int) -> None:
        self.name = name
        self.runs = runs
        self.executions = 0
        self.crashes = 0
        self.slowest = 0.0
        self.slowest_size = 0
        self.started = time.monotonic()

    def line(self) -> str:
        rate = self.executions / max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.name}: {self.executions} executions, {self.crashes} crashes, "
            f"slowest {self.slowest * 1000:.1f} ms ({self.slowest_size} bytes), "
            f"{rate:.0f} exec/s"
        )


def _guarded(
    target: Callable[[bytes], None], stats: Stats, crash_dir: Path
) -> Callable[[bytes], None]:
    def one(data: bytes) -> None:
        started = time.perf_counter()
        try:
            target(data)
        except Exception:  # the point: anything escaping the hierarchy is recorded
            stats.crashes += 1
            crash_dir.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(data).hexdigest()[:16]
            (crash_dir / f"{stats.name}-{name}.bin").write_bytes(data)
            (crash_dir / f"{stats.name}-{name}.txt").write_text(traceback.format_exc())
        elapsed = time.perf_counter() - started
        if elapsed > stats.slowest:
            stats.slowest, stats.slowest_size = elapsed, len(data)
        stats.executions += 1
        if stats.runs and stats.executions >= stats.runs:
            print(stats.line(), flush=True)
            _clean_scratch()  # os._exit skips every finaliser, so tidy up first
            os._exit(1 if stats.crashes else 0)  # libFuzzer would keep going

    return one


SCRATCH_ENV = "E2E_RECALL_FUZZ_SCRATCH"


def _scratch() -> Path:
    """One temporary directory per run for the corpus copy and the targets' own files.

    Targets put what they create (the handler target's relay data) under
    ``$E2E_RECALL_FUZZ_SCRATCH``, so a run that ends through ``os._exit``
    still leaves nothing in /tmp.
    """
    if not os.environ.get(SCRATCH_ENV):
        os.environ[SCRATCH_ENV] = tempfile.mkdtemp(prefix="fuzz-run-")
    return Path(os.environ[SCRATCH_ENV])


def _clean_scratch() -> None:
    where = os.environ.get(SCRATCH_ENV)
    if where:
        shutil.rmtree(where, ignore_errors=True)


def replay(name: str, target: Callable[[bytes], None]) -> Stats:
    stats = Stats(name, 0)
    one = _guarded(target, stats, CRASHES)
    for path in sorted((CORPUS / name).glob("*")):
        one(path.read_bytes())
    return stats


_CHILD = "E2E_RECALL_FUZZ_TARGET"  # set when libFuzzer runs this file again (merge)


def _child() -> int:
    """libFuzzer's merge starts this script again with its own flags: obey them."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=INSTRUMENTED):
        import device_target  # noqa: F401  (imported here so that they are instrumented)
        import group_target  # noqa: F401
        from targets import TARGETS
    atheris.Setup(sys.argv, TARGETS[os.environ[_CHILD]])
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(_CHILD):
        return _child()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--replay", action="store_true", help="run the saved corpus only")
    parser.add_argument(
        "--max-len", type=int, help="longest input (default 8192, larger for blobs)"
    )
    parser.add_argument(
        "--keep-corpus", action="store_true", help="add new inputs to fuzz/corpus (else a copy)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="DIR",
        help="replace fuzz/corpus/TARGET by the smallest subset of DIR with the same coverage",
    )
    args = parser.parse_args(argv)
    args.max_len = args.max_len or MAX_LEN.get(args.target, 8192)
    sys.path.insert(0, str(HERE))
    if args.replay:
        from targets import TARGETS

        stats = replay(args.target, TARGETS[args.target])
        print(stats.line())
        return 1 if stats.crashes else 0
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        import device_target  # noqa: F401  (imported here so that they are instrumented)
        import group_target  # noqa: F401
        from targets import TARGETS
    if args.target not in TARGETS:
        parser.error(f"no target {args.target!r}; choose from {', '.join(TARGETS)}")
    seeds = CORPUS / args.target
    if args.merge:
        shutil.rmtree(seeds, ignore_errors=True)
        seeds.mkdir(parents=True)
        os.environ[_CHILD] = args.target
        atheris.Setup(
            [
                str(Path(__file__).resolve()),
                "-merge=1",
                str(seeds),
                str(args.merge),
                f"-max_len={args.max_len}",
            ],
            TARGETS[args.target],
        )
        atheris.Fuzz()
        return 0
    work = seeds if args.keep_corpus else _scratch() / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    if not args.keep_corpus and seeds.exists():
        shutil.copytree(seeds, work, dirs_exist_ok=True)
    stats = Stats(args.target, args.runs)
    corpus_size = len(list(work.glob("*")))
    atheris.Setup(
        [
            sys.argv[0],
            str(work),
            f"-runs={args.runs + corpus_size + 1000}",
            f"-max_len={args.max_len}",
            "-print_final_stats=0",
        ],
        _guarded(TARGETS[args.target], stats, CRASHES),
    )
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
