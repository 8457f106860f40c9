"""``e2e-recall-vectors``: regenerate the test vectors, or check a directory of them.

    e2e-recall-vectors generate [--seed SEED] [--out DIR]
    e2e-recall-vectors check [DIR] [--backend impl|alt|both] [--verbose]

``check`` prints ``N passed, N failed`` per backend and exits 1 if anything
failed, so it can be pointed at any copy of the vectors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .check import CheckReport, check_directory
from .check_alt import run_alt
from .generate import DEFAULT_SEED, write

__all__ = ["main"]

DEFAULT_DIR = Path("tests/vectors")


def _print_report(name: str, report: CheckReport, verbose: bool) -> None:
    for failure in report.failures if verbose else report.failures[:20]:
        print(f"  FAIL {failure}")
    print(f"{name}: {report.passed} passed, {report.failed} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="e2e-recall-vectors", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="rebuild every vector file from a seed")
    gen.add_argument("--seed", default=DEFAULT_SEED, help="seed for every key, id and nonce")
    gen.add_argument(
        "--out", type=Path, default=DEFAULT_DIR, help="directory to write (default: %(default)s)"
    )
    chk = commands.add_parser("check", help="check a directory of vector files")
    chk.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    chk.add_argument(
        "--backend",
        choices=("impl", "alt", "both"),
        default="both",
        help="impl: this implementation; alt: the other crypto library; both (default)",
    )
    chk.add_argument("--verbose", action="store_true", help="list every failure")
    args = parser.parse_args(argv)

    if args.command == "generate":
        files = write(args.out, args.seed)
        print(f"wrote {len(files)} files to {args.out}")
        return 0
    if not args.directory.is_dir() or not any(args.directory.glob("*.json")):
        print(f"e2e-recall-vectors: no vector files in {args.directory}", file=sys.stderr)
        return 2
    failed = 0
    if args.backend in ("impl", "both"):
        report = check_directory(args.directory)
        _print_report("implementation", report, args.verbose)
        failed += report.failed
    if args.backend in ("alt", "both"):
        report = check_directory(args.directory, run_alt, only_applicable=True)
        _print_report(
            "other library (OpenSSL Ed25519, reference HPKE over libsodium X25519)",
            report,
            args.verbose,
        )
        failed += report.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
