"""The ``--json`` shapes ``e2e-recall --help`` documents, and a check that output has them."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from typing import Any

from cli_harness import console_script


def _bracketed(text: str) -> str:
    """The leading ``{...}`` or ``[...]`` of ``text`` (what follows it is prose)."""
    depth = 0
    for index, char in enumerate(text):
        depth += char in "{["
        depth -= char in "}]"
        if depth == 0:
            return text[: index + 1]
    raise AssertionError(f"unbalanced: {text!r}")


def _shape(spec: str) -> Any:
    """``{a, b: [{c}]}`` as ``{"a": None, "b": [{"c": None}]}``."""
    quoted = re.sub(r"([a-z_][a-z0-9_]*)\s*:", r'"\1":', spec)
    quoted = re.sub(r"([{,]\s*)([a-z_][a-z0-9_]*)(?=\s*[,}])", r'\1"\2": null', quoted)
    return json.loads(quoted)


@cache
def documented() -> dict[str, Any]:
    """Command name -> documented shape, from the JSON section of ``--help``."""
    listing = subprocess.run(
        [str(console_script()), "--help"], capture_output=True, text=True, check=True
    ).stdout
    section = listing.split("JSON (--json)", 1)[1].split("\n\n", 1)[0]
    entries: list[list[str]] = []
    for line in section.splitlines():
        entry = re.match(r"^  (\S.*?)  +(\S.*)$", line)
        if entry and not line.startswith("    "):
            entries.append([entry[1], entry[2]])
        elif entries and line.startswith("    "):
            entries[-1][1] += " " + line.strip()
    shapes = {}
    for names, spec in entries:
        for name in names.split(","):
            shapes[name.strip()] = _shape(_bracketed(spec))
    return shapes


def _check(shape: Any, value: Any, where: str) -> None:
    """``value`` has the documented keys, no more and no fewer, nested where documented."""
    if shape is None:
        return
    if isinstance(shape, list):
        assert isinstance(value, list), where
        for item in value:
            _check(shape[0], item, where + "[]")
        return
    assert isinstance(value, dict), where
    assert sorted(value) == sorted(shape), where
    for key, inner in shape.items():
        _check(inner, value[key], f"{where}.{key}")


def conforms(command: str, value: Any) -> None:
    _check(documented()[command], value, command)
