"""Relay configuration: one table of options, read from TOML, environment and flags.

Every option is declared once in :data:`OPTIONS`, with its section in the
TOML file, its type, its default and its help text.  From that table come
the ``--flags`` of ``e2e-recall-relay serve`` (so ``--help`` documents every
option), the ``E2E_RECALL_RELAY_*`` environment variables and the TOML keys.
Precedence, lowest first: defaults, the TOML file, the environment, flags.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from e2e_recall.domains import MAX_GROUP_MEMBERS
from e2e_recall.recall_rules import RecallPolicy

from .units import (
    format_bool,
    format_duration,
    format_networks,
    format_size,
    parse_bool,
    parse_duration,
    parse_networks,
    parse_size,
)

__all__ = ["OPTIONS", "Config", "ConfigError", "Option", "load_config", "parse_duration"]

ENV_PREFIX = "E2E_RECALL_RELAY_"


class ConfigError(Exception):
    """The configuration is invalid; the message says which option and why."""


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
    """One setting: where it lives, how to parse it, how to show it, and what it means."""

    name: str
    section: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    show: Callable[[Any], str] = str  # the default as a user would type it
    aliases: tuple[str, ...] = ()  # shorter flags for the same option

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def shown_default(self) -> str:
        if self.name == "data_dir":
            return "platform data directory"
        if self.name == "database_url":
            return "relay.db in the data directory"
        if self.name == "blob_dir":
            return "blobs in the data directory"
        if self.default is None or self.default == "":
            return "none"
        return self.show(self.default)


def _duration(name: str, section: str, default_ms: int, text: str) -> Option:
    return Option(name, section, parse_duration, default_ms, text, "DURATION", format_duration)


def _size(name: str, section: str, default: int, text: str) -> Option:
    return Option(name, section, parse_size, default, text, "SIZE", format_size)


def _count(name: str, section: str, default: int, text: str) -> Option:
    return Option(name, section, _parse_int, default, text, "N")


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("e2e-recall-relay", appauthor=False))


DAY_MS = 86_400_000

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
        "directory for the database and the relay key",
        "DIR",
    ),
    Option(
        "database_url",
        "server",
        _parse_str,
        "",
        "database URL: sqlite:///PATH, or postgresql://USER@HOST/DB for several processes",
        "URL",
        aliases=("--db",),  # without it, argparse took --db for --db-pool-size
    ),
    _count(
        "db_pool_size",
        "server",
        10,
        "connections each relay process keeps to PostgreSQL (ignored for SQLite)",
    ),
    Option(
        "tls_cert",
        "server",
        _parse_optional_path,
        None,
        "TLS certificate chain (PEM); with --tls-key, serve HTTPS and WSS",
        "FILE",
    ),
    Option(
        "blob_dir",
        "server",
        _parse_optional_path,
        None,
        "directory for the encrypted attachments (blobs), outside the database",
        "DIR",
    ),
    Option("tls_key", "server", _parse_optional_path, None, "TLS private key (PEM)", "FILE"),
    Option("log_level", "server", _parse_str, "info", "debug, info, warning or error", "LEVEL"),
    _duration(
        "shutdown_timeout", "server", 10_000, "how long to let in-flight requests finish on SIGTERM"
    ),
    _duration(
        "body_timeout",
        "server",
        30_000,
        "how long a request body may take to arrive; slower ones are refused with 408",
    ),
    _duration(
        "keepalive_timeout",
        "server",
        75_000,
        "close a kept-alive HTTP connection that sends no new request for this long",
    ),
    Option(
        "trusted_proxies",
        "server",
        parse_networks,
        (),
        "addresses or networks of reverse proxies whose X-Forwarded-For names the client "
        "(comma-separated; none: use the connection's address)",
        "ADDRESSES",
        format_networks,
    ),
    Option(
        "metrics_token_file",
        "server",
        _parse_optional_path,
        None,
        "file holding a bearer token that /metrics then requires (none: /metrics is open)",
        "FILE",
    ),
    _duration(
        "stats_interval",
        "server",
        30_000,
        "how often the gauges of what the database holds are refreshed for /metrics",
    ),
    _duration(
        "max_sealed_window",
        "policy",
        30 * DAY_MS,
        "longest a message no device has opened can be recalled after sending",
    ),
    _duration(
        "max_opened_window",
        "policy",
        3_600_000,
        "longest a message some device has opened can be recalled after sending",
    ),
    Option(
        "only_while_unread",
        "policy",
        parse_bool,
        False,
        "refuse every recall once any recipient device has opened the message",
        "BOOL",
        format_bool,
    ),
    _count(
        "recalls_per_conversation_per_day",
        "policy",
        50,
        "recalls one sender may make in one conversation in 24 hours (0: no limit)",
    ),
    _duration(
        "retention",
        "retention",
        14 * DAY_MS,
        "how long an undelivered or unopened message is kept before it expires",
    ),
    _duration(
        "tombstone_retention",
        "retention",
        90 * DAY_MS,
        "how long content-free records and queued revocations are kept "
        "(at least retention and max_sealed_window)",
    ),
    _duration("purge_interval", "retention", 60_000, "how often the retention and purge job runs"),
    _duration(
        "upload_expiry",
        "retention",
        DAY_MS,
        "how long an attachment upload may stay unfinished or unsent before it is deleted",
    ),
    _duration(
        "open_grace",
        "retention",
        600_000,
        "how long ciphertext and wraps stay after every device opened a message, so a device "
        "whose answer was lost can open it again (0: delete at once)",
    ),
    _duration(
        "scrub_interval",
        "retention",
        60_000,
        "how soon after a recall or expiry the database is rewritten (SQLite: VACUUM; "
        "PostgreSQL: VACUUM FULL of the content tables, CHECKPOINT, a WAL switch) so that no "
        "fragment of purged ciphertext or wraps stays in its files; at most once per interval "
        "(0: never by itself; run e2e-recall-relay scrub)",
    ),
    _size("max_message_size", "limits", 128 * 1024, "largest envelope accepted"),
    _size("max_request_size", "limits", 1 << 20, "largest request body accepted"),
    _size(
        "user_quota",
        "limits",
        256 << 20,
        "stored ciphertext one user may have waiting at the relay",
    ),
    _size(
        "max_file_size",
        "limits",
        2 << 30,
        "largest attachment accepted, as its encrypted blob (a little larger than the file)",
    ),
    _size(
        "blob_quota",
        "limits",
        10 << 30,
        "attachment bytes one user may have at the relay, uploaded or being uploaded",
    ),
    _duration(
        "blob_read_timeout",
        "limits",
        60_000,
        "how long an attachment upload may send nothing before it is cut off (per read, "
        "so a large upload on a slow line is not limited in total)",
    ),
    _count(
        "requests_per_minute", "limits", 6000, "requests one user may make per minute (0: no limit)"
    ),
    _count(
        "address_requests_per_minute",
        "limits",
        60,
        "requests one client address may make per minute to the routes that need no session "
        "(challenge, register, login; 0: no limit)",
    ),
    _count(
        "max_pending_challenges",
        "limits",
        100_000,
        "most login and registration challenges outstanding at once; more are refused with 503",
    ),
    _count("max_devices_per_message", "limits", 4096, "most device wraps one message may carry"),
    _count(
        "max_group_members",
        "limits",
        1024,
        "most members a group may have at this relay (at most 1024, the protocol's limit); "
        "a change past it is refused with 409",
    ),
    _duration("session_ttl", "limits", 30 * DAY_MS, "how long a login session lasts"),
    _duration(
        "max_certificate_lifetime",
        "limits",
        90 * DAY_MS,
        "longest lifetime (expires_at - created_at) of a rotated device certificate; "
        "a longer one is refused with 400 lifetime_too_long",
    ),
    _duration(
        "websocket_idle_timeout",
        "limits",
        120_000,
        "ping each websocket every half of this; one whose peer does not answer is closed "
        "within this long",
    ),
    _count(
        "max_websockets",
        "limits",
        20_000,
        "most websockets open at once; more are refused with 503",
    ),
    _count(
        "max_websockets_per_user",
        "limits",
        16,
        "most websockets one user's devices may hold open at once (one per device); "
        "more are refused with 429",
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
    def uses_postgres(self) -> bool:
        return self.database.startswith(("postgresql://", "postgres://"))

    @property
    def database_path(self) -> Path:
        """The SQLite file the database URL names."""
        return Path(self.database.removeprefix("sqlite:///"))

    @property
    def blob_path(self) -> Path:
        """The directory of the blob store (``blob_dir``, else ``blobs`` in the data directory)."""
        value: Path | None = self.values["blob_dir"]
        return value if value is not None else self.data_path / "blobs"

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
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("database_url must be sqlite:///PATH or postgresql://...")
    if values["max_opened_window"] > values["max_sealed_window"]:
        raise ConfigError("max_opened_window cannot be longer than max_sealed_window")
    for name in (
        "max_message_size",
        "max_request_size",
        "max_devices_per_message",
        "max_websockets",
        "max_websockets_per_user",
        "max_pending_challenges",
        "db_pool_size",
        "max_file_size",
        "blob_quota",
        "upload_expiry",
        "blob_read_timeout",
        "max_certificate_lifetime",
    ):
        if values[name] <= 0:
            raise ConfigError(f"{name} must be positive")
    if not 1 <= values["max_group_members"] <= MAX_GROUP_MEMBERS:
        raise ConfigError(f"max_group_members must be between 1 and {MAX_GROUP_MEMBERS}")
    if values["max_file_size"] > values["blob_quota"]:
        raise ConfigError(
            "max_file_size cannot exceed blob_quota: no file that large could ever be uploaded"
        )
    if values["max_message_size"] > values["max_request_size"]:
        raise ConfigError("max_message_size cannot exceed max_request_size")
    _validate_retention(values)
    token_file = values["metrics_token_file"]
    if token_file is not None and not token_file.is_file():
        raise ConfigError(f"metrics_token_file: {token_file} does not exist or is not a file")


def _validate_retention(values: dict[str, Any]) -> None:
    """Records must outlive what they describe, or an offline device could miss a recall."""
    keep = values["tombstone_retention"]
    for name, why in (
        ("retention", "a message's record would be forgotten before the message expires"),
        ("max_sealed_window", "a recall near the end of the window would be forgotten at once"),
        ("max_opened_window", "a recall near the end of the window would be forgotten at once"),
    ):
        if keep < values[name]:
            raise ConfigError(
                f"tombstone_retention ({format_duration(keep)}) must be at least {name} "
                f"({format_duration(values[name])}): otherwise {why}, and a device that "
                "was offline would never learn of it"
            )
