"""Per-image, per-run values the report derives from the raw per-sample rows.

All derived rows keep the row schema (dataset, path, index, label, group, run, measure,
variant, value), so they are aggregated exactly like measured rows:

- transforms ``all``: for ``equivariance``, ``invariance`` and ``transform_score_change``,
  the mean over the non-identity variants of each image (variant ``"all"``);
- ``degrade_accuracy_change`` (variant = mode): ``degrade_correct - correct`` of the image,
  so its mean over images is the accuracy change of the mode;
- ``degrade_true_score_drop`` (variant = mode): the loss of probability of the *true* class,
  ``-(score change)`` for synthetic images, ``+(score change)`` for real ones, NaN for
  unlabelled images;
- ``degrade_faithfulness`` (variant ``""``): object-mode true-class drop minus
  background-mode true-class drop of the image (higher = the model depends more on the
  regions it highlights).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROW_COLUMNS: list[str] = ["dataset", "path", "index", "label", "group", "run", "measure", "variant", "value"]
"""Columns of the per-sample rows."""

TRANSFORM_MEASURES: tuple[str, ...] = ("equivariance", "invariance", "transform_score_change")
_KEY = ["dataset", "index", "group", "run"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in ROW_COLUMNS})


def transforms_all(rows: pd.DataFrame) -> pd.DataFrame:
    """Variant ``"all"``: mean over the non-identity transformations of each image and run."""
    sel = rows[rows["measure"].isin(TRANSFORM_MEASURES) & (rows["variant"] != "identity") & (rows["variant"] != "all")]
    if sel.empty:
        return _empty()
    out = (
        sel.groupby(["measure", *_KEY, "path", "label"], observed=True, sort=False)["value"].mean().reset_index()
    )
    out["variant"] = "all"
    return out[ROW_COLUMNS]


def _true_class_drop(change: pd.Series, label: pd.Series) -> pd.Series:
    sign = np.where(label.to_numpy() == 1, -1.0, np.where(label.to_numpy() == 0, 1.0, np.nan))
    return change.astype("float64") * sign


def degradation(rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy change, true-class probability drop and faithfulness per image and run."""
    parts: list[pd.DataFrame] = []
    correct = rows[(rows["measure"] == "correct")][[*_KEY, "value"]]
    correct = correct.groupby(_KEY, observed=True, sort=False)["value"].mean().rename("clean").reset_index()
    deg_correct = rows[rows["measure"] == "degrade_correct"]
    if not deg_correct.empty and not correct.empty:
        merged = deg_correct.merge(correct, on=_KEY, how="inner")
        merged["value"] = merged["value"] - merged["clean"]
        merged["measure"] = "degrade_accuracy_change"
        parts.append(merged[ROW_COLUMNS])
    change = rows[rows["measure"] == "degrade_score_change"]
    if not change.empty:
        drop = change.copy()
        drop["value"] = _true_class_drop(drop["value"], drop["label"])
        drop["measure"] = "degrade_true_score_drop"
        parts.append(drop[ROW_COLUMNS])
        wide = drop.pivot_table(index=[*_KEY, "path", "label"], columns="variant", values="value", aggfunc="mean",
                                observed=True)
        if {"object", "background"} <= set(wide.columns):
            faith = (wide["object"] - wide["background"]).rename("value").reset_index()
            faith["measure"] = "degrade_faithfulness"
            faith["variant"] = ""
            parts.append(faith[ROW_COLUMNS])
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True)


def derive_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """All derived rows (same columns as the input rows)."""
    parts = [p for p in (transforms_all(rows), degradation(rows)) if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True)
