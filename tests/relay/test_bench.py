"""``e2e-recall-relay bench`` as an operator runs it: real relay processes, real figures.

Each test runs the real command line in a subprocess for a second or two
with small numbers, and checks that the figures are there and plausible
(counts above zero, percentiles in order, recall propagation measured, the
relay's CPU and memory read for a relay it started and n/a for one it did
not), and that a bad option is one sentence and exit code 2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_cli import SMALL, TIMEOUT, assert_ordered, bench, bench_env, figures_of
from relay_process import free_port, relay_process


def _assert_relay_figures(figures: dict[str, Any]) -> None:
    for kind in ("send", "open", "recall", "fetch", "receipt"):
        assert figures["operations"][kind]["count"] > 0, kind
        assert figures["operations"][kind]["per_second"] > 0, kind
    for kind in ("send", "open", "recall", "propagation"):
        assert_ordered(figures["latency_ms"][kind], kind)
    assert figures["propagation"]["measured"] > 0
    for code in figures["errors"]:
        assert code not in ("internal", "storage", "busy"), figures["errors"]


def test_a_started_relay_with_baseline_json_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "latency.png"
    result = bench(
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
    figures = figures_of(result)
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
        assert_ordered(baseline[kind]["latency_ms"], kind)
        assert baseline[kind]["server"]["cpu_seconds"] > 0
    assert 0 < baseline["send_share_of_http"] < 1
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert figures["machine"]["cpus"] >= 1
    assert figures["machine_cpu_cores"] > 0
    assert figures["generator"]["cpu_cores"] > 0
    assert "bench:" in result.stderr  # plain progress lines, since stdout is not a terminal
    # every key of the JSON is named in --help
    help_text = bench(tmp_path, "--help").stdout
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
        result = bench(
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
    figures = figures_of(result)
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
        result = bench(tmp_path, *SMALL, "--url", relay.url(), "--duration", "1s", "--rate", "50")
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
        env=bench_env(tmp_path),
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
        "--processes",
        "--database-url",
        "--postgres",
    ):
        assert flag in result.stdout, flag
    text = " ".join(result.stdout.split())
    assert "2-core machine" in text
    assert "Exit codes" in text
    top = subprocess.run(
        [sys.executable, "-m", "relay.cli", "--help"],
        env=bench_env(tmp_path),
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
    (("--processes", "0"), "--processes must be from 1 to 16"),
    (("--processes", "2", "--url", "http://127.0.0.1:1"), "--processes is for the relays"),
    (("--postgres", "--url", "http://127.0.0.1:1"), "--postgres is for the relays"),
    (("--postgres", "--database-url", "sqlite:///x.db"), "give one of them"),
    (("--database-url", "mysql://bench:hunter2@db/relay"), "'mysql://bench:***@db/relay'"),
    (("--prefill", "10", "--postgres"), "--prefill writes into the SQLite database"),
]


@pytest.mark.parametrize(("args", "said"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_option_is_one_sentence_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    result = bench(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert said in lines[0]
    assert lines[0].startswith("e2e-recall-relay bench: ")
    assert "hunter2" not in result.stderr  # a database password is never shown


def test_a_relay_that_does_not_answer_is_one_sentence_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = bench(tmp_path, "--url", url, "--duration", "1s")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("e2e-recall-relay bench: ")
    assert f"The relay at {url} does not answer" in last


def test_plot_without_matplotlib_is_one_sentence_before_the_run(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = bench(tmp_path, "--plot", tmp_path / "p.png", PYTHONPATH=str(tmp_path / "shadow"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "e2e-recall-relay bench: --plot needs matplotlib, which is not installed: "
        "pip install 'e2e-recall[plot]'."
    )


def test_a_prefilled_database_is_measured_like_an_empty_one(tmp_path: Path) -> None:
    """--prefill stores messages before the relay starts; the run itself is unchanged."""
    result = bench(tmp_path, "--prefill", "3000", "--duration", "1s", "--mix", "send=100", "--json")
    assert result.returncode == 0, result.stderr
    figures = figures_of(result)
    assert figures["settings"]["prefill"] == 3000
    assert figures["operations"]["send"]["count"] > 0
    assert figures["errors"] == {}
    assert "3,000 stored messages" in result.stderr


def test_timers_are_measured_from_their_moment_to_the_expired_event(tmp_path: Path) -> None:
    """``--expire``: every message carries a timer, sealed as it is sent, and each device's
    expired event is timed from the timer's moment."""
    result = bench(
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
    figures = figures_of(result)
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
    result = bench(
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
    figures = figures_of(result)
    assert figures["settings"]["groups"] == 2
    assert figures["generator"]["groups"] == 2
    # The relay took every group send's wraps as complete (no missing_devices, no
    # bad_recipients); an open that raced its message's recall may be refused.
    assert "group_send" not in figures["errors_by_kind"], figures["errors_by_kind"]
    assert set(figures["errors"]) <= {"message_recalled"}, figures["errors"]
    for kind in ("send", "group_send", "group_recall"):
        assert figures["operations"][kind]["count"] > 0, kind
        assert_ordered(figures["latency_ms"][kind], kind)
    assert_ordered(figures["latency_ms"]["group_propagation"], "group_propagation")
    assert figures["propagation"]["group_measured"] > 0
    plain = bench(tmp_path, *SMALL, "--duration", "1s", "--mix", "send=100", "--json")
    assert figures_of(plain)["operations"]["group_send"]["count"] == 0  # no --groups: none


def _assert_each_process(figures: dict[str, Any], count: int) -> None:
    """The figures name every started process, each with its own cost, and their total."""
    each = figures["relays"]
    assert [e["name"] for e in each] == [f"relay {i + 1}" for i in range(count)]
    assert len({e["pid"] for e in each}) == count
    assert len({e["url"] for e in each}) == count == len(figures["relay_urls"])
    for process in each:  # each served part of the load: an idle relay uses next to no CPU
        assert process["cpu_seconds"] > 0.05, process
        assert process["peak_rss_bytes"] > 10 << 20, process
    total = figures["relay"]
    assert total["processes"] == count
    assert total["pid"] is None
    assert total["peak_rss_bytes"] == sum(e["peak_rss_bytes"] for e in each)
    assert abs(total["cpu_seconds"] - sum(e["cpu_seconds"] for e in each)) < 0.01
    assert figures["settings"]["processes"] == count


def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    args = (*SMALL, "--processes", "2", "--duration", "2s", "--rate", "100")
    figures = figures_of(bench(tmp_path, *args, "--json"))
    _assert_each_process(figures, 2)
    assert figures["backend"]["kind"] == "sqlite"
    assert figures["backend"]["started_server"] is False
    assert figures["operations"]["send"]["count"] > 0
    table = bench(tmp_path, *args)
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert "2 relay processes" in text
    assert "on SQLite" in text
    assert "relay 1 (http://127.0.0.1:" in text
    assert "relay 2 (http://127.0.0.1:" in text
    assert "relay processes together: CPU" in text
    assert "do not tell each other of queued events" in text


def test_two_processes_on_a_postgres_server_the_bench_starts(tmp_path: Path) -> None:
    # Two users, one device each: user 0 talks to process 1 and user 1 to process 2, so
    # every message, and every recall, is sent through one process and pushed by the other.
    # A long drain: on a busy machine a recall's receipt can take seconds.
    args = ("--users", "2", "--prepare", "100", "--drain", "10s", "--duration", "2s")
    result = bench(tmp_path, *args, "--rate", "30", "--postgres", "--processes", "2", "--json",
                   timeout=240)  # fmt: skip
    figures = figures_of(result)
    # Receipts are counted in the window only; on a busy machine those of the last recalls
    # land in the drain, and are then seen in the propagation measured.
    for kind in ("send", "fetch", "recall"):
        assert figures["operations"][kind]["count"] > 0, kind
    for kind in ("send", "fetch", "recall", "propagation"):
        assert_ordered(figures["latency_ms"][kind], kind)
    assert figures["propagation"]["measured"] > 0
    assert figures["errors"] == {}
    _assert_each_process(figures, 2)
    backend = figures["backend"]
    assert backend["kind"] == "postgresql"
    assert backend["started_server"] is True
    assert backend["version"]
    assert backend["version"][0].isdigit()
    assert backend["database"].startswith("postgresql://")
    assert "PostgreSQL" in result.stderr  # the step that started the server


def test_postgres_without_its_programs_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    result = bench(tmp_path, *SMALL, "--postgres", E2E_RECALL_PG_BIN=str(empty))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "e2e-recall-relay bench: --postgres needs PostgreSQL's server programs (initdb, "
        "pg_ctl, postgres, psql), which were not found: install them (apt-get install "
        "postgresql), or put their directory on PATH or in E2E_RECALL_PG_BIN."
    ]
