"""Relay configuration: defaults, TOML, environment and flags, and clear errors.

Pure and fast: :func:`relay.config.load_config` is called directly, always
with an explicit ``env`` so the developer's environment cannot leak in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_recall.recall_rules import RecallPolicy
from relay.config import OPTIONS, Config, ConfigError, load_config, parse_duration
from relay.units import format_duration, format_size

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
KIB = 1024
MIB = 1024 * KIB


def _toml(tmp_path: Path, text: str, name: str = "relay.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(file: Path | None = None, env: dict[str, str] | None = None, **flags: object) -> str:
    """The message of the ConfigError these sources raise (it must be one sentence)."""
    with pytest.raises(ConfigError) as caught:
        load_config(file, env=env or {}, flags=flags)
    message = str(caught.value)
    assert message.strip(), "a ConfigError needs a message"
    assert "\n" not in message, f"the message should be one line: {message!r}"
    return message


# defaults --------------------------------------------------------------------------------------
def test_defaults_listen_on_loopback_with_sqlite_in_the_data_directory() -> None:
    config = load_config(env={})
    assert config.host == "127.0.0.1"
    assert config.port == 8765
    assert config.data_dir is None
    assert config.data_path.name == "e2e-recall-relay"
    assert config.database == f"sqlite:///{config.data_path / 'relay.db'}"
    assert config.tls_cert is None
    assert config.tls_key is None
    assert config.log_level == "info"
    assert config.shutdown_timeout == 10 * SECOND
    assert config.max_sealed_window == 30 * DAY
    assert config.max_opened_window == 1 * HOUR
    assert config.only_while_unread is False
    assert config.recalls_per_conversation_per_day == 50
    assert config.retention == 14 * DAY
    assert config.max_message_size == 128 * KIB
    assert config.max_request_size == 1 * MIB


def test_every_option_has_its_declared_default() -> None:
    config = load_config(env={})
    assert set(config.values) == {option.name for option in OPTIONS}
    for option in OPTIONS:
        assert config.values[option.name] == option.default, option.name


def test_default_data_directory_follows_the_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    config = load_config(env={})
    assert config.data_path == tmp_path / "xdg" / "e2e-recall-relay"
    assert config.database == f"sqlite:///{tmp_path / 'xdg' / 'e2e-recall-relay' / 'relay.db'}"


def test_the_database_lives_in_the_data_directory_unless_a_url_is_given(tmp_path: Path) -> None:
    config = load_config(env={}, flags={"data_dir": str(tmp_path / "d")})
    assert config.data_path == tmp_path / "d"
    assert config.database == f"sqlite:///{tmp_path / 'd' / 'relay.db'}"
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    config = load_config(env={}, flags={"data_dir": str(tmp_path / "d"), "database_url": url})
    assert config.database == url
    assert config.data_path == tmp_path / "d"


def test_option_names_flags_and_environment_variables_are_derived_from_one_table() -> None:
    for option in OPTIONS:
        assert option.env == "E2E_RECALL_RELAY_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.section in {"server", "policy", "retention", "limits"}
        assert option.help.strip()
    assert len({option.name for option in OPTIONS}) == len(OPTIONS)


# sources and precedence --------------------------------------------------------------------------
FULL_TOML = """
[server]
host = "0.0.0.0"
port = 9000
data_dir = "/srv/relay"
log_level = "warning"
shutdown_timeout = "30s"

[policy]
max_sealed_window = "7d"
max_opened_window = "15m"
only_while_unread = true
recalls_per_conversation_per_day = 5

[retention]
retention = "3d"
tombstone_retention = 864000
purge_interval = "90s"

[limits]
max_message_size = "64KiB"
max_request_size = "10MiB"
user_quota = 1048576
requests_per_minute = 100
session_ttl = "1h"
websocket_idle_timeout = "250ms"
max_websockets = 7
"""


def test_values_from_a_toml_file(tmp_path: Path) -> None:
    config = load_config(_toml(tmp_path, FULL_TOML), env={})
    assert config.host == "0.0.0.0"
    assert config.port == 9000
    assert config.data_path == Path("/srv/relay")
    assert config.database == "sqlite:////srv/relay/relay.db"
    assert config.log_level == "warning"
    assert config.shutdown_timeout == 30 * SECOND
    assert config.max_sealed_window == 7 * DAY
    assert config.max_opened_window == 15 * MINUTE
    assert config.only_while_unread is True
    assert config.recalls_per_conversation_per_day == 5
    assert config.retention == 3 * DAY
    assert config.tombstone_retention == 10 * DAY  # a plain number is seconds
    assert config.purge_interval == 90 * SECOND
    assert config.max_message_size == 64 * KIB
    assert config.max_request_size == 10 * MIB
    assert config.user_quota == 1048576  # a plain number is bytes
    assert config.requests_per_minute == 100
    assert config.session_ttl == HOUR
    assert config.websocket_idle_timeout == 250
    assert config.max_websockets == 7


def test_a_partial_toml_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load_config(_toml(tmp_path, "[limits]\nmax_websockets = 3\n"), env={})
    assert config.max_websockets == 3
    assert config.port == 8765
    assert config.max_opened_window == HOUR


def test_an_empty_toml_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(_toml(tmp_path, ""), env={}) == load_config(env={})


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    file = _toml(tmp_path, FULL_TOML)
    env = {
        "E2E_RECALL_RELAY_PORT": "9100",
        "E2E_RECALL_RELAY_ONLY_WHILE_UNREAD": "no",
        "E2E_RECALL_RELAY_RETENTION": "12h",
        "E2E_RECALL_RELAY_MAX_MESSAGE_SIZE": "32KiB",
    }
    config = load_config(file, env=env)
    assert config.port == 9100
    assert config.only_while_unread is False
    assert config.retention == 12 * HOUR
    assert config.max_message_size == 32 * KIB
    assert config.host == "0.0.0.0"  # untouched by the environment: still from the file


def test_flags_override_the_environment_and_the_file(tmp_path: Path) -> None:
    file = _toml(tmp_path, FULL_TOML)
    env = {"E2E_RECALL_RELAY_PORT": "9100", "E2E_RECALL_RELAY_RETENTION": "12h"}
    config = load_config(file, env=env, flags={"port": "9200", "host": "::1", "retention": None})
    assert config.port == 9200
    assert config.host == "::1"
    assert config.retention == 12 * HOUR  # a flag left unset (None) does not override
    assert config.max_opened_window == 15 * MINUTE  # from the file


def test_environment_alone_overrides_defaults() -> None:
    config = load_config(
        env={"E2E_RECALL_RELAY_HOST": "0.0.0.0", "E2E_RECALL_RELAY_LOG_LEVEL": "debug"}
    )
    assert config.host == "0.0.0.0"
    assert config.log_level == "debug"


def test_unrelated_environment_variables_are_ignored() -> None:
    config = load_config(env={"PORT": "1", "E2E_RECALL_PORT": "2", "HOST": "0.0.0.0"})
    assert config.port == 8765
    assert config.host == "127.0.0.1"


def test_the_config_environment_variable_names_the_file(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[server]\nport = 9300\n")
    config = load_config(env={"E2E_RECALL_RELAY_CONFIG": str(file)})
    assert config.port == 9300


def test_an_explicit_file_wins_over_the_config_environment_variable(tmp_path: Path) -> None:
    named = _toml(tmp_path, "[server]\nport = 9300\n", "env.toml")
    given = _toml(tmp_path, "[server]\nport = 9400\n", "given.toml")
    config = load_config(given, env={"E2E_RECALL_RELAY_CONFIG": str(named)})
    assert config.port == 9400


def test_the_config_environment_variable_naming_a_missing_file_is_an_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere.toml"
    message = _error(env={"E2E_RECALL_RELAY_CONFIG": str(missing)})
    assert str(missing) in message


def test_config_replace_returns_a_changed_copy() -> None:
    config = load_config(env={})
    changed = config.replace(port=1)
    assert changed.port == 1
    assert config.port == 8765
    assert isinstance(changed, Config)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = load_config(env={}).no_such_option


# durations and sizes -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90 * SECOND),
        ("15m", 15 * MINUTE),
        ("1h", HOUR),
        ("30d", 30 * DAY),
        ("250ms", 250),
        ("0s", 0),
        (" 2h ", 2 * HOUR),
        ("45", 45 * SECOND),
        (45, 45 * SECOND),
        (0, 0),
    ],
)
def test_durations(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "soon", "1.5h", "5 minutes", "1w", "-5s", "h", "10 s s"])
def test_bad_durations_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("64KiB", 64 * KIB),
        ("10MiB", 10 * MIB),
        ("1GiB", 1 << 30),
        ("512B", 512),
        ("4096", 4096),
        (2048, 2048),
    ],
)
def test_sizes(raw: str | int, expected: int) -> None:
    config = load_config(env={}, flags={"user_quota": raw})
    assert config.user_quota == expected


def test_durations_from_every_source(tmp_path: Path) -> None:
    file = _toml(tmp_path, '[retention]\npurge_interval = "250ms"\nretention = 120\n')
    config = load_config(
        file,
        env={"E2E_RECALL_RELAY_SESSION_TTL": "30d"},
        flags={"shutdown_timeout": "90s"},
    )
    assert config.purge_interval == 250
    assert config.retention == 120 * SECOND
    assert config.session_ttl == 30 * DAY
    assert config.shutdown_timeout == 90 * SECOND


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("yes", True),
        ("1", True),
        ("on", True),
        ("TRUE", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("off", False),
    ],
)
def test_booleans_from_the_environment(raw: str, expected: bool) -> None:
    config = load_config(env={"E2E_RECALL_RELAY_ONLY_WHILE_UNREAD": raw})
    assert config.only_while_unread is expected


# errors ------------------------------------------------------------------------------------------
def test_an_unknown_option_in_the_file_is_named(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[server]\nprot = 9000\n")
    message = _error(file)
    assert "prot" in message
    assert str(file) in message


def test_an_unknown_option_in_an_unknown_section_is_named(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[extras]\ncolour = 'blue'\n"))
    assert "colour" in message


def test_an_option_in_the_wrong_section_names_the_right_one(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[policy]\nport = 9000\n"))
    assert "port" in message
    assert "[server]" in message
    assert "[policy]" in message


def test_an_option_outside_any_section_is_refused(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "port = 9000\n"))
    assert "port" in message
    assert "section" in message


@pytest.mark.parametrize(
    ("source", "name", "value"),
    [
        ("flag", "retention", "soon"),
        ("env", "retention", "1.5d"),
        ("toml", "retention", "'two weeks'"),
        ("flag", "max_opened_window", "1 hour"),
        ("toml", "shutdown_timeout", "1.5"),
        ("env", "purge_interval", "-1m"),
    ],
)
def test_a_bad_duration_names_the_option(
    tmp_path: Path, source: str, name: str, value: str
) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    if source == "flag":
        message = _error(**{name: value})
        assert option.flag in message
    elif source == "env":
        message = _error(env={option.env: value})
        assert option.env in message
    else:
        message = _error(_toml(tmp_path, f"[{option.section}]\n{name} = {value}\n"))
    assert name in message
    assert "duration" in message


@pytest.mark.parametrize("value", ["maybe", "2", "", "y e s"])
def test_a_bad_bool_names_the_option(value: str) -> None:
    message = _error(env={"E2E_RECALL_RELAY_ONLY_WHILE_UNREAD": value})
    assert "only_while_unread" in message.lower()


def test_a_bad_bool_in_toml_names_the_option(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[policy]\nonly_while_unread = 'perhaps'\n"))
    assert "only_while_unread" in message


@pytest.mark.parametrize("value", ["12KB", "lots", "1.5MiB", "-1", "10 mib"])
def test_a_bad_size_names_the_option(value: str) -> None:
    message = _error(max_message_size=value)
    assert "max_message_size" in message


@pytest.mark.parametrize("value", ["65536", "-1", "100000"])
def test_a_port_out_of_range_names_the_option(value: str) -> None:
    message = _error(port=value)
    assert "port" in message


@pytest.mark.parametrize("value", ["http", "80.5", "", "true"])
def test_a_port_that_is_not_a_number_names_the_option(value: str) -> None:
    message = _error(env={"E2E_RECALL_RELAY_PORT": value})
    assert "port" in message.lower()


def test_a_boolean_port_in_toml_is_refused(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[server]\nport = true\n"))
    assert "port" in message


def test_the_extreme_ports_are_accepted() -> None:
    assert load_config(env={}, flags={"port": "0"}).port == 0
    assert load_config(env={}, flags={"port": "65535"}).port == 65535


def test_a_tls_certificate_without_a_key_is_refused(tmp_path: Path) -> None:
    message = _error(tls_cert=str(tmp_path / "cert.pem"))
    assert "tls_cert" in message
    assert "tls_key" in message


def test_a_tls_key_without_a_certificate_is_refused(tmp_path: Path) -> None:
    message = _error(env={"E2E_RECALL_RELAY_TLS_KEY": str(tmp_path / "key.pem")})
    assert "tls_key" in message
    assert "tls_cert" in message


def test_tls_certificate_and_key_together_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("certificate")
    (tmp_path / "k.pem").write_text("key")
    config = load_config(
        env={},
        flags={"tls_cert": str(tmp_path / "c.pem"), "tls_key": str(tmp_path / "k.pem")},
    )
    assert config.tls_cert == tmp_path / "c.pem"
    assert config.tls_key == tmp_path / "k.pem"


def test_a_missing_tls_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("certificate")
    with pytest.raises(ConfigError, match="tls_key"):
        load_config(
            env={},
            flags={"tls_cert": str(tmp_path / "c.pem"), "tls_key": str(tmp_path / "k.pem")},
        )


def test_an_opened_window_longer_than_the_sealed_window_is_refused(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[policy]\nmax_sealed_window = '1h'\nmax_opened_window = '2h'\n")
    message = _error(file)
    assert "max_opened_window" in message
    assert "max_sealed_window" in message


def test_equal_opened_and_sealed_windows_are_accepted() -> None:
    config = load_config(env={}, flags={"max_sealed_window": "1h", "max_opened_window": "60m"})
    assert config.max_opened_window == config.max_sealed_window == HOUR


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/relay",
        "sqlite://relative.db",
        "/var/lib/relay/relay.db",
    ],
)
def test_a_database_url_neither_sqlite_nor_postgresql_is_refused(url: str) -> None:
    message = _error(env={"E2E_RECALL_RELAY_DATABASE_URL": url})
    assert "database_url" in message
    assert "sqlite" in message


def test_an_sqlite_database_url_is_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    config = load_config(env={}, flags={"database_url": url})
    assert config.database == url
    assert not config.uses_postgres


@pytest.mark.parametrize("url", ["postgresql://relay@db/relay", "postgres://relay@db/relay"])
def test_a_postgresql_database_url_is_accepted(url: str) -> None:
    config = load_config(env={}, flags={"database_url": url, "db_pool_size": "25"})
    assert config.uses_postgres
    assert (config.database, config.db_pool_size) == (url, 25)
    assert "db_pool_size" in _error(env={"E2E_RECALL_RELAY_DB_POOL_SIZE": "0"})


@pytest.mark.parametrize("level", ["verbose", "INFO ", "trace"])
def test_a_bad_log_level_names_the_option(level: str) -> None:
    message = _error(log_level=level)
    assert "log_level" in message


@pytest.mark.parametrize(
    "name", ["max_message_size", "max_request_size", "max_devices_per_message", "max_websockets"]
)
def test_limits_must_be_positive(name: str) -> None:
    message = _error(**{name: "0"})
    assert name in message


def test_a_message_size_above_the_request_size_is_refused() -> None:
    message = _error(max_message_size="2MiB", max_request_size="1MiB")
    assert "max_message_size" in message
    assert "max_request_size" in message


@pytest.mark.parametrize(
    ("section", "name"),
    [("retention", "retention"), ("retention", "purge_interval")],
)
def test_a_negative_duration_in_toml_is_refused(tmp_path: Path, section: str, name: str) -> None:
    # A plain TOML integer is seconds; a negative number of seconds is no duration at all.
    message = _error(_toml(tmp_path, f"[{section}]\n{name} = -5\n"))
    assert name in message


@pytest.mark.parametrize("name", ["recalls_per_conversation_per_day", "requests_per_minute"])
def test_a_negative_count_is_refused(name: str) -> None:
    # 0 is documented as "no limit"; a negative count has no meaning.
    message = _error(env={"E2E_RECALL_RELAY_" + name.upper(): "-3"})
    assert name in message.lower()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    message = _error(missing)
    assert str(missing) in message


def test_a_directory_instead_of_a_file_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path)
    assert str(tmp_path) in message


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[server\nport = \n")
    message = _error(file)
    assert str(file) in message
    assert "TOML" in message


def test_a_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[server]\nport = 1\nport = 2\n")
    message = _error(file)
    assert str(file) in message


def test_a_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_bytes(b'[server]\nhost = "\xff\xfe\x00\x81"\n')
    message = _error(file)
    assert str(file) in message


def test_a_wrongly_typed_value_names_the_option(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[limits]\nmax_websockets = [1, 2]\n"))
    assert "max_websockets" in message


def test_a_nested_table_is_refused(tmp_path: Path) -> None:
    message = _error(_toml(tmp_path, "[server.tls]\ncert = 'x'\n"))
    assert "tls" in message


def test_errors_name_the_source_they_came_from(tmp_path: Path) -> None:
    file = _toml(tmp_path, "[limits]\nrequests_per_minute = 'many'\n")
    assert str(file) in _error(file)
    assert "E2E_RECALL_RELAY_REQUESTS_PER_MINUTE" in _error(
        env={"E2E_RECALL_RELAY_REQUESTS_PER_MINUTE": "many"}
    )
    assert "--requests-per-minute" in _error(requests_per_minute="many")


def test_a_later_source_can_fix_an_earlier_value_but_not_hide_an_invalid_one(
    tmp_path: Path,
) -> None:
    file = _toml(tmp_path, "[server]\nport = 9000\n")
    assert load_config(file, env={"E2E_RECALL_RELAY_PORT": "9001"}).port == 9001
    # An invalid value in the file is reported even if a flag would override it.
    bad = _toml(tmp_path, "[server]\nport = 'ninety'\n", "bad.toml")
    with pytest.raises(ConfigError, match="port"):
        load_config(bad, env={}, flags={"port": "9002"})


# the recall policy -------------------------------------------------------------------------------
def test_the_recall_policy_comes_from_the_config() -> None:
    config = load_config(
        env={"E2E_RECALL_RELAY_ONLY_WHILE_UNREAD": "true"},
        flags={
            "max_sealed_window": "2d",
            "max_opened_window": "10m",
            "recalls_per_conversation_per_day": "7",
        },
    )
    policy = config.policy
    assert isinstance(policy, RecallPolicy)
    assert policy.max_sealed_window_ms == 2 * DAY
    assert policy.max_opened_window_ms == 10 * MINUTE
    assert policy.only_while_unread is True
    assert policy.max_recalls_per_conversation_per_day == 7


def test_the_default_recall_policy() -> None:
    policy = load_config(env={}).policy
    assert policy.max_sealed_window_ms == 30 * DAY
    assert policy.max_opened_window_ms == HOUR
    assert policy.only_while_unread is False
    assert policy.max_recalls_per_conversation_per_day == 50


def test_zero_recalls_per_day_means_no_limit() -> None:
    policy = load_config(env={}, flags={"recalls_per_conversation_per_day": "0"}).policy
    assert policy.max_recalls_per_conversation_per_day is None


# what records must outlive ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "longer"),
    [
        ({"tombstone_retention": "10d", "retention": "14d"}, "retention"),
        ({"tombstone_retention": "20d"}, "max_sealed_window"),  # default window 30d
        (
            {
                "tombstone_retention": "2h",
                "retention": "1h",
                "max_sealed_window": "1h",
                "max_opened_window": "1h",
            },
            None,
        ),
    ],
)
def test_tombstones_outlive_retention_and_the_recall_windows(
    flags: dict[str, str], longer: str | None
) -> None:
    if longer is None:
        assert load_config(env={}, flags=flags).tombstone_retention == 2 * HOUR
        return
    message = _error(**flags)
    assert message.startswith(f"tombstone_retention ({flags['tombstone_retention']}) must be")
    assert f"at least {longer}" in message
    assert "offline" in message


def test_equal_retentions_are_accepted() -> None:
    config = load_config(env={}, flags={"tombstone_retention": "30d", "retention": "30d"})
    assert config.tombstone_retention == config.retention == config.max_sealed_window


# shown as typed ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (10_000, "10s"),
        (30 * DAY, "30d"),
        (HOUR, "1h"),
        (120_000, "2m"),
        (250, "250ms"),
        (90_000, "90s"),
        (0, "0s"),
        (1500, "1500ms"),
    ],
)
def test_durations_are_shown_as_a_user_types_them(ms: int, shown: str) -> None:
    assert format_duration(ms) == shown
    assert parse_duration(shown) == ms


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (128 * KIB, "128KiB"),
        (MIB, "1MiB"),
        (256 * MIB, "256MiB"),
        (1 << 30, "1GiB"),
        (1000, "1000B"),
        (1536, "1536B"),
    ],
)
def test_sizes_are_shown_as_a_user_types_them(size: int, shown: str) -> None:
    assert format_size(size) == shown
    assert load_config(env={}, flags={"user_quota": shown}).user_quota == size


def test_every_shown_default_reads_back_as_the_default() -> None:
    for option in OPTIONS:
        if option.default in (None, ""):
            continue
        assert option.parse(option.shown_default) == option.default, option.name
        assert "000" not in option.shown_default or option.metavar == "N", option.name


def _documented_defaults() -> dict[str, str]:
    """The option table of docs/operators.md: option name -> the default it shows."""
    text = (Path(__file__).parents[2] / "docs" / "operators.md").read_text()
    table = {}
    for line in text.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.match(r"--[a-z]", cells[2]):
            table[cells[0]] = cells[4]
    return table


def test_the_operators_guide_documents_every_option_with_its_shown_default() -> None:
    documented = _documented_defaults()
    assert set(documented) == {option.name for option in OPTIONS}
    for option in OPTIONS:
        assert documented[option.name] == option.shown_default, option.name


def test_trusted_proxies_from_toml_lists_and_comma_separated_text(tmp_path: Path) -> None:
    file = _toml(tmp_path, '[server]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n')
    from_file = load_config(file, env={}).trusted_proxies
    from_env = load_config(
        env={"E2E_RECALL_RELAY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"}
    ).trusted_proxies
    assert from_file == from_env
    assert [str(n) for n in from_file] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert load_config(env={}).trusted_proxies == ()
    message = _error(trusted_proxies="127.0.0.1, proxy.internal")
    assert "trusted_proxies" in message
    assert "proxy.internal" in message


def test_a_missing_metrics_token_file_is_named(tmp_path: Path) -> None:
    message = _error(metrics_token_file=str(tmp_path / "absent.token"))
    assert "metrics_token_file" in message
    assert "absent.token" in message
