"""README's two commands stay true: CI runs README's test command verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_the_library_example_runs_on_its_own() -> None:
    """README points at examples/library_example.py; it must run as a plain script."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library_example.py")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"safety number: (\d{5} ){11}\d{5}", lines[0])
    assert re.fullmatch(r"envelope \d+ bytes, wrap 80 bytes", lines[1])
    assert lines[2] == "Bob reads: the launch code is 1234"
    states = [line.split(" -> ")[0].strip() for line in lines[3:7]]
    assert states == ["fetched", "key_released", "recalled", "deletion_receipt"]
    assert lines[4].split(" -> ")[1].startswith("Opened at ")
    assert "possibly already read, copied or screenshotted" in lines[4]
    assert lines[6].split(" -> ")[1].startswith("Deleted: the device signed a deletion receipt")
    assert lines[6].endswith(
        "(Attested by the device's signed receipt, and by the relay for the key.)"
    )
    assert lines[7] == "refused: The recall window closed at 2026-09-21 14:23:20 UTC."
    assert len(lines) == 8
