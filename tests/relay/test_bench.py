"""``e2e-recall-relay bench`` as an operator runs it: real relay processes, real figures.

Each test runs the real command line in a subprocess for a second or two
with small numbers, and checks that the figures are there and plausible
(counts above zero, percentiles in order, recall propagation measured, the
relay's CPU and memory read for a relay it started and n/a for one it did
not), and that a bad option is one sentence and exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relay_process import free_port, relay_process

TIMEOUT = 90
SMALL = ("--users", "4", "--prepare", "100", "--drain", "3s")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def _bench(tmp_path: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "bench", *map(str, args)],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def _figures(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert isinstance(figures, dict)
    return figures


def _assert_ordered(latency: dict[str, float] | None, kind: str) -> None:
    assert latency is not None, f"no {kind} latency measured"
    assert latency["count"] > 0, kind
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], latency


def _assert_relay_figures(figures: dict[str, Any]) -> None:
    for kind in ("send", "open", "recall", "fetch", "receipt"):
        assert figures["operations"][kind]["count"] > 0, kind
        assert figures["operations"][kind]["per_second"] > 0, kind
    for kind in ("send", "open", "recall", "propagation"):
        _assert_ordered(figures["latency_ms"][kind], kind)
    assert figures["propagation"]["measured"] > 0
    for code in figures["errors"]:
        assert code not in ("internal", "storage", "busy"), figures["errors"]


def test_a_started_relay_with_baseline_json_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "latency.png"
    result = _bench(
        tmp_path,
        *SMALL,
        "--duration",
        "2s",
        "--rate",
        "200/s",
        "--baseline",
        "--baseline-duration",
        "1s",
        "--json",
        "--plot",
        plot,
    )
    figures = _figures(result)
    _assert_relay_figures(figures)
    assert figures["started_relay"] is True
    assert figures["settings"]["rate"] == "200/s"
    assert figures["operations"]["send"]["per_second"] <= 200
    relay = figures["relay"]
    assert relay["cpu_seconds"] > 0
    assert relay["cpu_cores"] > 0
    assert relay["peak_rss_bytes"] > 10 << 20
    baseline = figures["baseline"]
    for kind in ("http", "websocket"):
        assert baseline[kind]["count"] > 0, kind
        _assert_ordered(baseline[kind]["latency_ms"], kind)
        assert baseline[kind]["server"]["cpu_seconds"] > 0
    assert 0 < baseline["send_share_of_http"] < 1
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert figures["machine"]["cpus"] >= 1
    assert figures["machine_cpu_cores"] > 0
    assert figures["generator"]["cpu_cores"] > 0
    assert "bench:" in result.stderr  # plain progress lines, since stdout is not a terminal
    # every key of the JSON is named in --help
    help_text = _bench(tmp_path, "--help").stdout
    for key in [*figures, *figures["relay"], *figures["generator"], *baseline, *baseline["http"]]:
        assert key in help_text, key


def test_a_running_relay_by_url_over_websocket_with_two_workers(tmp_path: Path) -> None:
    relaxed = {
        "E2E_RECALL_RELAY_REQUESTS_PER_MINUTE": "0",
        "E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE": "0",
        "E2E_RECALL_RELAY_RECALLS_PER_CONVERSATION_PER_DAY": "0",
        "E2E_RECALL_RELAY_LOG_LEVEL": "warning",
    }
    with relay_process(tmp_path, **relaxed) as relay:
        result = _bench(
            tmp_path,
            *SMALL,
            "--url",
            relay.url(),
            "--workers",
            "2",
            "--transport",
            "ws",
            "--duration",
            "2s",
            "--concurrency",
            "8",
            "--json",
        )
        assert relay.running
    figures = _figures(result)
    _assert_relay_figures(figures)
    assert figures["started_relay"] is False
    assert figures["relay_url"] == relay.url()
    assert figures["relay"]["cpu_seconds"] is None
    assert figures["relay"]["peak_rss_bytes"] is None
    assert figures["generator"]["workers"] == 2
    assert figures["generator"]["websockets"] == 4
    assert figures["baseline"] is None


def test_the_table_says_n_a_for_a_relay_it_did_not_start(tmp_path: Path) -> None:
    with relay_process(tmp_path, E2E_RECALL_RELAY_ADDRESS_REQUESTS_PER_MINUTE="0") as relay:
        result = _bench(tmp_path, *SMALL, "--url", relay.url(), "--duration", "1s", "--rate", "50")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for row in (
        "send (acknowledged)",
        "open (key released)",
        "recall (acknowledged)",
        "recall propagation",
    ):
        assert row in text, row
    assert "p99 ms" in text
    assert "CPU n/a, peak RSS n/a" in text


def test_help_documents_every_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "bench", "--help"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0
    for flag in (
        "--url",
        "--relay-config",
        "--users",
        "--devices",
        "--recipients",
        "--mix",
        "--size",
        "--rate",
        "--concurrency",
        "--duration",
        "--transport",
        "--fetch",
        "--workers",
        "--prepare",
        "--drain",
        "--seed",
        "--baseline",
        "--baseline-duration",
        "--json",
        "--plot",
        "--prefill",
        "--expire",
        "--groups",
        "--group-size",
        "--group-share",
    ):
        assert flag in result.stdout, flag
    text = " ".join(result.stdout.split())
    assert "2-core machine" in text
    assert "Exit codes" in text
    top = subprocess.run(
        [sys.executable, "-m", "relay.cli", "--help"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert "bench" in top.stdout


BAD = [
    (("--mix", "open=50,recall=50"), "needs a share of send"),
    (("--mix", "send=70,delete=30"), "'delete' is not one of"),
    (("--mix", "send"), "is not KIND=SHARE"),
    (("--rate", "fast"), "is not a rate"),
    (("--size", "1MiB"), "--size must be between"),
    (("--size", "big"), "--size"),
    (("--duration", "0s"), "--duration must be longer"),
    (("--users", "1"), "--users must be at least 2"),
    (("--devices", "2", "--recipients", "5"), "cannot be met with --devices 2"),
    (("--workers", "3", "--users", "4"), "--users must be at least 6"),
    (("--url", "ftp://relay.example"), "is not a relay URL"),
    (("--prepare", "lots"), "--prepare"),
    (("--plot", "/nonexistent-dir/p.png"), "does not exist"),
    (("--prefill", "-5"), "--prefill is a number"),
    (("--expire", "500ms"), "--expire must be between 1s and 365d"),
    (("--prefill", "10", "--url", "http://127.0.0.1:1"), "not one at --url"),
    (("--groups", "-1"), "--groups is a number of groups"),
    (("--groups", "1", "--group-size", "11"), "--group-size must be between 2 and 10"),
    (("--groups", "1", "--workers", "2"), "each of the 2 workers a group"),
    (("--groups", "1", "--group-share", "0"), "--group-share is a percent"),
]


@pytest.mark.parametrize(("args", "said"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_option_is_one_sentence_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    result = _bench(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert said in lines[0]
    assert lines[0].startswith("e2e-recall-relay bench: ")


def test_a_relay_that_does_not_answer_is_one_sentence_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _bench(tmp_path, "--url", url, "--duration", "1s")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("e2e-recall-relay bench: ")
    assert f"The relay at {url} does not answer" in last


def test_plot_without_matplotlib_is_one_sentence_before_the_run(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = _bench(tmp_path, "--plot", tmp_path / "p.png", PYTHONPATH=str(tmp_path / "shadow"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "e2e-recall-relay bench: --plot needs matplotlib, which is not installed: "
        "pip install 'e2e-recall[plot]'."
    )


def test_a_prefilled_database_is_measured_like_an_empty_one(tmp_path: Path) -> None:
    """--prefill stores messages before the relay starts; the run itself is unchanged."""
    result = _bench(
        tmp_path, "--prefill", "3000", "--duration", "1s", "--mix", "send=100", "--json"
    )
    assert result.returncode == 0, result.stderr
    figures = _figures(result)
    assert figures["settings"]["prefill"] == 3000
    assert figures["operations"]["send"]["count"] > 0
    assert figures["errors"] == {}
    assert "3,000 stored messages" in result.stderr


def test_timers_are_measured_from_their_moment_to_the_expired_event(tmp_path: Path) -> None:
    """``--expire``: every message carries a timer, sealed as it is sent, and each device's
    expired event is timed from the timer's moment."""
    result = _bench(
        tmp_path,
        *SMALL,
        "--mix",
        "send=100",
        "--rate",
        "50/s",
        "--duration",
        "3s",
        "--expire",
        "1s",
        "--drain",
        "3s",
        "--json",
    )
    figures = _figures(result)
    assert figures["settings"]["expire"] == "1s"
    assert figures["errors"] == {}  # no copy expired before the device fetched it
    expiry = figures["latency_ms"]["expiry"]
    assert expiry is not None
    assert expiry["count"] > 20  # the timers of the first two seconds' sends fired in time
    assert 0 <= expiry["p50"] <= expiry["max"]
    assert figures["generator"]["sealed_ahead"] == 0


def test_a_tiny_group_run_sends_recalls_and_propagates_to_groups(tmp_path: Path) -> None:
    """``--groups``: groups are created (signed chains) before the run, a share of the sends
    goes to them wrapped to every member device, and their recalls propagate."""
    result = _bench(
        tmp_path,
        *SMALL,
        "--devices",
        "2",
        "--groups",
        "2",
        "--group-size",
        "3",
        "--mix",
        "send=60,open=10,recall=30",
        "--rate",
        "60/s",
        "--duration",
        "2s",
        "--json",
    )
    figures = _figures(result)
    assert figures["settings"]["groups"] == 2
    assert figures["generator"]["groups"] == 2
    # The relay took every group send's wraps as complete (no missing_devices, no
    # bad_recipients); an open that raced its message's recall may be refused.
    assert "group_send" not in figures["errors_by_kind"], figures["errors_by_kind"]
    assert set(figures["errors"]) <= {"message_recalled"}, figures["errors"]
    for kind in ("send", "group_send", "group_recall"):
        assert figures["operations"][kind]["count"] > 0, kind
        _assert_ordered(figures["latency_ms"][kind], kind)
    _assert_ordered(figures["latency_ms"]["group_propagation"], "group_propagation")
    assert figures["propagation"]["group_measured"] > 0
    plain = _bench(tmp_path, *SMALL, "--duration", "1s", "--mix", "send=100", "--json")
    assert _figures(plain)["operations"]["group_send"]["count"] == 0  # no --groups: none
