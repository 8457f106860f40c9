"""Make the shared test helpers importable when a suite runs as a script."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for helper_dir in (ROOT / "tests" / "support", ROOT / "tests" / "relay"):
    if str(helper_dir) not in sys.path:
        sys.path.insert(0, str(helper_dir))
