"""The layering rules, checked on the source with ``ast``.

``e2e_recall`` is sans-IO: no network, event loop, database or clock reads,
and it imports neither ``relay`` nor ``client``.  Randomness comes in as an
``rng=`` argument whose default lives in ``e2e_recall/randomness.py``; no
other module reaches for ``os.urandom``, ``secrets``, ``random`` or
libsodium's ``randombytes`` itself, so every output can be reproduced by
passing a seeded source.  ``relay`` and ``client`` never import each other.
The checkers themselves are tested on snippets so a broken checker cannot
pass vacuously.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "e2e_recall"

FORBIDDEN_IN_LIBRARY = frozenset(
    {
        "aiohttp",
        "asyncio",
        "socket",
        "sqlite3",
        "asyncpg",
        "http",
        "requests",
        "urllib",
        "relay",
        "client",
    }
)
CLOCK_CALLS = frozenset(
    {
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.monotonic_ns",
        "time.perf_counter",
        "time.perf_counter_ns",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
    }
)
# Receiver names that mean a clock read even if the import could not be resolved.
_CLOCK_ATTRIBUTES = {"time": {"time", "monotonic"}, "datetime": {"now", "utcnow", "today"}}


def _package_parts(path: Path, root: Path) -> list[str]:
    # For a module and for a package's __init__ alike, the package is the directory.
    return list(path.relative_to(root).parts[:-1])


def _resolve_from(node: ast.ImportFrom, package: list[str]) -> list[str]:
    """Absolute dotted names of the modules an ``ImportFrom`` may load."""
    if node.level == 0:
        base: list[str] = []
    else:
        keep = len(package) - (node.level - 1)
        # A relative import that climbs above the root is still an import of
        # whatever lives there; treat the climb as reaching the top level.
        base = package[: max(keep, 0)]
    if node.module:
        module = [*base, *node.module.split(".")]
        # ``from pkg import name`` may import the submodule ``pkg.name``.
        return [".".join(module)] + [".".join([*module, a.name]) for a in node.names]
    return [".".join([*base, alias.name]) for alias in node.names]


def imported_modules(source: str, path: Path, root: Path = ROOT) -> set[str]:
    """Every absolute module name ``source`` (the file at ``path``) imports."""
    tree = ast.parse(source, filename=str(path))
    package = _package_parts(path, root)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve_from(node, package))
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) in {"importlib.import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def clock_reads(source: str, path: Path) -> list[str]:
    """The clock-reading calls in ``source``, with aliases resolved."""
    tree = ast.parse(source, filename=str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        resolved = (
            f"{aliases[head]}.{rest}" if head in aliases and rest else aliases.get(head, name)
        )
        if resolved in CLOCK_CALLS:
            hits.append(f"{path.name}:{node.lineno} {name}()")
            continue
        receiver, _, attr = name.rpartition(".")
        last = receiver.rpartition(".")[2]
        if attr in _CLOCK_ATTRIBUTES.get(last, ()):
            hits.append(f"{path.name}:{node.lineno} {name}()")
    return hits


RANDOM_MODULES = frozenset({"random", "secrets", "nacl.utils"})
RANDOM_NAMES = frozenset({"os.urandom", "os.getrandom", "nacl.utils.random"})
RANDOM_PREFIXES = ("nacl.bindings.randombytes",)
RANDOMNESS_MODULE = LIBRARY / "randomness.py"


def _is_random_name(name: str) -> bool:
    return (
        name in RANDOM_NAMES
        or name in RANDOM_MODULES
        or name.split(".")[0] in RANDOM_MODULES
        or name.rpartition(".")[0] in RANDOM_MODULES
        or name.startswith(RANDOM_PREFIXES)
    )


def randomness_reads(source: str, path: Path) -> list[str]:
    """Direct uses of an OS or library random source in ``source``, aliases resolved.

    Imports of ``random``, ``secrets`` or ``nacl.utils`` count wherever they
    are; so does naming ``os.urandom``, ``os.getrandom`` or libsodium's
    ``randombytes*`` (a reference such as ``rng = os.urandom`` as much as a
    call).  A local variable that happens to be called ``secrets`` does not.
    """
    tree = ast.parse(source, filename=str(path))
    aliases: dict[str, str] = {}
    hits: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                if _is_random_name(alias.name):
                    hits.append(f"{path.name}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if _is_random_name(full):
                    hits.append(f"{path.name}:{node.lineno} from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = _dotted(node)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        if head in aliases and _is_random_name(f"{aliases[head]}.{rest}"):
            hits.append(f"{path.name}:{node.lineno} {name}")
    return hits


def _top(module: str) -> str:
    return module.split(".")[0]


def _python_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def library_files() -> list[Path]:
    return _python_files(LIBRARY)


# -- the checker works -------------------------------------------------------

FAKE = LIBRARY / "fake_module.py"
FAKE_SUB = LIBRARY / "vectors" / "fake_module.py"


@pytest.mark.parametrize(
    ("source", "path", "module"),
    [
        ("import asyncio", FAKE, "asyncio"),
        ("import socket as s", FAKE, "socket"),
        ("import urllib.request", FAKE, "urllib"),
        ("from http import client", FAKE, "http"),
        ("from sqlite3 import connect", FAKE, "sqlite3"),
        ("from relay.app import make_app", FAKE, "relay"),
        ("from .. import relay", FAKE, "relay"),
        ("from ...client import cli", FAKE_SUB, "client"),
        ("import importlib\nimportlib.import_module('aiohttp')", FAKE, "aiohttp"),
        ("def f():\n    import requests\n", FAKE, "requests"),
    ],
)
def test_checker_sees_forbidden_imports(source: str, path: Path, module: str) -> None:
    assert module in {_top(m) for m in imported_modules(source, path)}


@pytest.mark.parametrize(
    "source",
    [
        "import time\ntime.time()",
        "import time as t\nt.monotonic()",
        "from time import monotonic\nmonotonic()",
        "from time import time as now\nnow()",
        "import datetime\ndatetime.datetime.now()",
        "from datetime import datetime\ndatetime.utcnow()",
        "from datetime import datetime as dt\ndt.today()",
        "from datetime import date\ndate.today()",
        "datetime.now(tz=UTC)",
    ],
)
def test_checker_sees_clock_reads(source: str) -> None:
    assert clock_reads(source, FAKE)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime\ndatetime.fromtimestamp(0, tz=UTC)",
        "import hashlib\nhashlib.sha256(b'').digest()",
        "from .wire import decode\ndecode(b'')",
        "def time(x):\n    return x\ntime(3)",
    ],
)
def test_checker_allows_pure_code(source: str) -> None:
    modules = {_top(m) for m in imported_modules(source, FAKE)}
    assert not modules & FORBIDDEN_IN_LIBRARY
    assert clock_reads(source, FAKE) == []


@pytest.mark.parametrize(
    "source",
    [
        "import os\nos.urandom(16)",
        "import os\nrng = os.urandom",
        "import os as o\no.urandom(3)",
        "import os\nos.getrandom(4)",
        "from os import urandom\nurandom(2)",
        "from os import getrandom as g",
        "import secrets\nsecrets.token_bytes(16)",
        "from secrets import token_bytes",
        "import random\nrandom.randbytes(4)",
        "from random import SystemRandom",
        "def f():\n    import random\n",
        "import nacl.utils\nnacl.utils.random(16)",
        "import nacl.utils",
        "from nacl.utils import random as r",
        "import nacl.bindings as sodium\nsodium.randombytes(8)",
        "from nacl.bindings import randombytes_buf_deterministic",
    ],
)
def test_checker_sees_randomness_reads(source: str) -> None:
    assert randomness_reads(source, FAKE)


@pytest.mark.parametrize(
    "source",
    [
        "import os\nos.path.join('a', 'b')",
        "from .randomness import system_random\nsystem_random(16)",
        "def f(secrets):\n    return secrets.device_id",
        "import nacl.bindings as sodium\nsodium.crypto_sign(b'', b'')",
        "import hashlib\nhashlib.sha256(b'').digest()",
    ],
)
def test_checker_allows_passed_in_randomness(source: str) -> None:
    assert randomness_reads(source, FAKE) == []


def test_relative_imports_resolve_inside_the_package() -> None:
    modules = imported_modules("from .wire import decode\nfrom . import errors", FAKE)
    assert "e2e_recall.wire" in modules
    assert "e2e_recall.errors" in modules
    assert "e2e_recall.wire.decode" in modules


# -- the rules hold ----------------------------------------------------------


def test_library_files_are_found() -> None:
    names = {p.relative_to(LIBRARY).as_posix() for p in library_files()}
    expected = {
        "__init__.py",
        "body.py",
        "device.py",
        "envelope.py",
        "errors.py",
        "identity.py",
        "keyfile.py",
        "recall_rules.py",
        "receipts.py",
        "report.py",
        "revocation.py",
        "schema.py",
        "signing.py",
        "wire.py",
        "wrapping.py",
    }
    assert expected <= names


@pytest.mark.parametrize("path", library_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_module_is_sans_io(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    forbidden = sorted(m for m in imported_modules(source, path) if _top(m) in FORBIDDEN_IN_LIBRARY)
    assert forbidden == [], f"{path} imports {forbidden}"
    assert clock_reads(source, path) == [], f"{path} reads the clock"


@pytest.mark.parametrize("path", library_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_module_takes_its_randomness_as_an_argument(path: Path) -> None:
    if path == RANDOMNESS_MODULE:
        return
    hits = randomness_reads(path.read_text(encoding="utf-8"), path)
    assert hits == [], f"{path} draws randomness itself instead of taking rng=: {hits}"


def test_the_one_default_source_is_where_it_is_said_to_be() -> None:
    """randomness.py is the exception above, and it does use the OS source."""
    assert randomness_reads(RANDOMNESS_MODULE.read_text(encoding="utf-8"), RANDOMNESS_MODULE)


# DESIGN.md lets the demo start a relay in-process through its public app
# factory, and nothing else of relay/: this is that one exception, named.
DEMO_MAY_IMPORT = {
    "relay.app",
    "relay.app.create_app",
    "relay.config",
    "relay.config.load_config",
}


def _allowed(path: Path, module: str) -> bool:
    return path == ROOT / "client" / "demo.py" and module in DEMO_MAY_IMPORT


@pytest.mark.parametrize(("layer", "forbidden"), [("relay", "client"), ("client", "relay")])
def test_relay_and_client_stay_apart(layer: str, forbidden: str) -> None:
    files = _python_files(ROOT / layer)
    assert files, f"{layer}/ has no Python files"
    for path in files:
        modules = imported_modules(path.read_text(encoding="utf-8"), path)
        bad = sorted(m for m in modules if _top(m) == forbidden and not _allowed(path, m))
        assert bad == [], f"{path} imports {bad}"


def test_only_the_demo_reaches_into_the_relay() -> None:
    """The exception above is used, and is the only way client/ touches relay/."""
    demo = ROOT / "client" / "demo.py"
    modules = imported_modules(demo.read_text(encoding="utf-8"), demo)
    relay_modules = {m for m in modules if _top(m) == "relay"}
    assert relay_modules, "the demo no longer starts a relay; drop DEMO_MAY_IMPORT"
    assert relay_modules <= DEMO_MAY_IMPORT
