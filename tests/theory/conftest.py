"""Make `gradientflow` importable from a source checkout that has not been pip-installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("gradientflow") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
