"""``e2e-recall-relay`` as operators run it: help, errors, and the operator commands.

Every test runs the real command line as a process of its own (forked from a
warm process by ``forked_commands``, or ``python -m relay.cli``) with a clean
environment: no ``E2E_RECALL_RELAY_*`` variable of the developer's leaks in,
and the platform data directory points into the test's tmp dir.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from forked_commands import run_command

from e2e_recall import wire
from e2e_recall.identity import fingerprint
from e2e_recall.signing import VerifyKey
from relay.config import OPTIONS

COMMANDS = ("serve", "stats", "purge-expired", "migrate", "check", "key")
TIMEOUT = 60


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_RECALL_RELAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["COLUMNS"] = "200"  # keep argparse from wrapping help lines mid-sentence
    env.update(extra)
    return env


def _run(
    tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "relay.cli", *map(str, args)]
    environment = env if env is not None else _env(tmp_path)
    return run_command("relay.cli", argv, env=environment, cwd=tmp_path, timeout=TIMEOUT)


def _assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def _assert_logs_are_json(stderr: str) -> None:
    for line in stderr.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line


def _error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not JSON log records."""
    lines = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(entry, dict):
            lines.append(line)
    return lines


# help --------------------------------------------------------------------------------------------
def _assert_documents_every_option(text: str) -> None:
    missing = [o.flag for o in OPTIONS if o.flag not in text]
    missing += [o.env for o in OPTIONS if o.env not in text]
    assert not missing, f"--help does not mention {missing}"


def test_top_level_help_documents_every_option(tmp_path: Path) -> None:
    result = _run(tmp_path, "--help")
    assert result.returncode == 0
    _assert_no_traceback(result)
    for command in COMMANDS:
        assert command in result.stdout
    assert "E2E_RECALL_RELAY_CONFIG" in result.stdout or "--config" in result.stdout
    _assert_documents_every_option(result.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_documents_every_option(tmp_path: Path, command: str) -> None:
    result = _run(tmp_path, command, "--help")
    assert result.returncode == 0
    _assert_no_traceback(result)
    _assert_documents_every_option(result.stdout)
    assert "--config" in result.stdout
    assert "E2E_RECALL_RELAY_CONFIG" in result.stdout


def test_serve_help_documents_the_port_file_and_defaults(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--port-file" in text
    assert "127.0.0.1" in text
    assert "8765" in text
    # defaults in the units a user types, never raw milliseconds or bytes
    for shown in ("default: 10s;", "default: 30d;", "default: 1h;", "default: 2m;"):
        assert shown in text, shown
    for shown in ("default: 128KiB;", "default: 1MiB;", "default: 256MiB;", "default: false;"):
        assert shown in text, shown
    raw = re.findall(r"default:? (?:10000|2592000000|3600000|120000|131072|268435456)\b", text)
    assert raw == []


def test_top_level_help_shows_defaults_in_units(tmp_path: Path) -> None:
    text = _run(tmp_path, "--help").stdout
    assert "E2E_RECALL_RELAY_SHUTDOWN_TIMEOUT; default 10s" in text
    assert "E2E_RECALL_RELAY_MAX_MESSAGE_SIZE; default 128KiB" in text
    assert re.findall(r"default (?:10000|131072|120000)\b", text) == []


def test_help_does_not_create_anything(tmp_path: Path) -> None:
    _run(tmp_path, "serve", "--help", "--data-dir", tmp_path / "d")
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "xdg-data").exists()


# usage and configuration errors ------------------------------------------------------------------
def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 2
    assert "usage" in result.stderr.lower()
    _assert_no_traceback(result)


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "launch")
    assert result.returncode == 2
    assert "launch" in result.stderr
    _assert_no_traceback(result)


def test_an_unknown_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", "--prot", "9000")
    assert result.returncode == 2
    assert "--prot" in result.stderr
    _assert_no_traceback(result)


BAD_FLAGS = [
    (("--port", "70000"), "port"),
    (("--port", "eighty"), "port"),
    (("--retention", "soon"), "retention"),
    (("--max-opened-window", "40d"), "max_opened_window"),
    (("--only-while-unread", "maybe"), "only_while_unread"),
    (("--max-message-size", "12KB"), "max_message_size"),
    (("--tls-cert", "cert.pem"), "tls_key"),
    (("--database-url", "mysql://relay@db/relay"), "database_url"),
    (("--log-level", "chatty"), "log_level"),
]


@pytest.mark.parametrize("command", ["serve", "key"])
@pytest.mark.parametrize(("flags", "name"), BAD_FLAGS, ids=[n for _, n in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(
    tmp_path: Path, command: str, flags: tuple[str, ...], name: str
) -> None:
    result = _run(tmp_path, command, *flags, "--data-dir", tmp_path / "d")
    assert result.returncode == 2, result.stderr
    _assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("e2e-recall-relay: ")
    assert name in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "d").exists(), "nothing is created when the configuration is bad"


@pytest.mark.parametrize(
    ("variable", "value", "name"),
    [
        ("E2E_RECALL_RELAY_PORT", "-1", "port"),
        ("E2E_RECALL_RELAY_PURGE_INTERVAL", "often", "purge_interval"),
        ("E2E_RECALL_RELAY_ONLY_WHILE_UNREAD", "sometimes", "only_while_unread"),
    ],
)
def test_a_bad_environment_variable_exits_2_with_one_line(
    tmp_path: Path, variable: str, value: str, name: str
) -> None:
    result = _run(tmp_path, "serve", env=_env(tmp_path, **{variable: value}))
    assert result.returncode == 2
    _assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[server]\nprot = 1\n", "prot"),
        ("[policy]\nport = 1\n", "[server]"),
        ("[server\n", "TOML"),
        ("[policy]\nmax_sealed_window = '1h'\nmax_opened_window = '2h'\n", "max_opened_window"),
        ("[server]\ndatabase_url = 'mysql://x/y'\n", "database_url"),
    ],
)
def test_a_bad_config_file_exits_2_with_one_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(content)
    result = _run(tmp_path, "serve", "--config", file)
    assert result.returncode == 2
    _assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    for result in (
        _run(tmp_path, "key", "--config", missing),
        _run(tmp_path, "key", env=_env(tmp_path, E2E_RECALL_RELAY_CONFIG=str(missing))),
    ):
        assert result.returncode == 2
        _assert_no_traceback(result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(missing) in lines[0]


def test_a_config_file_that_is_not_text_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    result = _run(tmp_path, "serve", "--config", file)
    _assert_no_traceback(result)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(file) in lines[0]


def test_serve_with_a_missing_tls_certificate_names_the_file(tmp_path: Path) -> None:
    cert, key = tmp_path / "no-cert.pem", tmp_path / "no-key.pem"
    result = _run(
        tmp_path,
        "serve",
        "--port",
        "0",
        "--data-dir",
        tmp_path / "d",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    )
    _assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "no-cert.pem" in errors[0] or "no-key.pem" in errors[0], errors[0]


# the operator commands on a fresh data directory -------------------------------------------------
KEY_LINE = re.compile(r"^relay key\s+([0-9a-f]{64})$", re.MULTILINE)
ID_LINE = re.compile(r"^relay id\s+([0-9a-f]{64})$", re.MULTILINE)


def _key_and_id(stdout: str) -> tuple[str, str]:
    key, relay_id = KEY_LINE.search(stdout), ID_LINE.search(stdout)
    assert key is not None, stdout
    assert relay_id is not None, stdout
    return key.group(1), relay_id.group(1)


def test_key_prints_the_same_relay_key_and_id_every_time(tmp_path: Path) -> None:
    data = tmp_path / "d"
    first = _run(tmp_path, "key", "--data-dir", data)
    assert first.returncode == 0, first.stderr
    _assert_no_traceback(first)
    key, relay_id = _key_and_id(first.stdout)
    assert fingerprint(VerifyKey(bytes.fromhex(key))).hex() == relay_id
    key_file = data / "relay.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (data / "relay.tmp").exists()

    second = _run(tmp_path, "key", "--data-dir", data)
    assert second.returncode == 0
    assert _key_and_id(second.stdout) == (key, relay_id)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_key_differs_between_data_directories(tmp_path: Path) -> None:
    one = _run(tmp_path, "key", "--data-dir", tmp_path / "one")
    two = _run(tmp_path, "key", "--data-dir", tmp_path / "two")
    assert _key_and_id(one.stdout)[0] != _key_and_id(two.stdout)[0]


def test_key_prints_no_private_material(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = _run(tmp_path, "key", "--data-dir", data)
    seed = wire.decode((data / "relay.key").read_bytes())["seed"]
    assert len(seed) == 32
    printed = result.stdout + result.stderr
    assert seed.hex() not in printed
    assert base64.b64encode(seed).decode() not in printed
    assert seed.hex()[:16] not in printed


def test_key_on_a_damaged_key_file_fails_clearly(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "relay.key").write_bytes(b"not a key")
    result = _run(tmp_path, "key", "--data-dir", data)
    _assert_no_traceback(result)
    assert result.returncode == 1, result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "relay.key" in errors[0]
    assert (data / "relay.key").read_bytes() == b"not a key", "a damaged key is never replaced"


def test_key_uses_the_platform_data_directory_by_default(tmp_path: Path) -> None:
    result = _run(tmp_path, "key")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "xdg-data" / "e2e-recall-relay" / "relay.key").is_file()


def test_the_data_directory_comes_from_file_environment_and_flag(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text(f"[server]\ndata_dir = {json.dumps(str(tmp_path / 'from-file'))}\n")
    assert _run(tmp_path, "key", "--config", file).returncode == 0
    assert (tmp_path / "from-file" / "relay.key").is_file()

    env = _env(tmp_path, E2E_RECALL_RELAY_DATA_DIR=str(tmp_path / "from-env"))
    assert _run(tmp_path, "key", "--config", file, env=env).returncode == 0
    assert (tmp_path / "from-env" / "relay.key").is_file()

    flag = tmp_path / "from-flag"
    assert _run(tmp_path, "key", "--config", file, "--data-dir", flag, env=env).returncode == 0
    assert (flag / "relay.key").is_file()
    assert not (tmp_path / "xdg-data").exists()


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = _run(tmp_path, "migrate", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    _assert_no_traceback(result)
    assert re.search(r"schema version \d+", result.stdout)
    assert (data / "relay.db").is_file()
    _assert_logs_are_json(result.stderr)
    again = _run(tmp_path, "migrate", "--data-dir", data)
    assert again.returncode == 0
    assert again.stdout == result.stdout


def test_migrate_honours_the_database_url(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "custom.db"
    result = _run(
        tmp_path, "migrate", "--data-dir", tmp_path / "d", "--database-url", f"sqlite:///{db}"
    )
    assert result.returncode == 0, result.stderr
    assert db.is_file()
    assert not (tmp_path / "d" / "relay.db").exists()


def test_stats_prints_json_counts(tmp_path: Path) -> None:
    result = _run(tmp_path, "stats", "--data-dir", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    _assert_no_traceback(result)
    counts = json.loads(result.stdout)
    assert isinstance(counts, dict)
    for name in ("users", "devices", "sessions", "events"):
        assert counts[name] == 0
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values())
    assert sum(v for k, v in counts.items() if k.startswith("messages_")) == 0
    _assert_logs_are_json(result.stderr)


def test_check_says_ok_on_a_fresh_database(tmp_path: Path) -> None:
    result = _run(tmp_path, "check", "--data-dir", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    _assert_no_traceback(result)
    assert result.stdout.strip().splitlines()[-1] == "ok"
    _assert_logs_are_json(result.stderr)


def test_purge_expired_on_a_fresh_database(tmp_path: Path) -> None:
    result = _run(tmp_path, "purge-expired", "--data-dir", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    _assert_no_traceback(result)
    assert "expired 0 message(s)" in result.stdout
    _assert_logs_are_json(result.stderr)


def test_operator_commands_keep_to_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "d"
    for command in ("migrate", "stats", "check", "purge-expired", "key"):
        assert _run(tmp_path, command, "--data-dir", data).returncode == 0
    names = {p.name for p in data.iterdir()}
    assert {"relay.db", "relay.key"} <= names
    assert all(name.startswith(("relay.db", "relay.key")) for name in names), names
    assert not (tmp_path / "xdg-data").exists()


# a damaged database ------------------------------------------------------------------------------
def _damage(db: Path, how: str) -> None:
    if how == "whole file":
        db.write_bytes(b"this is not an SQLite database, just garbage. " * 200)
    elif how == "header":
        with db.open("r+b") as f:
            f.write(b"\xde\xad\xbe\xef" * 32)
    else:  # a page in the middle: the header still says SQLite
        with db.open("r+b") as f:
            f.seek(8192)
            f.write(b"\xde\xad\xbe\xef" * 1024)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["whole file", "header", "page"])
def test_check_reports_a_corrupt_database_without_a_traceback(tmp_path: Path, how: str) -> None:
    data = tmp_path / "d"
    assert _run(tmp_path, "migrate", "--data-dir", data).returncode == 0
    _damage(data / "relay.db", how)
    result = _run(tmp_path, "check", "--data-dir", data)
    _assert_no_traceback(result)
    assert result.returncode == 1, (result.stdout, result.stderr)
    said = (result.stdout + "\n" + "\n".join(_error_lines(result.stderr))).lower()
    assert "database" in said
    assert any(word in said for word in ("malformed", "not a database", "corrupt", "problem"))
    assert result.stdout.strip() != "ok"


@pytest.mark.parametrize("command", ["stats", "migrate", "serve"])
def test_other_commands_on_a_corrupt_database_fail_without_a_traceback(
    tmp_path: Path, command: str
) -> None:
    data = tmp_path / "d"
    assert _run(tmp_path, "migrate", "--data-dir", data).returncode == 0
    _damage(data / "relay.db", "whole file")
    result = _run(tmp_path, command, "--data-dir", data, "--port", "0")
    _assert_no_traceback(result)
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "database" in errors[0].lower()


def test_serve_on_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(tmp_path, "serve", "--port", str(port), "--data-dir", tmp_path / "d")
    _assert_no_traceback(result)
    assert result.returncode == 1, result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert str(port) in errors[0]
    assert "in use" in errors[0]
