"""The reliability suites' short versions; the long ones are scripts in reliability/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "relay"))  # the protocol driver


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database of this test's relay: SQLite unless ``on_both_backends`` says otherwise."""
    return str(getattr(request, "param", "sqlite"))
