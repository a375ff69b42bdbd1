"""Fixtures for gradientflow.models tests."""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # until the package is installed or pytest gets pythonpath = ["src"]
    sys.path.insert(0, str(SRC))
