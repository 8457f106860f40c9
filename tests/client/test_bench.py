"""``e2e-recall bench``: the real command, its JSON, and what the figures must say of each other.

No timing thresholds here: a loaded test machine may be slow.  What must hold
on any machine is the shape (the keys ``--help`` documents), that every figure
is the median and p90 of the runs asked for, that the ratios are the ones
the medians give, and the orderings that follow from the work itself: a send
to more devices costs more, and a first send that verifies 256 certificates
costs more than one that finds them verified.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cli_harness import console_script

RUNS = 3
GROUPS = [2, 16, 64, 256]
PATHS = [("send", 1), ("receive", 1)] + [("group", n) for n in GROUPS]
PATHS += [("group_cold", n) for n in GROUPS]
TIMING = {"median_us", "p90_us", "runs", "batch"}


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(console_script()), "bench", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@cache
def report() -> dict[str, Any]:
    done = bench("--runs", str(RUNS), "--json")
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert isinstance(value, dict)
    return value


def _documented(command: str) -> Any:
    """The shape ``--help`` documents, read by the same parser as the other commands'."""
    path = Path(__file__).with_name("test_cli_json.py")
    spec = importlib.util.spec_from_file_location("cli_json_shapes", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.documented()[command], module._check


def test_the_json_has_the_documented_keys() -> None:
    shape, check = _documented("bench")
    check(shape, report(), "bench")
    assert report()["runs"] == RUNS
    assert report()["body_bytes"] == 1024
    machine = report()["machine"]
    assert machine["cores"] >= 1
    assert all(isinstance(machine[key], str) and machine[key] for key in machine if key != "cores")


def test_every_figure_for_both_suites_in_order() -> None:
    results = report()["results"]
    for suite in ("x25519", "xwing"):
        mine = [(r["path"], r["devices"]) for r in results if r["suite"] == suite]
        assert mine == PATHS, suite
    assert [r["suite"] for r in results] == ["x25519"] * len(PATHS) + ["xwing"] * len(PATHS)


def test_each_figure_is_a_median_and_p90_over_the_runs() -> None:
    for row in report()["results"]:
        for side in ("client", "bare"):
            timing = row[side]
            assert set(timing) == TIMING
            assert timing["runs"] == RUNS
            assert timing["batch"] >= 1
            assert 0 < timing["median_us"] <= timing["p90_us"]
        assert row["ratio"] == pytest.approx(
            row["client"]["median_us"] / row["bare"]["median_us"], abs=2e-3
        )
    for row in report()["primitives"]:
        assert set(row) == TIMING | {"name"}
        assert row["runs"] == RUNS
        assert 0 < row["median_us"] <= row["p90_us"]


def test_targets_are_attached_where_the_issue_sets_them() -> None:
    for row in report()["results"]:
        if row["path"] in ("send", "receive"):
            assert row["target"] == 1.3
            assert row["met"] is (row["ratio"] <= 1.3)
        elif row["path"] == "group" and row["devices"] == 256:
            assert row["target"] == 40.0
            assert row["met"] is (row["client"]["median_us"] < 40_000)
        else:
            assert row["target"] is None
            assert row["met"] is None


def test_more_devices_cost_more_and_a_cold_start_costs_more_still() -> None:
    results = report()["results"]
    for suite in ("x25519", "xwing"):
        for path in ("group", "group_cold"):
            rows = [r for r in results if r["suite"] == suite and r["path"] == path]
            assert [r["devices"] for r in rows] == GROUPS
            for side in ("client", "bare"):
                medians = [r[side]["median_us"] for r in rows]
                # Neighbours (4x the wraps) can swap on a loaded machine with 3 runs each;
                # 16x the wraps cannot: each size costs more than the one two steps down.
                for smaller, larger in zip(medians, medians[2:], strict=False):
                    assert smaller < larger, (suite, path, side, medians)
                assert medians[0] * 8 < medians[-1]  # 128 times the wraps: far more than noise
        by_path = {
            r["path"]: r for r in results if r["suite"] == suite and r["devices"] == GROUPS[-1]
        }
        warm, cold = by_path["group"], by_path["group_cold"]
        assert cold["client"]["median_us"] > warm["client"]["median_us"]
        assert cold["bare"] == warm["bare"]  # one bare figure serves both


def test_the_primitives_behind_the_floor_are_listed() -> None:
    names = [row["name"] for row in report()["primitives"]]
    for name in (
        "xchacha20poly1305 encrypt 1 KiB",
        "xchacha20poly1305 decrypt 1 KiB",
        "ed25519 sign",
        "ed25519 verify",
        "msgpack encode envelope",
        "msgpack decode envelope",
        "hpke seal x25519",
        "hpke open x25519",
        "hpke seal xwing",
        "hpke open xwing",
    ):
        assert name in names


def test_one_suite_touches_no_profile(tmp_path: Path) -> None:
    """--suite limits the run; no profile (nor any relay) is needed or created."""
    profile = tmp_path / "never-created"
    env = {"E2E_RECALL_PROFILE": str(profile), "PATH": "/usr/bin:/bin"}
    done = bench("--runs", "1", "--suite", "xwing", "--json", env=env)
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert {r["suite"] for r in value["results"]} == {"xwing"}
    assert [(r["path"], r["devices"]) for r in value["results"]] == PATHS
    assert not any("x25519" in row["name"] for row in value["primitives"])
    assert not profile.exists()


def test_the_table_names_each_figure() -> None:
    done = bench("--runs", "1", "--suite", "x25519")
    assert done.returncode == 0, done.stderr
    assert "ratio = client / bare" in done.stdout
    for word in ("send", "receive", "group_cold", "hpke seal x25519", "<=1.3x", "<40ms"):
        assert word in done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--runs", "0"], "--runs must be at least 1"),
        (["--runs", "-3"], "--runs must be at least 1"),
        (["--runs", "many"], "invalid int value"),
        (["--suite", "rsa"], "invalid choice"),
    ],
)
def test_bad_arguments_are_one_sentence_and_exit_2(args: list[str], words: str) -> None:
    done = bench(*args)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_help_says_what_it_measures() -> None:
    done = bench("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for words in ("--runs N", "--suite {x25519,xwing}", "--json", "no relay is started"):
        assert words in text


def test_the_group_send_benchmark_times_whole_sends_against_a_relay() -> None:
    """``python -m client.group_bench``: one small run, its figures well formed."""
    done = subprocess.run(
        [sys.executable, "-m", "client.group_bench", "--sizes", "1,3", "--runs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [r["devices"] for r in results] == [1, 3]
    for row in results:
        assert row["runs"] == 2
        assert 0 < row["median_ms"] <= row["p90_ms"]
