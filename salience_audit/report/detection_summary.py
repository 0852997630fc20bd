"""Detection quality per run x dataset and per group (mean and CI over the group's runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salience_audit.measures.detection import detection_metrics
from salience_audit.measures.stats import bootstrap_ci
from salience_audit.report.aggregate import POOLED

METRICS: tuple[str, ...] = ("accuracy", "roc_auc", "apcer", "bpcer", "acer")


def _scores(rows: pd.DataFrame) -> pd.DataFrame:
    """One labelled score per (group, run, dataset, image)."""
    sel = rows[(rows["measure"] == "score") & (rows["variant"] == "") & rows["label"].isin([0, 1])]
    sel = sel[np.isfinite(sel["value"].to_numpy())]
    return sel.groupby(["group", "run", "dataset", "index"], sort=False).agg(
        value=("value", "mean"), label=("label", "first")
    ).reset_index()


def detection_per_run(rows: pd.DataFrame, in_set: Sequence[str], threshold: float = 0.5) -> list[dict[str, Any]]:
    """detection_metrics per (run, dataset), plus the pooled in-set data when 2+ in-set datasets exist."""
    scores = _scores(rows)
    if scores.empty:
        return []
    found = set(scores["dataset"].unique())
    present = [d for d in in_set if d in found]
    if len(present) >= 2:
        scores = pd.concat([scores, scores[scores["dataset"].isin(present)].assign(dataset=POOLED)], ignore_index=True)
    records = []
    for (group, run, dataset), sub in scores.groupby(["group", "run", "dataset"], sort=False):
        rec: dict[str, Any] = {"group": group, "run": run, "dataset": dataset}
        rec.update(detection_metrics(sub["value"].to_numpy(), sub["label"].to_numpy(), threshold=threshold))
        records.append(rec)
    return records


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
