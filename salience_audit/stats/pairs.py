"""CI and run-level test of a group's mean pairwise measure (cross-run stability SSIM).

Stability is measured on pairs of runs of one group: S[r, s] (mean over images of the SSIM
between the maps of runs r and s), and the group's number is the mean over its
R (R - 1) / 2 pairs, U = mean_{r < s} S[r, s] - a U-statistic in the runs, so pairs that
share a run are not independent and the unit of resampling must be the run.

Run x image CI (pairs resampled through their runs): the run part of the variance is the
delete-one-run jackknife, U_(-r) = mean of S over the pairs without run r,

    V_run = (R - 1) / R * sum_r (U_(-r) - mean_r U_(-r))^2,

and the image part is V_img = S_I^2 / I with S_I^2 the variance (ddof 1) of the per-image
values (each image's mean over the pairs). As for per-run measures
(:mod:`salience_audit.stats.crossed`):

    SE = sqrt(V_run + V_img), nu = (V_run + V_img)^2 / (V_run^2 / (R - 1) + V_img^2 / (I - 1)),
    CI = U -+ t_{nu, (1 + level)/2} SE.

:func:`run_bootstrap_pairs` is the bootstrap alternative (R runs drawn with replacement,
pairs of distinct drawn runs averaged); in simulation (``docs/statistics.md``) its
variance was slightly too small for the two-group test (type-I error 7% at alpha 0.05
with 5 and 10 runs per group, against 5% for the jackknife), so the report uses the
jackknife.

Two groups are compared with the Welch-type statistic (U_a - U_b) / sqrt(SE_a^2 + SE_b^2)
on nu = (SE_a^2 + SE_b^2)^2 / (SE_a^4 / nu_a + SE_b^4 / nu_b) degrees of freedom. A
permutation of run labels between groups is not possible here: it would need the SSIM of
pairs of runs from different groups, which the audit does not compute.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["jackknife_variance", "pair_matrix", "pairs_ci", "pairs_test", "run_bootstrap_pairs"]


def pair_matrix(pair_means: Mapping[tuple[str, str], float], runs: Sequence[str]) -> np.ndarray:
    """Symmetric R x R matrix of pair values (NaN on the diagonal and for missing pairs)."""
    pos = {r: k for k, r in enumerate(runs)}
    out = np.full((len(runs), len(runs)), np.nan)
    for (a, b), value in pair_means.items():
        if a in pos and b in pos and a != b:
            out[pos[a], pos[b]] = out[pos[b], pos[a]] = float(value)
    return out


def run_bootstrap_pairs(matrix: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of the pairs of distinct resampled runs, for ``n_boot`` resamples of R runs (NaN if none)."""
    s = np.asarray(matrix, dtype=np.float64)
    n_runs = s.shape[-1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_runs, size=(n_boot, n_runs))
    j, k = np.array(list(itertools.combinations(range(n_runs), 2))).T.reshape(2, -1) if n_runs > 1 else (
        np.empty(0, int), np.empty(0, int))
    vals = s[draws[:, j], draws[:, k]]  # NaN where the two draws are the same run
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": no pair of distinct runs
        return np.nanmean(vals, axis=1) if vals.size else np.full(n_boot, np.nan)


def jackknife_variance(matrix: np.ndarray) -> float:
    """Delete-one-run jackknife variance of the mean over pairs (NaN with fewer than 3 runs)."""
    s = np.asarray(matrix, dtype=np.float64)
    n_runs = s.shape[-1]
    if n_runs < 3:
        return float("nan")
    finite = np.isfinite(s)
    total, count = np.nansum(np.triu(s, 1)), np.triu(finite, 1).sum()
    row_sum = np.nansum(s, axis=1)  # sum over the pairs holding run r
    row_n = finite.sum(axis=1)
    with np.errstate(all="ignore"):
        loo = (total - row_sum) / (count - row_n)
    loo = loo[np.isfinite(loo)]
    if loo.size < 2:
        return float("nan")
    return float((n_runs - 1.0) / n_runs * np.sum((loo - loo.mean()) ** 2))


def pairs_ci(matrix: np.ndarray, image_var: float, n_images: int, *, level: float = 0.95) -> dict[str, float]:
    """Mean over pairs U with the run x image CI (see the module docstring).

    ``image_var``: variance (ddof 1) of the per-image values (image mean over the group's
    pairs); ``n_images``: I. NaN CI with fewer than 3 runs (leaving out a run must leave a pair).
    """
    s = np.asarray(matrix, dtype=np.float64)
    n_runs = s.shape[-1]
    upper = s[np.triu_indices(n_runs, 1)]
    nan = float("nan")
    mean = float(np.nanmean(upper)) if np.isfinite(upper).any() else nan
    out = {"mean": mean, "ci_low": nan, "ci_high": nan, "se": nan, "df": nan, "var_runs": nan, "var_images": nan,
           "n_runs": n_runs}
    if n_runs < 3 or not np.isfinite(mean):
        return out
    v_run = jackknife_variance(s)
    v_img = float(image_var) / n_images if n_images > 1 and np.isfinite(image_var) else 0.0
    var = v_run + v_img
    if not np.isfinite(var) or var <= 0:
        return out
    denom = v_run**2 / (n_runs - 1.0) + (v_img**2 / (n_images - 1.0) if n_images > 1 else 0.0)
    df = var**2 / denom if denom > 0 else n_runs - 1.0
    t = float(sps.t.ppf((1.0 + level) / 2.0, df))
    se = float(np.sqrt(var))
    out.update(ci_low=mean - t * se, ci_high=mean + t * se, se=se, df=float(df), var_runs=v_run, var_images=v_img)
    return out


def pairs_test(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Two-sided Welch-type test of U_a = U_b from two :func:`pairs_ci` results: ``statistic``, ``df``, ``p``."""
    nan = float("nan")
    va, vb = a.get("se", nan) ** 2, b.get("se", nan) ** 2
    diff = a.get("mean", nan) - b.get("mean", nan)
    var = va + vb
    if not (np.isfinite(var) and var > 0 and np.isfinite(diff)):
        return {"statistic": nan, "df": nan, "p": nan}
    df = var**2 / (va**2 / a["df"] + vb**2 / b["df"])
    t = diff / np.sqrt(var)
    return {"statistic": float(t), "df": float(df), "p": float(2.0 * sps.t.sf(abs(t), df))}
