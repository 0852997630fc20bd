"""Model selection among equally accurate runs, by how they decide.

One row per run with its accuracy, ROC-AUC and four salience properties measured on the
in-set data (pooled when there are several in-set datasets):

- ``entropy_norm``: mean normalised salience entropy (lower = more focused);
- ``stability``: mean SSIM of the run's maps to the maps of the other runs of its group;
- ``equivariance``: mean equivariance over the 12 non-identity transformations;
- ``faithfulness``: object-mode minus background-mode drop of the true-class probability.

Rule: each column is ranked over all runs (1 = best in that column's better direction;
ties share the best rank). Selection uses VALIDATION data only: the "equally accurate"
set holds the model runs whose validation accuracy (``best_val_acc`` of the run's
``run.json``, copied into ``audit.json``) is within ``tolerance_pp`` percentage points
(default 1) of the best run. The accuracy on the audited (test) data is shown but never
selects: a run without a validation accuracy gets no overall rank, and when no run has one
the accuracy filter is skipped (all model runs are ranked, and the reason says so).
Reference groups (human annotations) are not models and take no part. Within that set, each run's overall score is the mean of its ranks
(re-ranked within the set) over the salience columns that have values; the overall rank
orders runs by that score, ties going to the more accurate run. Runs outside the set get
no overall rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salience_audit.measures.entropy import ENTROPY_NORM
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.report.formatting import is_number
from salience_audit.report.summary.families import REFERENCE_GROUPS

#: (column, label, better direction)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "Accuracy", "higher"),
    ("auc", "ROC-AUC", "higher"),
    (ENTROPY_NORM, "Entropy (normalised)", "lower"),
    ("stability", "Stability (SSIM to other runs)", "higher"),
    ("equivariance", "Equivariance (all)", "higher"),
    ("faithfulness", "Degradation faithfulness", "higher"),
)
SALIENCE_COLUMNS: tuple[str, ...] = (ENTROPY_NORM, "stability", "equivariance", "faithfulness")

_SOURCES = {
    ENTROPY_NORM: (ENTROPY_NORM, ""),
    "stability": (STABILITY_SSIM, ""),
    "equivariance": ("equivariance", "all"),
    "faithfulness": ("degrade_faithfulness", ""),
}


def rule_text(tolerance_pp: float, accuracy_source: str | None) -> str:
    """The selection rule in words, for the report."""
    if accuracy_source == "validation":
        first = (f"Runs whose validation accuracy (best_val_acc of run.json) is within {tolerance_pp:g} percentage "
                 "point(s) of the best run are treated as equally accurate; runs without one get no overall rank. "
                 "Test accuracy is shown but never used to select.")
    else:
        first = ("No run has a validation accuracy (best_val_acc in run.json), so runs are not filtered by accuracy: "
                 "all model runs are ranked. Test accuracy is shown but never used to select.")
    return (
        f"{first} Each column is ranked over all runs (1 = best; entropy: lower is better, all others: higher). "
        "Among the equally accurate runs, the overall rank orders the mean of their ranks (within that set) over "
        "the salience columns entropy, stability, equivariance and faithfulness; ties go to the more accurate run. "
        "Runs outside the set get no overall rank."
    )


def validation_accuracy(meta: Mapping[str, Any]) -> float | None:
    """A run's validation accuracy in [0, 1] from its ``audit.json`` entry (``best_val_acc`` etc.; percent scaled)."""
    for key in ("val_acc", "val_accuracy", "best_val_acc"):
        value = meta.get(key)
        if is_number(value):
            value = float(value)
            return value / 100.0 if value > 1.0 else value
    return None


def run_groups(per_run: Sequence[Mapping[str, Any]], audit_meta: Mapping[str, Any]) -> dict[str, str]:
    groups: dict[str, str] = {}
    for group, runs in (audit_meta.get("groups") or {}).items():
        for run in runs or []:
            groups.setdefault(str(run), str(group))
    for run, meta in (audit_meta.get("runs") or {}).items():
        if isinstance(meta, Mapping) and meta.get("group") is not None:
            groups.setdefault(str(run), str(meta["group"]))
    for rec in per_run:
        if "|" not in rec["run"]:
            groups.setdefault(rec["run"], rec["group"])
    return groups


def selection_table(
    per_run: Sequence[Mapping[str, Any]],
    detection_per_run: Sequence[Mapping[str, Any]],
    audit_meta: Mapping[str, Any],
    dataset: str,
    tolerance_pp: float = 1.0,
) -> dict[str, Any]:
    """The model-selection view: ``{"dataset", "accuracy_source", "tolerance_pp", "rule", "rows"}``."""
    groups_of_runs = run_groups(per_run, audit_meta)
    runs_meta = audit_meta.get("runs") or {}
    lookup = {(r["measure"], r["variant"], r["run"]): r["mean"] for r in per_run if r["dataset"] == dataset}
    detection = {r["run"]: r for r in detection_per_run if r["dataset"] == dataset}
    rows = []
    for run, group in groups_of_runs.items():
        if group in REFERENCE_GROUPS:
            continue
        det = detection.get(run, {})
        row: dict[str, Any] = {
            "run": run,
            "group": group,
            "val_accuracy": validation_accuracy(runs_meta.get(run) or {}),
            "test_accuracy": det.get("accuracy"),
            "auc": det.get("roc_auc"),
        }
        for col, (measure, variant) in _SOURCES.items():
            row[col] = lookup.get((measure, variant, run))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return {"dataset": dataset, "accuracy_source": None, "tolerance_pp": tolerance_pp, "rule": "", "rows": [],
                "selected": None, "reason": "no model runs"}
    frame = frame.astype({c: "float64" for c in frame.columns if c not in ("run", "group")})
    has_val = frame["val_accuracy"].notna()
    source = "validation" if has_val.any() else None
    frame["accuracy"] = frame["val_accuracy"]
    directions = {col: better for col, _, better in COLUMNS}
    for col, better in directions.items():
        frame[f"rank_{col}"] = frame[col].rank(ascending=(better == "lower"), method="min", na_option="keep")
    best = frame["accuracy"].max()
    cutoff = best - tolerance_pp / 100.0 - 1e-12
    if source is None:
        frame["equally_accurate"] = True
        reason = "no run has a validation accuracy: all model runs ranked, accuracy not used"
    else:
        frame["equally_accurate"] = frame["accuracy"] >= cutoff
        missing = frame.loc[~has_val, "run"].tolist()
        reason = (f"validation accuracy within {tolerance_pp:g} pp of the best ({best:.4f})"
                  + (f"; no validation accuracy, not ranked: {', '.join(missing)}" if missing else ""))
    frame["selection_score"] = np.nan
    frame["overall_rank"] = np.nan
    chosen = frame[frame["equally_accurate"]]
    if not chosen.empty:
        ranks = pd.DataFrame(
            {
                col: chosen[col].rank(ascending=(directions[col] == "lower"), method="min", na_option="keep")
                for col in SALIENCE_COLUMNS
                if chosen[col].notna().any()
            },
            index=chosen.index,
        )
        if not ranks.empty:
            score = ranks.mean(axis=1, skipna=True)
            frame.loc[chosen.index, "selection_score"] = score
            order = pd.DataFrame({"score": score, "acc": -chosen["accuracy"]}).sort_values(["score", "acc"])
            order = order[order["score"].notna()]
            frame.loc[order.index, "overall_rank"] = np.arange(1, len(order) + 1, dtype=np.float64)
    frame = frame.sort_values(["overall_rank", "accuracy"], ascending=[True, False], na_position="last")
    top = frame[frame["overall_rank"] == 1.0]
    selected = str(top["run"].iloc[0]) if not top.empty else None
    records = frame.to_dict(orient="records")
    for rec in records:
        rec["equally_accurate"] = bool(rec["equally_accurate"])
    return {
        "dataset": dataset,
        "accuracy_source": source,
        "tolerance_pp": tolerance_pp,
        "rule": rule_text(tolerance_pp, source),
        "selected": selected,
        "reason": reason,
        "rows": records,
    }
