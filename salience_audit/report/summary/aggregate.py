"""Per-image values and their aggregates per group, per run and per dataset.

The unit of every CI and test is the IMAGE: for a model group, each image's value is
first averaged over the group's runs (for pairwise stability rows: over the pairs of runs),
then the mean over images gets a percentile-bootstrap 95% CI. The CIs therefore describe
the uncertainty due to the sample of images, for this set of runs; the spread between runs
is shown by the per-run means.

In-set datasets are also pooled (each image counted once) under the dataset name
:data:`POOLED` when there are two or more of them.

The per-key statistics, comparisons and per-run numbers are made in bounded memory by
:mod:`salience_audit.report.summary.accumulate`, which uses :func:`image_values`,
:func:`expand_pairs` and :func:`describe` on each chunk of rows / each sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salience_audit.report.summary.describe import is_pairwise
from salience_audit.stats.bootstrap import bootstrap_ci

POOLED = "all in-set"
"""Dataset name of the pooled in-set images."""

_IMAGE_KEY = ["measure", "variant", "dataset", "index"]


def image_values(frames: Iterable[pd.DataFrame], unit: str = "group") -> pd.DataFrame:
    """Per-image values: the mean over the rows of each (measure, variant, unit, dataset, index).

    With ``unit="group"`` each image's value is the mean over the group's runs (or run pairs);
    with ``unit="run"`` it is the run's own value, pairwise rows counting for both runs of
    the pair. Returns columns measure, variant, group, [run], dataset, index, value.
    """
    keys = ["measure", "variant", "group", "dataset", "index"] if unit == "group" else [
        "measure", "variant", "group", "run", "dataset", "index"]
    parts = []
    for frame in frames:
        if frame.empty:
            continue
        if unit == "run":
            frame = expand_pairs(frame)
        parts.append(frame.groupby(keys, sort=False, observed=True)["value"].mean().reset_index())
    if not parts:
        return pd.DataFrame({k: pd.Series(dtype="object") for k in keys} | {"value": pd.Series(dtype="float64")})
    return pd.concat(parts, ignore_index=True)


def expand_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of pairwise measures (run ``"a|b"``) duplicated for run a and run b."""
    names = [m for m in pd.unique(frame["measure"]) if is_pairwise(str(m))]
    pairwise = frame["measure"].isin(names) & frame["run"].str.contains("|", regex=False)
    if not pairwise.any():
        return frame
    pairs = frame[pairwise]
    split = pairs["run"].str.split("|", n=1, expand=True)
    first, second = pairs.copy(), pairs.copy()
    first["run"], second["run"] = split[0].to_numpy(), split[1].to_numpy()
    return pd.concat([frame[~pairwise], first, second], ignore_index=True)


def with_pooled(values: pd.DataFrame, in_set: Sequence[str]) -> pd.DataFrame:
    """``values`` plus a copy of its in-set rows under the dataset :data:`POOLED` (2+ in-set datasets)."""
    found = set(values["dataset"].unique())
    present = [d for d in in_set if d in found]
    if len(present) < 2:
        return values
    pooled = values[values["dataset"].isin(present)].copy()
    pooled["dataset"] = POOLED
    return pd.concat([values, pooled], ignore_index=True)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def describe(values: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """n, mean, std (ddof 1) and the bootstrap 95% CI of the mean of the finite values."""
    vals = _finite(values)
    n = int(vals.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean, low, high = bootstrap_ci(vals, n_boot=n_boot, level=0.95, seed=seed)
    std = float(np.std(vals, ddof=1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}
