"""README's two commands stay true: CI runs README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_gives_exactly_two_commands() -> None:
    assert len(_readme_commands()) == 2


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_first_command_runs_the_demo() -> None:
    first = _readme_commands()[0]
    assert first == "pip install . && e2e-recall demo"
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'e2e-recall = "client.cli:main"' in scripts


def test_readme_links_the_docs() -> None:
    text = (ROOT / "README.md").read_text()
    for doc in ("docs/protocol.md", "docs/threat-model.md", "docs/operators.md"):
        assert f"]({doc})" in text
        assert (ROOT / doc).is_file()


def test_the_readme_library_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)\n```", text, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md", "exec"), {})  # the example asserts its own result
    out = capsys.readouterr().out
    assert "possibly already read, copied or screenshotted" in out
