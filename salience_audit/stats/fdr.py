"""Benjamini-Hochberg adjustment of the p-values of a report (false discovery rate).

A report tests many comparisons (measures x variants x datasets x pairs of groups); at
alpha = 0.05 about one in twenty true nulls comes out "significant". The adjusted p-value
of the k-th smallest of m p-values is min_{j >= k} min(1, m p_(j) / j) (Benjamini &
Hochberg 1995), computed by ``scipy.stats.false_discovery_control(method="bh")``;
rejecting where adjusted p < alpha controls the expected share of false discoveries at
alpha (for independent or positively dependent tests). Undefined p-values (NaN / None)
are not counted in m and stay undefined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["bh_adjust"]


def bh_adjust(pvalues: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values, NaN where the input is NaN / None (m = number of defined ones)."""
    p = np.array([np.nan if v is None else float(v) for v in np.asarray(pvalues, dtype=object).reshape(-1)],
                 dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return out
