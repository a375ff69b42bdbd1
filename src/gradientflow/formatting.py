"""How every table shows a number: the CLI's tables, the HTML report's and diagnose's verdict table.

Standard library only (layer 1 beside `records`), so any layer can use it.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["format_number"]

#: Magnitudes outside [SCIENTIFIC_BELOW, SCIENTIFIC_FROM) are written in scientific notation, so a
#: column of gradients that span decades reads by its exponents ("1.20e-05", not "1.2e-05" or "0").
SCIENTIFIC_BELOW = 1e-3
SCIENTIFIC_FROM = 1e4


def format_number(value: object, digits: int = 3) -> str:
    """Return `value` as a table cell: `digits` significant digits, scientific notation (with
    ``digits - 1`` decimals) below 1e-3 or from 1e4 in magnitude; integers whole; '-' for None and NaN.

    Anything that is not a number (a name, a status) is returned as ``str(value)``.

    >>> [format_number(v) for v in (0.5, 0.123456, 12345.0, 1.5e-6, 7, float("nan"), None)]
    ['0.5', '0.123', '1.23e+04', '1.50e-06', '7', '-', '-']
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return "-"
    if number != 0 and math.isfinite(number) and not SCIENTIFIC_BELOW <= abs(number) < SCIENTIFIC_FROM:
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"
