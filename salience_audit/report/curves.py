"""Structured views built from the aggregates: noise curves and cross-run stability matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salience_audit.measures.stats import area_under_curve
from salience_audit.report.aggregate import POOLED
from salience_audit.report.formatting import is_number
from salience_audit.report.measure_info import NOISE_CURVES


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
    rows: pd.DataFrame,
    meta_groups: Mapping[str, Sequence[str]],
    in_set: Sequence[str],
    measure: str = "stability_ssim",
) -> list[dict[str, Any]]:
    """The N x N matrix of mean ``measure`` between the runs of each group, per dataset (and pooled in-set).

    Entry (i, j) is the mean over images of the pair's per-image value; the diagonal is 1
    (a map compared with itself); a pair without values is null.
    """
    sel = rows[(rows["measure"] == measure) & rows["run"].str.contains("|", regex=False)]
    if sel.empty:
        return []
    sel = sel[["group", "run", "dataset", "value"]]
    found = set(sel["dataset"].unique())
    present_in = [d for d in in_set if d in found]
    if len(present_in) >= 2:
        pooled = sel[sel["dataset"].isin(present_in)].assign(dataset=POOLED)
        sel = pd.concat([sel, pooled], ignore_index=True)
    pair_means = sel.groupby(["group", "dataset", "run"], sort=False)["value"].mean()
    out = []
    for (group, dataset), sub in pair_means.groupby(level=["group", "dataset"], sort=False):
        pairs = {tuple(run.split("|", 1)): float(v) for (_, _, run), v in sub.items()}
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
