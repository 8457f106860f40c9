"""The documents stay true to the code they describe."""

from __future__ import annotations

from pathlib import Path

from e2e_recall import domains
from relay.config import OPTIONS

DOCS = Path(__file__).parent.parent / "docs"


def test_operators_guide_lists_every_option() -> None:
    text = (DOCS / "operators.md").read_text()
    for option in OPTIONS:
        assert f"`{option.flag}`" in text, option.name
        assert f"`{option.env}`" in text, option.name


def test_protocol_lists_every_label_byte_for_byte() -> None:
    text = (DOCS / "protocol.md").read_text()
    for label in domains.ALL_LABELS:
        name = label.rstrip(b"\x00").decode()
        assert f"`{name}`" in text, label


def test_relay_api_lists_every_route() -> None:
    from relay.app import create_app
    from relay.config import load_config

    app = create_app(load_config(env={}, flags={"data_dir": "/nonexistent-not-opened"}))
    text = (DOCS / "relay-api.md").read_text()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        assert f"{route.method} {path}" in text, f"{route.method} {path}"
