"""Structured views built from the aggregates: noise curves and cross-run stability matrices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from salience_audit.measures.curve import area_under_curve
from salience_audit.measures.noise_reaction import CURVES as NOISE_CURVES
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.report.formatting import is_number


def noise_amount(variant: str) -> float | None:
    """The amount a of a noise variant ``"a=0.05"`` (None when it is not one)."""
    if not isinstance(variant, str) or not variant.startswith("a="):
        return None
    try:
        value = float(variant[2:])
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def noise_curves(stats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One curve per (noise measure, group, dataset): amounts, means, CI bounds, n, and the AUC of the mean curve.

    The AUC is the trapezoidal area under the mean curve over a; when every image has every
    level it equals the mean of the per-image areas (``noise_auc_*`` measures).
    """
    curves: dict[tuple[str, str, str], list[tuple[float, Mapping[str, Any]]]] = {}
    for rec in stats:
        if rec["measure"] not in NOISE_CURVES:
            continue
        amount = noise_amount(rec["variant"])
        if amount is None:
            continue
        curves.setdefault((rec["measure"], rec["group"], rec["dataset"]), []).append((amount, rec))
    out = []
    for (measure, group, dataset), points in curves.items():
        points.sort(key=lambda item: item[0])
        amounts = [a for a, _ in points]
        means = [r["mean"] for _, r in points]
        finite = [(a, m) for a, m in zip(amounts, means) if is_number(m)]
        auc = area_under_curve([a for a, _ in finite], [m for _, m in finite]) if len(finite) >= 2 else None
        out.append(
            {
                "measure": measure,
                "group": group,
                "dataset": dataset,
                "amount": amounts,
                "mean": means,
                "ci_low": [r["ci_low"] for _, r in points],
                "ci_high": [r["ci_high"] for _, r in points],
                "n": [r["n"] for _, r in points],
                "auc_of_mean_curve": auc,
            }
        )
    return out


def _run_order(group: str, members: set[str], meta_groups: Mapping[str, Sequence[str]]) -> list[str]:
    listed = [r for r in meta_groups.get(group, []) if r in members]
    return listed + sorted(members - set(listed))


def stability_matrices(
    pair_means: Iterable[tuple[tuple[str, str, str], float]],
    meta_groups: Mapping[str, Sequence[str]],
    measure: str = STABILITY_SSIM,
) -> list[dict[str, Any]]:
    """The N x N matrix of mean ``measure`` between the runs of each group, per dataset (and pooled in-set).

    ``pair_means`` are ``((group, dataset, "a|b"), mean over images of the pair's value)``
    in summary order (:meth:`salience_audit.report.summary.accumulate.AuditAccumulator.stability_pair_means`).
    Entry (i, j) is the pair's mean; the diagonal is 1 (a map compared with itself); a pair
    without values is null.
    """
    cells: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for (group, dataset, run), value in pair_means:
        a, b = run.split("|", 1)
        cells.setdefault((group, dataset), {})[(a, b)] = float(value)
    out = []
    for (group, dataset), pairs in cells.items():
        members = {r for pair in pairs for r in pair}
        runs = _run_order(group, members, meta_groups)
        pos = {r: i for i, r in enumerate(runs)}
        matrix: list[list[float | None]] = [[None] * len(runs) for _ in runs]
        for i in range(len(runs)):
            matrix[i][i] = 1.0
        for (a, b), v in pairs.items():
            matrix[pos[a]][pos[b]] = v
            matrix[pos[b]][pos[a]] = v
        off = [v for (a, b), v in pairs.items() if a != b and np.isfinite(v)]
        out.append(
            {
                "measure": measure,
                "group": group,
                "dataset": dataset,
                "runs": runs,
                "matrix": matrix,
                "mean_off_diagonal": float(np.mean(off)) if off else None,
            }
        )
    return out
