"""The one number format of every table (CLI, HTML report, diagnose)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradientflow.cli import _fmt
from gradientflow.diagnose import report as diagnose_report
from gradientflow.formatting import format_number
from gradientflow.report import format_number as report_format_number


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.5, "0.5"),
        (0.123456, "0.123"),
        (12.3456, "12.3"),
        (9999.0, "1e+04"),
        (12345.0, "1.23e+04"),
        (1.5e-6, "1.50e-06"),
        (-2.5e-4, "-2.50e-04"),
        (0.0, "0"),
        (7, "7"),
        (np.int64(7), "7"),
        (np.float32(0.25), "0.25"),
        (float("nan"), "-"),
        (None, "-"),
        (float("inf"), "inf"),
        (True, "True"),
        ("act1", "act1"),
    ],
)
def test_format_number(value: object, shown: str) -> None:
    assert format_number(value) == shown


def test_cli_report_and_diagnose_share_it() -> None:
    assert _fmt is format_number and report_format_number is format_number
    assert diagnose_report._number is format_number


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30))
def test_a_shown_number_reads_back_within_its_precision(value: float) -> None:
    shown = format_number(value)
    assert math.isclose(float(shown), value, rel_tol=5e-3, abs_tol=0.0)
