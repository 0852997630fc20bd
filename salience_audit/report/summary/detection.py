"""Detection quality per run x dataset and per group (mean and CI over the group's runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salience_audit.stats.bootstrap import bootstrap_ci

METRICS: tuple[str, ...] = ("accuracy", "roc_auc", "apcer", "bpcer", "acer")


def image_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """One labelled score per (group, run, dataset, image): the mean of its finite ``score`` rows, label 0 or 1.

    The per-run metrics (:meth:`salience_audit.report.summary.accumulate.AuditAccumulator.detection_per_run`)
    are :func:`~salience_audit.stats.detection.detection_metrics` of these scores.
    """
    sel = rows[(rows["measure"] == "score") & (rows["variant"] == "") & rows["label"].isin([0, 1])]
    sel = sel[np.isfinite(sel["value"].to_numpy())]
    return sel.groupby(["group", "run", "dataset", "index"], sort=False).agg(
        value=("value", "mean"), label=("label", "first")
    ).reset_index()


def detection_per_group(per_run: Sequence[Mapping[str, Any]], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """For each (group, dataset) and metric: mean over runs with a bootstrap 95% CI over runs."""
    frame = pd.DataFrame(list(per_run))
    if frame.empty:
        return []
    records = []
    for (group, dataset), sub in frame.groupby(["group", "dataset"], sort=False):
        rec: dict[str, Any] = {"group": group, "dataset": dataset, "n_runs": int(len(sub))}
        if "n" in sub:
            rec["n_images"] = int(sub["n"].max())
        for metric in METRICS:
            vals = sub[metric].to_numpy(dtype=np.float64) if metric in sub else np.array([])
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                rec[metric] = {"mean": None, "ci_low": None, "ci_high": None, "n_runs": 0}
                continue
            mean, low, high = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
            rec[metric] = {"mean": mean, "ci_low": low, "ci_high": high, "n_runs": int(vals.size)}
        records.append(rec)
    return records
