"""The documents stay true to the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from e2e_recall import domains
from e2e_recall.recall_rules import REFUSAL_SENTENCES
from e2e_recall.report import (
    ATTESTED_BY,
    GUARANTEES,
    TRANSITIONS,
    DeviceReport,
    DeviceState,
    Event,
    describe,
)

DOCS = Path(__file__).parent.parent / "docs"


def test_operators_guide_lists_every_option() -> None:
    from relay.config import OPTIONS

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


def test_relay_api_lists_every_websocket_op() -> None:
    from relay.operations import OPERATIONS

    text = (DOCS / "relay-api.md").read_text()
    start = text.index("| `op` | same as |")
    rows = text[start:].split("\n\n")[0].splitlines()[2:]
    listed = [row.split("|")[1].strip().strip("`") for row in rows]
    assert sorted(listed) == sorted(OPERATIONS)


# -- section 11 of the protocol: the report, as report.py has it --------------------------


def _section(title: str) -> str:
    text = (DOCS / "protocol.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _table(section: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row starts with ``header``."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _name(cell: str) -> str:
    return cell.strip("`")


def _sentence_with_placeholders(state: DeviceState, opened: bool) -> str:
    """The sentence report.py shows, with the times left as the spec's {opened}, {deleted}."""
    line = DeviceReport(
        user=bytes(32),
        device_id=bytes(16),
        state=state,
        key_released_at=1 if opened else None,
        deleted_at=2,
        expired_at=3,
    )
    names = {1: "{opened}", 2: "{deleted}", 3: "{expired}"}
    text = describe(line, fmt=lambda ms: names[ms])
    return re.sub(r" \(Attested by [^)]*\)$", "", text)


def test_protocol_report_table_is_the_code() -> None:
    rows = _table(_section("11. The report"), "| state | attested by |")
    assert [_name(row[0]) for row in rows] == [str(state) for state in DeviceState]
    for row in rows:
        state = DeviceState(_name(row[0]))
        attesters = sorted(("device", "relay"), key=lambda who: row[1].find(who))
        named = [who for who in attesters if who in row[1]]
        assert named == [str(who) for who in ATTESTED_BY[state]], state
        assert row[2] == GUARANTEES[state], state
        if state in (DeviceState.DELETED, DeviceState.EXPIRED):
            base = _sentence_with_placeholders(state, True).split(". ")[0] + "."
            after_opening = _sentence_with_placeholders(state, True)[len(base) :].strip()
            never_opened = _sentence_with_placeholders(state, False)[len(base) :].strip()
            expected = f"{base} *Then either:* {after_opening} *or:* {never_opened}"
        else:
            expected = _sentence_with_placeholders(state, state is not DeviceState.QUEUED)
        assert row[3] == expected, state


def test_protocol_names_each_attestation_suffix() -> None:
    text = _section("11. The report")
    for state in (DeviceState.SEALED, DeviceState.DELETED):
        line = DeviceReport(user=bytes(32), device_id=bytes(16), state=state, deleted_at=1)
        suffix = re.search(r"\(Attested by [^)]*\)$", describe(line))
        assert suffix is not None
        assert f'"{suffix.group(0)}"' in text, state


def test_protocol_transition_table_is_the_code() -> None:
    section = _section("11. The report")
    lines = section.splitlines()
    header = next(line for line in lines if line.startswith("| state \\ event |"))
    events = [Event(cell.strip()) for cell in header.strip().strip("|").split("|")[1:]]
    assert events == list(Event)
    rows = _table(section, "| state \\ event |")
    assert [_name(row[0]) for row in rows] == [str(state) for state in DeviceState]
    for row in rows:
        state = DeviceState(_name(row[0]))
        for event, cell in zip(events, row[1:], strict=True):
            following = TRANSITIONS[state].get(event)
            assert cell == ("" if following is None else str(following)), (state, event)


def test_protocol_refusal_sentences_are_the_code() -> None:
    rows = _table(_section("11. The report"), "| reason | sentence |")
    assert {_name(row[0]): row[1] for row in rows} == REFUSAL_SENTENCES
