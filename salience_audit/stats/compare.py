"""Two-sample tests and effect size of per-sample values (e.g. xent vs cyborg models)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
from scipy import stats as sps

from salience_audit.stats.values import clean_values


def cliffs_delta(a: Iterable[float] | np.ndarray, b: Iterable[float] | np.ndarray) -> float:
    """Cliff's delta = P(a > b) - P(a < b) over all (a_i, b_j) pairs, in [-1, 1].

    Computed from the Mann-Whitney statistic with average ranks,
    U_a = #(a > b) + #(a = b) / 2, as delta = 2 U_a / (n_a n_b) - 1 (O(n log n)).
    NaN when either group is empty.
    """
    x, y = clean_values(a), clean_values(b)
    if x.size == 0 or y.size == 0:
        return float("nan")
    ranks = sps.rankdata(np.concatenate([x, y]))
    u_a = ranks[: x.size].sum() - x.size * (x.size + 1) / 2.0
    return float(2.0 * u_a / (x.size * y.size) - 1.0)


def compare_groups(a: Iterable[float] | np.ndarray, b: Iterable[float] | np.ndarray) -> dict[str, float]:
    """Compare two groups of values (e.g. per-image entropy of two model families).

    Returns a dict with
    - ``n_a``, ``n_b``, ``mean_a``, ``mean_b``;
    - ``mean_diff`` = mean(a) - mean(b);
    - ``mannwhitney_u`` (U of group a) and ``mannwhitney_p`` (two-sided,
      ``scipy.stats.mannwhitneyu``);
    - ``welch_t`` and ``welch_p`` (two-sided t-test without equal variances,
      ``scipy.stats.ttest_ind(equal_var=False)``);
    - ``cliffs_delta`` = P(a > b) - P(a < b) (:func:`cliffs_delta`).

    Positive ``mean_diff`` and ``cliffs_delta`` mean a is larger. Quantities that are
    undefined (an empty group; fewer than two values or zero variance for Welch) are NaN.
    """
    x, y = clean_values(a), clean_values(b)
    out: dict[str, float] = {
        "n_a": float(x.size),
        "n_b": float(y.size),
        "mean_a": float(x.mean()) if x.size else float("nan"),
        "mean_b": float(y.mean()) if y.size else float("nan"),
    }
    out["mean_diff"] = out["mean_a"] - out["mean_b"]
    nan = float("nan")
    out.update(mannwhitney_u=nan, mannwhitney_p=nan, welch_t=nan, welch_p=nan, cliffs_delta=nan)
    if x.size == 0 or y.size == 0:
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        mw = sps.mannwhitneyu(x, y, alternative="two-sided")
        out["mannwhitney_u"] = float(mw.statistic)
        out["mannwhitney_p"] = float(mw.pvalue)
        if x.size >= 2 and y.size >= 2:
            welch = sps.ttest_ind(x, y, equal_var=False)
            out["welch_t"] = float(welch.statistic)
            out["welch_p"] = float(welch.pvalue)
    out["cliffs_delta"] = cliffs_delta(x, y)
    return out
