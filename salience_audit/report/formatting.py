"""Number formatting shared by the HTML and Markdown reports.

- values: 3 decimals (``0.412``); a non-zero magnitude below 0.0005 (which would show as
  0.000) or from 10^5 up in 3 significant digits (``1.23e-05``); never ``-0.000``; a
  missing value (None / NaN / inf) as an en dash;
- a mean with its CI: ``0.412 [0.398, 0.427]``, the three numbers with the same decimals;
- p-values: ``p = 0.003`` or ``p < 0.001``.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "\u2013"


def is_number(x: Any) -> bool:
    """True for a finite int/float (not bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _fixed(v: float, digits: int) -> str:
    out = f"{v:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def _needs_sci(v: float, digits: int) -> bool:
    return (v != 0 and abs(v) < 0.5 * 10 ** (-digits)) or abs(v) >= 1e5


def fmt_num(x: Any, digits: int = 3) -> str:
    """A value to ``digits`` decimals (3 significant digits when that would hide it, or from 10^5)."""
    if not is_number(x):
        return MISSING
    v = float(x)
    if isinstance(x, int) or (v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    if _needs_sci(v, digits):
        return f"{v:.{digits}g}"
    return _fixed(v, digits)


def fmt_int(x: Any) -> str:
    """A count with thousands separators."""
    return f"{int(x):,}" if is_number(x) else MISSING


def fmt_ci(mean: Any, low: Any, high: Any, digits: int = 3) -> str:
    """``mean [low, high]``; the mean alone when the interval is missing."""
    if not is_number(mean):
        return MISSING
    if not (is_number(low) and is_number(high)):
        return fmt_num(mean, digits)
    values = [float(mean), float(low), float(high)]
    if all(_needs_sci(v, digits) or v == 0 for v in values) and any(v != 0 for v in values):
        m, lo, hi = (f"{v:.{digits}g}" for v in values)
    elif any(abs(v) >= 1e5 for v in values):
        m, lo, hi = (fmt_num(v, digits) for v in values)
    else:
        m, lo, hi = (_fixed(v, digits) for v in values)
    return f"{m} [{lo}, {hi}]"


def fmt_p(p: Any) -> str:
    """``p = 0.003`` / ``p < 0.001``; an en dash when undefined."""
    if not is_number(p):
        return MISSING
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def fmt_pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.953`` -> ``95.3%``)."""
    return f"{100 * float(x):.{digits}f}%" if is_number(x) else MISSING


def direction_text(direction: str | None) -> str:
    """Human wording of a better direction (``lower`` / ``higher`` / ``zero`` / None)."""
    return {"lower": "lower is better", "higher": "higher is better", "zero": "closer to 0 is better"}.get(
        direction or "", "descriptive (no better direction)"
    )
