"""How operators write durations, sizes, switches and address lists, both ways.

Parsing and showing live side by side so that ``--help`` shows every default
in the form a user would type it (``10s``, ``30d``, ``128KiB``), and a test
can check that what is shown parses back to the same value.  Durations are
held in milliseconds and sizes in bytes; a bare number is read as seconds
or bytes respectively.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "Network",
    "format_bool",
    "format_duration",
    "format_networks",
    "format_size",
    "parse_bool",
    "parse_duration",
    "parse_networks",
    "parse_size",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_duration(text: str | int) -> int:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"30d"``, ``"250ms"`` (or plain seconds) in ms."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text} is negative; a duration cannot be")
        return text * 1000
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 1h or 30d")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def format_duration(ms: int) -> str:
    """The shortest exact spelling: 10000 -> ``10s``, 2592000000 -> ``30d``, 250 -> ``250ms``."""
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        if ms % _DURATION_UNITS[unit] == 0:
            return f"{ms // _DURATION_UNITS[unit]}{unit}"
    return f"{ms}ms"


def parse_size(text: str | int) -> int:
    """Bytes from ``"64KiB"``, ``"10MiB"``, ``"1GiB"`` or a plain number."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text} is negative; a size cannot be")
        return text
    match = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size such as 512KiB or 10MiB")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or "B"]


def format_size(size: int) -> str:
    """The largest exact unit: 131072 -> ``128KiB``, 1048576 -> ``1MiB``, 1000 -> ``1000B``."""
    for unit in ("GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def parse_networks(text: str | Iterable[Any]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks, from a TOML list or a comma-separated string (or ``none``)."""
    if isinstance(text, bool | int):
        raise ValueError("a list of addresses such as 127.0.0.1, 10.0.0.0/8 is needed")
    if isinstance(text, str) and text.strip().lower() == "none":
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an address")
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{item.strip()!r} is not an IP address or network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


def format_networks(networks: tuple[Network, ...]) -> str:
    return ",".join(str(n) for n in networks) if networks else "none"
