"""Tests and effect sizes at the level of training runs (the unit a claim about a family rests on).

- :func:`permutation_test` - two-sided permutation test of run labels on the difference of
  group means: exact (every relabelling) when there are at most ``exact_limit`` of them,
  else Monte Carlo.
- :func:`hedges_g` - standardised difference of the run means with its approximate CI.
- :func:`difference_ci` - CI of the difference of two family means from their crossed
  (runs x images) variances, Welch-Satterthwaite degrees of freedom.
- :func:`leave_one_run_out` - the difference recomputed without each run in turn.

The values tested are one number per run (the run's mean over images), so the images'
variance enters through the run means and the runs' variance through their spread.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "difference_ci", "driven_by_one_run", "hedges_g", "leave_one_run_out", "permutation_test", "relabellings",
]

MIN_RUNS = 3
"""Runs per group a verdict about model families needs by default (``min_runs`` of the audit settings)."""

EXACT_LIMIT = 200_000
"""Largest number of relabellings enumerated; beyond it a Monte Carlo test is used."""

N_PERMUTATIONS = 20_000
"""Random relabellings of the Monte Carlo test."""

_CHUNK = 1 << 22


def relabellings(n_a: int, n_b: int, n_perm: int = N_PERMUTATIONS, seed: int = 0,
                 exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, bool]:
    """Assignments of n_a + n_b runs to group A, as a boolean matrix (one row per relabelling).

    Exact: all C(n_a + n_b, n_a) subsets (the observed labelling is the first row). Monte
    Carlo: the observed labelling then ``n_perm`` uniformly random ones (with replacement),
    so the p-value (1 + #{|T*| >= |T|}) / (1 + n_perm) is valid. Returns (matrix, exact).
    """
    n = n_a + n_b
    total = math.comb(n, n_a)
    if total <= exact_limit:
        rows = np.zeros((total, n), dtype=bool)
        for k, chosen in enumerate(itertools.combinations(range(n), n_a)):
            rows[k, list(chosen)] = True
        observed = np.zeros(n, dtype=bool)
        observed[:n_a] = True
        first = int(np.flatnonzero((rows == observed).all(axis=1))[0])
        rows[[0, first]] = rows[[first, 0]]
        return rows, True
    rng = np.random.default_rng(seed)
    keys = rng.random((n_perm, n))
    rows = np.zeros((n_perm + 1, n), dtype=bool)
    rows[0, :n_a] = True
    ranks = np.argsort(keys, axis=1)[:, :n_a]
    np.put_along_axis(rows[1:], ranks, True, axis=1)
    return rows, False


def permutation_test(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    *,
    n_perm: int = N_PERMUTATIONS,
    seed: int = 0,
    exact_limit: int = EXACT_LIMIT,
) -> dict[str, np.ndarray | float | bool | int]:
    """Two-sided permutation test of H0 "the runs of A and B come from one family".

    Statistic T = mean(a) - mean(b) (a, b: one value per run, e.g. run means over images).
    Relabellings (see :func:`relabellings`) reassign the pooled runs to groups of the same
    sizes; p = #{|T*| >= |T| - 1e-12 (max|x| + |T|)} / #relabellings, counting the observed one (exact),
    or (1 + #) / (1 + n_perm) (Monte Carlo). Leading axes of ``a`` and ``b`` are independent
    replicates tested with the same relabellings (vectorised simulations).

    Returns ``statistic``, ``p``, ``exact`` (bool), ``n_relabellings``; p is NaN when a
    group has no run. With 2 and 2 runs the smallest possible p is 2/6 = 0.33.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n_a, n_b = x.shape[-1], y.shape[-1]
    if n_a == 0 or n_b == 0:
        return {"statistic": float("nan"), "p": float("nan"), "exact": True, "n_relabellings": 0}
    pooled = np.concatenate([x, y], axis=-1)
    rows, exact = relabellings(n_a, n_b, n_perm, seed, exact_limit)
    weights = np.where(rows, 1.0 / n_a, -1.0 / n_b)  # T = weights @ pooled
    observed = pooled @ weights[0]
    # |T*| >= |T| up to rounding: a difference below 1e-12 of the data's scale counts as a tie (equal run values
    # give T ~ 1e-17, not a "significant" difference)
    scale = np.max(np.abs(pooled), axis=-1)
    tol = np.abs(observed) - 1e-12 * (scale + np.abs(observed))
    count = np.zeros(np.shape(observed), dtype=np.int64)
    chunk = max(1, _CHUNK // max(1, int(np.size(observed))))  # at most _CHUNK statistics at once
    for start in range(0, weights.shape[0], chunk):
        stats = pooled @ weights[start : start + chunk].T
        count += np.sum(np.abs(stats) >= tol[..., None], axis=-1)
    n_rows = weights.shape[0]
    p = count / n_rows  # Monte Carlo: the observed labelling (row 0) is the "+1" of (1 + #) / (1 + n_perm)
    p = np.where(np.isfinite(observed), p, np.nan)
    if np.ndim(p) == 0:
        return {"statistic": float(observed), "p": float(p), "exact": exact, "n_relabellings": int(n_rows)}
    return {"statistic": observed, "p": p, "exact": exact, "n_relabellings": int(n_rows)}


def hedges_g(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Hedges' g of the run values with an approximate CI (Hedges & Olkin 1985).

    d = (mean_a - mean_b) / s_p, s_p^2 = ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2);
    g = J d with J = 1 - 3 / (4 (n_a + n_b) - 9); SE(g) = sqrt((n_a + n_b) / (n_a n_b) + g^2 / (2 (n_a + n_b)));
    CI = g -+ z SE(g). NaN with fewer than 2 runs in a group or no spread.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    nan = float("nan")
    n_a, n_b = x.size, y.size
    if n_a < 2 or n_b < 2:
        return {"g": nan, "ci_low": nan, "ci_high": nan}
    sp2 = ((n_a - 1) * x.var(ddof=1) + (n_b - 1) * y.var(ddof=1)) / (n_a + n_b - 2)
    if not sp2 > 0:
        return {"g": nan, "ci_low": nan, "ci_high": nan}
    g = (1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)) * (x.mean() - y.mean()) / math.sqrt(sp2)
    se = math.sqrt((n_a + n_b) / (n_a * n_b) + g * g / (2.0 * (n_a + n_b)))
    z = float(sps.norm.ppf((1.0 + level) / 2.0))
    return {"g": float(g), "ci_low": float(g - z * se), "ci_high": float(g + z * se)}


def difference_ci(
    mean_a: float, var_a: float, df_a: float, mean_b: float, var_b: float, df_b: float, level: float = 0.95
) -> dict[str, float]:
    """CI of mean_a - mean_b from the two groups' crossed variances (Var of each mean) and their df.

    SE = sqrt(var_a + var_b); nu = (var_a + var_b)^2 / (var_a^2 / df_a + var_b^2 / df_b);
    CI = (mean_a - mean_b) -+ t_{nu, (1 + level)/2} SE. NaN when an input is.
    """
    diff = mean_a - mean_b
    var = var_a + var_b
    nan = float("nan")
    with np.errstate(all="ignore"):
        denom = var_a**2 / df_a + var_b**2 / df_b
    if not (np.isfinite(var) and np.isfinite(denom) and np.isfinite(diff)) or var <= 0:
        return {"diff": float(diff), "ci_low": nan, "ci_high": nan, "se": nan, "df": nan}
    df = var**2 / denom if denom > 0 else min(df_a, df_b)
    t = float(sps.t.ppf((1.0 + level) / 2.0, df))
    se = math.sqrt(var)
    return {"diff": float(diff), "ci_low": float(diff - t * se), "ci_high": float(diff + t * se), "se": se,
            "df": float(df)}


def leave_one_run_out(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, names_a: Sequence[str], names_b: Sequence[str]
) -> list[dict[str, float | str]]:
    """mean(a) - mean(b) without each run in turn: ``[{"run", "group": "a"|"b", "diff"}]``.

    A run whose removal flips the sign of the difference or removes more than half of it
    carries the comparison on its own (see :func:`driven_by_one_run`).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    out: list[dict[str, float | str]] = []
    for k, name in enumerate(names_a):
        if x.size > 1:
            out.append({"run": str(name), "group": "a", "diff": float(np.delete(x, k).mean() - y.mean())})
    for k, name in enumerate(names_b):
        if y.size > 1:
            out.append({"run": str(name), "group": "b", "diff": float(x.mean() - np.delete(y, k).mean())})
    return out


def driven_by_one_run(diff: float, loro: Sequence[dict[str, float | str]]) -> list[str]:
    """Runs without which the difference flips its sign or shrinks below half its size."""
    if not np.isfinite(diff) or diff == 0:
        return []
    out = []
    for rec in loro:
        d = float(rec["diff"])
        if np.sign(d) != np.sign(diff) or abs(d) < abs(diff) / 2.0:
            out.append(str(rec["run"]))
    return out
