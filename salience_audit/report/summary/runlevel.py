"""Family-level numbers of a summary: run x image CIs and run-level comparisons of groups.

Inputs are the streaming aggregates the summary already keeps (bounded memory, nothing
per image): per (measure, variant, group, dataset)

- the per-image group values' count I and variance S_I^2 (each image's mean over the
  group's runs, or run pairs);
- per run: count, mean and M2 of the run's own values over images (per-run measures);
- per pair of runs: the mean over images (pairwise measures, e.g. stability SSIM).

Per-run measures get :func:`~salience_audit.stats.crossed.crossed_ci` and are compared
by the permutation test of run labels on the run means
(:func:`~salience_audit.stats.runtests.permutation_test`); pairwise measures get
:func:`~salience_audit.stats.pairs.pairs_ci` and :func:`~salience_audit.stats.pairs.pairs_test`.
Every comparison also gets the difference with its CI, Hedges' g of the run values and a
leave-one-run-out check. :func:`adjust_pvalues` applies Benjamini-Hochberg across the
comparisons of the summary (run-level and image-level p-values as two families).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salience_audit.jsonsafe import finite_number
from salience_audit.stats.crossed import CrossedMoments, crossed_ci
from salience_audit.stats.fdr import bh_adjust
from salience_audit.stats.pairs import pair_matrix, pairs_ci, pairs_test
from salience_audit.stats.runtests import (
    difference_ci,
    driven_by_one_run,
    hedges_g,
    leave_one_run_out,
    permutation_test,
)

Key = tuple[str, str, str, str]
"""(measure, variant, group, dataset)."""


@dataclass
class FamilyInput:
    """What one (measure, variant, group, dataset) cell contributes to the family statistics."""

    n_images: int = 0
    image_var: float = float("nan")
    runs: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # run -> (n, mean, M2)
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)  # (run a, run b) -> mean over images

    @property
    def pairwise(self) -> bool:
        return bool(self.pairs)

    def run_names(self) -> list[str]:
        if self.pairs:
            return sorted({r for pair in self.pairs for r in pair})
        return list(self.runs)


def family_stat(cell: FamilyInput) -> dict[str, Any]:
    """Run x image mean and 95% CI of one cell: ``n_runs``, ``mean``, ``ci_low``, ``ci_high``, ``se``, ``df``,
    ``var_runs``, ``var_images``, ``method`` and the per-run (or per-pair) values it rests on."""
    names = cell.run_names()
    if cell.pairwise:
        matrix = pair_matrix(cell.pairs, names)
        res = pairs_ci(matrix, cell.image_var, cell.n_images)
        method = "mean over run pairs; run part: delete-one-run jackknife; image part: S_I^2 / I; t on Satterthwaite df"
        values = {f"{a}|{b}": v for (a, b), v in cell.pairs.items()}
    else:
        n = np.array([cell.runs[r][0] for r in names], dtype=np.float64)
        mean = np.array([cell.runs[r][1] for r in names], dtype=np.float64)
        m2 = np.array([cell.runs[r][2] for r in names], dtype=np.float64)
        moments = CrossedMoments.from_run_moments(n, mean, m2, cell.n_images, cell.image_var)
        res = {k: float(v) for k, v in crossed_ci(moments).items()}
        method = "mean of run means; two-way (runs x images) bootstrap variance, run-level t correction"
        values = dict(zip(names, mean.tolist()))
    out = {k: finite_number(res.get(k)) for k in ("mean", "ci_low", "ci_high", "se", "df", "var_runs", "var_images")}
    out.update(n_runs=len(names), n_images=int(cell.n_images), method=method, run_values=values)
    return out


def _run_values(cell: FamilyInput) -> tuple[list[str], np.ndarray]:
    names = cell.run_names()
    return names, np.array([cell.runs[r][1] for r in names], dtype=np.float64)


def _pair_loo(cell: FamilyInput) -> tuple[list[str], np.ndarray, float]:
    names = cell.run_names()
    matrix = pair_matrix(cell.pairs, names)
    upper = matrix[np.triu_indices(len(names), 1)]
    total = float(np.nanmean(upper)) if np.isfinite(upper).any() else float("nan")
    loo = []
    for r in range(len(names)):
        keep = [q for q in range(len(names)) if q != r]
        sub = matrix[np.ix_(keep, keep)][np.triu_indices(len(keep), 1)]
        loo.append(float(np.nanmean(sub)) if np.isfinite(sub).any() else float("nan"))
    return names, np.array(loo), total


def family_comparison(a: FamilyInput, b: FamilyInput, stat_a: Mapping[str, Any], stat_b: Mapping[str, Any],
                      seed: int = 0) -> dict[str, Any]:
    """Run-level comparison of groups a and b (a minus b).

    Keys: ``test`` (what was used), ``n_runs_a``, ``n_runs_b``, ``p`` (two-sided), ``min_p``
    (the smallest p the test can give with these run counts, permutation only), ``exact``,
    ``diff`` with ``diff_ci_low`` / ``diff_ci_high``, ``hedges_g`` with ``g_ci_low`` /
    ``g_ci_high`` (per-run measures), ``leave_one_out`` and ``driven_by`` (runs without which
    the difference flips or halves).
    """
    nan = float("nan")
    out: dict[str, Any] = {"n_runs_a": int(stat_a.get("n_runs") or 0), "n_runs_b": int(stat_b.get("n_runs") or 0)}
    mean_a, mean_b = stat_a.get("mean"), stat_b.get("mean")
    diff = (mean_a - mean_b) if mean_a is not None and mean_b is not None else None
    out["diff"] = diff
    if a.pairwise and b.pairwise:
        res = pairs_test(_ci_dict(stat_a), _ci_dict(stat_b))
        out.update(test="Welch-type t on jackknife (runs) + image variances", p=finite_number(res["p"]), min_p=None,
                   exact=None, statistic=finite_number(res["statistic"]), hedges_g=None, g_ci_low=None, g_ci_high=None)
        names_a, loo_a, tot_a = _pair_loo(a)
        names_b, loo_b, tot_b = _pair_loo(b)
        loro = [{"run": n, "group": "a", "diff": float(v - tot_b)} for n, v in zip(names_a, loo_a) if np.isfinite(v)]
        loro += [{"run": n, "group": "b", "diff": float(tot_a - v)} for n, v in zip(names_b, loo_b) if np.isfinite(v)]
    else:
        names_a, va = _run_values(a)
        names_b, vb = _run_values(b)
        if va.size and vb.size:
            res = permutation_test(va, vb, seed=seed)
            min_p = 2.0 / math.comb(va.size + vb.size, va.size) if res["exact"] else None
            out.update(test="permutation of run labels (difference of mean run means)", p=finite_number(res["p"]),
                       min_p=min_p, exact=bool(res["exact"]), statistic=finite_number(res["statistic"]),
                       n_relabellings=int(res["n_relabellings"]))
        else:
            out.update(test="permutation of run labels (difference of mean run means)", p=None, min_p=None,
                       exact=None, statistic=None)
        g = hedges_g(va, vb)
        out.update(hedges_g=finite_number(g["g"]), g_ci_low=finite_number(g["ci_low"]), g_ci_high=finite_number(g["ci_high"]))
        loro = leave_one_run_out(va, vb, names_a, names_b)
    dci = difference_ci(_num(mean_a), _var(stat_a), _num(stat_a.get("df")), _num(mean_b), _var(stat_b),
                        _num(stat_b.get("df"))) if diff is not None else {"ci_low": nan, "ci_high": nan}
    out["diff_ci_low"], out["diff_ci_high"] = finite_number(dci["ci_low"]), finite_number(dci["ci_high"])
    out["leave_one_out"] = loro
    out["driven_by"] = driven_by_one_run(diff if diff is not None else nan, loro) if min(
        out["n_runs_a"], out["n_runs_b"]) >= 2 else []
    return out


def _num(x: Any) -> float:
    v = finite_number(x)
    return v if v is not None else float("nan")


def _var(stat: Mapping[str, Any]) -> float:
    se = finite_number(stat.get("se"))
    return se * se if se is not None else float("nan")


def _ci_dict(stat: Mapping[str, Any]) -> dict[str, float]:
    return {"mean": _num(stat.get("mean")), "se": _num(stat.get("se")), "df": _num(stat.get("df"))}


def adjust_pvalues(comparisons: Sequence[MutableMapping[str, Any]]) -> dict[str, int]:
    """Benjamini-Hochberg across ``comparisons``, in place: ``runs.p_adjusted`` and ``mannwhitney_p_adjusted``.

    The run-level p-values form one family, the image-level Mann-Whitney p-values another.
    Returns the number of defined p-values in each family (m).
    """
    run_p = [(c.get("runs") or {}).get("p") for c in comparisons]
    img_p = [c.get("mannwhitney_p") for c in comparisons]
    run_adj, img_adj = bh_adjust(run_p), bh_adjust(img_p)
    for c, ra, ia in zip(comparisons, run_adj, img_adj):
        if c.get("runs") is not None:
            c["runs"]["p_adjusted"] = finite_number(ra)
        c["mannwhitney_p_adjusted"] = finite_number(ia)
    return {"runs": int(np.isfinite(run_adj).sum()), "images": int(np.isfinite(img_adj).sum())}


def family_inputs(acc: Any, in_set: Sequence[str], pairwise_measures: Sequence[str]) -> dict[Key, FamilyInput]:
    """The family inputs of every cell, from an :class:`~salience_audit.report.accumulate.AuditAccumulator`.

    Image part: the exact count and variance of the per-image group values; runs: the
    exact per-run moments; pairs: the exact per-pair means (stability SSIM). Pairwise
    measures without per-pair means get no family statistic.
    """
    cells: dict[Key, FamilyInput] = {}
    for key, sample in acc.group_samples(in_set).items():
        cells[key] = FamilyInput(n_images=int(sample.n), image_var=float(sample.moments.variance))
    for rec in acc.run_stats(in_set):
        if rec["measure"] in pairwise_measures:
            continue
        cell = cells.get((rec["measure"], rec["variant"], rec["group"], rec["dataset"]))
        if cell is None or not rec["n"]:
            continue
        std = finite_number(rec.get("std"))
        cell.runs[str(rec["run"])] = (int(rec["n"]), float(rec["mean"]), (std or 0.0) ** 2 * (rec["n"] - 1))
    for (measure, group, dataset, pair), mean in acc.pair_means(in_set).items():
        cell = cells.get((measure, "", group, dataset))
        run_a, _, run_b = str(pair).partition("|")
        if cell is not None and finite_number(mean) is not None:
            cell.pairs[(run_a, run_b)] = float(mean)
    return cells


def add_family_level(
    stats: Sequence[MutableMapping[str, Any]],
    comparisons: Sequence[MutableMapping[str, Any]],
    cells: Mapping[Key, FamilyInput],
    pairwise_measures: Sequence[str],
    seed: int = 0,
) -> dict[str, int]:
    """Add ``family`` to every stats record and ``runs`` to every comparison, then BH-adjust (in place).

    Returns the number of p-values adjusted per family (``{"runs": m, "images": m}``).
    """
    by_key: dict[Key, Mapping[str, Any]] = {}
    for rec in stats:
        key = (rec["measure"], rec["variant"], rec["group"], rec["dataset"])
        cell = cells.get(key)
        if cell is None or (rec["measure"] in pairwise_measures and not cell.pairwise):
            rec["family"] = None
            continue
        rec["family"] = family_stat(cell)
        by_key[key] = rec["family"]
    for cmp in comparisons:
        ka = (cmp["measure"], cmp["variant"], cmp["group_a"], cmp["dataset"])
        kb = (cmp["measure"], cmp["variant"], cmp["group_b"], cmp["dataset"])
        if ka in by_key and kb in by_key:
            cmp["runs"] = family_comparison(cells[ka], cells[kb], by_key[ka], by_key[kb], seed=seed)
        else:
            cmp["runs"] = None
    return adjust_pvalues(comparisons)


__all__ = ["FamilyInput", "add_family_level", "adjust_pvalues", "family_comparison", "family_inputs", "family_stat"]
