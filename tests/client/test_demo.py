"""``e2e-recall demo``, README's main job, as a fresh user runs it; and command coverage."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from cli_harness import console_script

TESTS = Path(__file__).parent


def _demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL")}
    env.update(COLUMNS="400", NO_COLOR="1", XDG_DATA_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path))
    return subprocess.run(
        [str(console_script()), "demo"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_the_demo_tells_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    out = done.stdout
    scenes = re.findall(r"^─+ (\d+)\. (.+?) ─+$", out, flags=re.MULTILINE)
    assert [int(number) for number, _ in scenes] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert re.search(r"A relay is running at http://127\.0\.0\.1:\d+", out)
    # One scene per situation, each with the report a user would see.
    for sentence in (
        "Never delivered: recalled before this device fetched anything",
        "Delivered but sealed: the device had the ciphertext but never the key",
        "so it was possibly already read, copied or screenshotted",
        "Dinner tomorrow at 7?  (corrected)",
        "Recall refused: The recall window closed at",
        "What Alice can still do: send a follow-up correction",
        "Pending: opened at",
        "will delete it when it reconnects",
        "Deleted: the device signed a deletion receipt",
        "The relay signed a purge receipt; its signature checks out.",
        "Device receipt: signature verified.",
        "The relay destroyed its 1 attached file(s).",
        "It had not downloaded the attached file(s).",
        # The group scene: one recall reaches every member, reported member by member.
        "to group trip",
        "Devices: 1 never delivered, 2 deleted (3 in all).",
        "  bob (2 devices): 2 deleted",
        "  carol (1 device): 1 never delivered",
        "Carol's group: nothing.",
    ):
        assert sentence in out, sentence
    # A recipient who never received the first message sees nothing of it.
    assert "Bob's laptop: conversation with alice: nothing." in out


def test_the_demo_leaves_nothing_behind(tmp_path: Path) -> None:
    assert _demo(tmp_path).returncode == 0
    assert not (tmp_path / "xdg").exists()  # its profiles and relay lived in a temporary dir


def test_every_cli_command_is_exercised_by_these_tests() -> None:
    """Each subcommand in ``e2e-recall --help`` is run by at least one test here."""
    listing = subprocess.run(
        [str(console_script()), "--help"], capture_output=True, text=True, check=True
    ).stdout
    commands = set(re.findall(r"^    ([a-z]+) {2,}", listing, flags=re.MULTILINE))
    assert {"init", "register", "send", "recall", "report", "watch", "demo"} <= commands
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py"))
    missing = sorted(c for c in commands if not re.search(rf'[(\[ ]"{c}"[,)\]]', sources))
    assert missing == []
    for action in ("add", "list", "verify", "accept", "remove"):
        assert f'"contacts", "{action}"' in sources, action
    for action in ("create", "add", "remove", "leave", "list", "rename"):
        assert f'"group", "{action}"' in sources, action
