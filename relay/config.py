"""Relay configuration: one table of options, read from TOML, environment and flags.

Every option is declared once in :data:`OPTIONS`, with its section in the
TOML file, its type, its default and its help text.  From that table come
the ``--flags`` of ``e2e-recall-relay serve`` (so ``--help`` documents every
option), the ``E2E_RECALL_RELAY_*`` environment variables and the TOML keys.
Precedence, lowest first: defaults, the TOML file, the environment, flags.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from e2e_recall.recall_rules import RecallPolicy

__all__ = ["OPTIONS", "Config", "ConfigError", "Option", "load_config", "parse_duration"]

ENV_PREFIX = "E2E_RECALL_RELAY_"


class ConfigError(Exception):
    """The configuration is invalid; the message says which option and why."""


_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str | int) -> int:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"30d"``, ``"250ms"`` (or plain seconds) in ms."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text} is negative; a duration cannot be")
        return text * 1000
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _parse_size(text: str | int) -> int:
    """Bytes from ``"64KiB"``, ``"10MiB"``, ``"1GiB"`` or a plain number."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size such as 512KiB or 10MiB")
    return (
        int(match.group(1))
        * {"B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}[match.group(2) or "B"]
    )


def _parse_int(text: str | int) -> int:
    if isinstance(text, bool):
        raise ValueError("a number is needed")
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative; use 0 for no limit where that is allowed")
    return value


def _parse_str(text: str | int) -> str:
    return str(text)


def _parse_optional_path(text: str | int) -> Path | None:
    return Path(str(text)).expanduser() if str(text) else None


@dataclass(frozen=True)
class Option:
    """One setting: where it lives, how to parse it, and what it means."""

    name: str
    section: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = "VALUE"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("e2e-recall-relay", appauthor=False))


OPTIONS: tuple[Option, ...] = (
    Option("host", "server", _parse_str, "127.0.0.1", "address to listen on", "ADDRESS"),
    Option(
        "port", "server", _parse_int, 8765, "TCP port to listen on (0 picks a free one)", "PORT"
    ),
    Option(
        "data_dir",
        "server",
        lambda v: Path(str(v)).expanduser(),
        None,
        "directory for the database and the relay key (default: the platform's data directory)",
        "DIR",
    ),
    Option(
        "database_url",
        "server",
        _parse_str,
        "",
        "database URL, sqlite:///PATH (default: relay.db in the data directory)",
        "URL",
    ),
    Option(
        "tls_cert",
        "server",
        _parse_optional_path,
        None,
        "TLS certificate chain (PEM); with --tls-key, serve HTTPS and WSS",
        "FILE",
    ),
    Option("tls_key", "server", _parse_optional_path, None, "TLS private key (PEM)", "FILE"),
    Option("log_level", "server", _parse_str, "info", "debug, info, warning or error", "LEVEL"),
    Option(
        "shutdown_timeout",
        "server",
        parse_duration,
        10_000,
        "how long to let in-flight requests finish on SIGTERM",
        "DURATION",
    ),
    Option(
        "max_sealed_window",
        "policy",
        parse_duration,
        30 * 86_400_000,
        "longest a message no device has opened can be recalled after sending",
        "DURATION",
    ),
    Option(
        "max_opened_window",
        "policy",
        parse_duration,
        3_600_000,
        "longest a message some device has opened can be recalled after sending",
        "DURATION",
    ),
    Option(
        "only_while_unread",
        "policy",
        _parse_bool,
        False,
        "refuse every recall once any recipient device has opened the message",
        "BOOL",
    ),
    Option(
        "recalls_per_conversation_per_day",
        "policy",
        _parse_int,
        50,
        "recalls one sender may make in one conversation in 24 hours (0: no limit)",
        "N",
    ),
    Option(
        "retention",
        "retention",
        parse_duration,
        14 * 86_400_000,
        "how long an undelivered or unopened message is kept before it expires",
        "DURATION",
    ),
    Option(
        "tombstone_retention",
        "retention",
        parse_duration,
        90 * 86_400_000,
        "how long content-free records and queued revocations are kept",
        "DURATION",
    ),
    Option(
        "purge_interval",
        "retention",
        parse_duration,
        60_000,
        "how often the retention and purge job runs",
        "DURATION",
    ),
    Option(
        "max_message_size", "limits", _parse_size, 128 * 1024, "largest envelope accepted", "SIZE"
    ),
    Option(
        "max_request_size", "limits", _parse_size, 1 << 20, "largest request body accepted", "SIZE"
    ),
    Option(
        "user_quota",
        "limits",
        _parse_size,
        256 << 20,
        "stored ciphertext one user may have waiting at the relay",
        "SIZE",
    ),
    Option(
        "requests_per_minute",
        "limits",
        _parse_int,
        6000,
        "requests one user may make per minute (0: no limit)",
        "N",
    ),
    Option(
        "max_devices_per_message",
        "limits",
        _parse_int,
        4096,
        "most device wraps one message may carry",
        "N",
    ),
    Option(
        "session_ttl",
        "limits",
        parse_duration,
        30 * 86_400_000,
        "how long a login session lasts",
        "DURATION",
    ),
    Option(
        "websocket_idle_timeout",
        "limits",
        parse_duration,
        120_000,
        "close a websocket that sends nothing (not even a ping) for this long",
        "DURATION",
    ),
    Option(
        "max_websockets",
        "limits",
        _parse_int,
        20_000,
        "most websockets open at once; more are refused with 503",
        "N",
    ),
)
_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """The relay's settings after every source has been applied."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_path(self) -> Path:
        value: Path | None = self.values["data_dir"]
        return value if value is not None else _default_data_dir()

    @property
    def database(self) -> str:
        url: str = self.values["database_url"]
        return url or f"sqlite:///{self.data_path / 'relay.db'}"

    @property
    def policy(self) -> RecallPolicy:
        limit = self.values["recalls_per_conversation_per_day"]
        return RecallPolicy(
            max_sealed_window_ms=self.values["max_sealed_window"],
            max_opened_window_ms=self.values["max_opened_window"],
            only_while_unread=self.values["only_while_unread"],
            max_recalls_per_conversation_per_day=limit or None,
        )

    def replace(self, **changes: Any) -> Config:
        return Config({**self.values, **changes})


def _apply(values: dict[str, Any], name: str, raw: Any, source: str) -> None:
    option = _BY_NAME.get(name)
    if option is None:
        raise ConfigError(f"{source}: unknown option {name!r}")
    try:
        values[name] = option.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {option.name}: {exc}") from None


def load_config(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge defaults, the TOML ``file``, ``env`` and ``flags`` (None values ignored)."""
    values: dict[str, Any] = {option.name: option.default for option in OPTIONS}
    env = os.environ if env is None else env
    if file is None and env.get(ENV_PREFIX + "CONFIG"):
        file = Path(env[ENV_PREFIX + "CONFIG"])
    if file is not None:
        try:
            document = tomllib.loads(file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file} is not a UTF-8 text file") from None
        for section, table in document.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{file}: {section!r} must be a [section]")
            for name, raw in table.items():
                option = _BY_NAME.get(name)
                if option is not None and option.section != section:
                    raise ConfigError(
                        f"{file}: {name} belongs in [{option.section}], not [{section}]"
                    )
                _apply(values, name, raw, str(file))
    for option in OPTIONS:
        if option.env in env:
            _apply(values, option.name, env[option.env], option.env)
    for name, raw in (flags or {}).items():
        if raw is not None:
            _apply(values, name, raw, option_flag(name))
    _validate(values)
    return Config(values)


def option_flag(name: str) -> str:
    return _BY_NAME[name].flag if name in _BY_NAME else name


def _validate(values: dict[str, Any]) -> None:
    if not 0 <= values["port"] <= 65535:
        raise ConfigError("port must be between 0 and 65535")
    if (values["tls_cert"] is None) != (values["tls_key"] is None):
        raise ConfigError("tls_cert and tls_key must be given together")
    for name in ("tls_cert", "tls_key"):
        path = values[name]
        if path is not None and not path.is_file():
            raise ConfigError(f"{name}: {path} does not exist or is not a file")
    if values["log_level"] not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level must be debug, info, warning or error")
    url = values["database_url"]
    if url and not url.startswith("sqlite:///"):
        raise ConfigError("database_url must be sqlite:///PATH (PostgreSQL support comes later)")
    if values["max_opened_window"] > values["max_sealed_window"]:
        raise ConfigError("max_opened_window cannot be longer than max_sealed_window")
    for name in (
        "max_message_size",
        "max_request_size",
        "max_devices_per_message",
        "max_websockets",
    ):
        if values[name] <= 0:
            raise ConfigError(f"{name} must be positive")
    if values["max_message_size"] > values["max_request_size"]:
        raise ConfigError("max_message_size cannot exceed max_request_size")
