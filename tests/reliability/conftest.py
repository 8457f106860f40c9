"""The reliability suites' short versions; the long ones are scripts in reliability/."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "relay"))  # the protocol driver
