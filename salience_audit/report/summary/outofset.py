"""In-set vs out-of-set comparison: entropy distributions and distances between mean maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from salience_audit.stats.distribution import compare_distributions, mean_map_distance


def _pick(result: Mapping[str, Any], *names: str) -> Any:
    return next((result[n] for n in names if n in result), None)


def shift_record(
    measure: str, group: str, dataset: str, inset: np.ndarray, outset: np.ndarray
) -> dict[str, Any]:
    """compare_distributions of per-image ``measure`` between in-set images and one out-of-set dataset.

    ``inset`` / ``outset`` are per-image group values (mean over the group's runs);
    ``mean_diff`` is out-of-set minus in-set. The summary makes one record per group and
    out-of-set dataset, the in-set side being every in-set image
    (:meth:`salience_audit.report.summary.accumulate.AuditAccumulator.entropy_shift`).
    """
    inset = np.asarray(inset, dtype=np.float64)
    outset = np.asarray(outset, dtype=np.float64)
    res = compare_distributions(inset, outset)
    return {
        "measure": measure,
        "group": group,
        "dataset": dataset,
        "n_inset": int(np.isfinite(inset).sum()),
        "n_outset": int(np.isfinite(outset).sum()),
        "mean_inset": _pick(res, "mean_inset"),
        "mean_outset": _pick(res, "mean_outset"),
        "mean_diff": _pick(res, "mean_diff"),
        "ks_stat": _pick(res, "ks_statistic", "ks_stat"),
        "ks_p": _pick(res, "ks_pvalue", "ks_p"),
        "wasserstein": _pick(res, "wasserstein"),
    }


def _inset_mean_map(
    maps: Mapping[str, np.ndarray], run: str, in_set: Sequence[str], counts: Mapping[str, int]
) -> np.ndarray | None:
    found = [(maps[f"{run}::{d}"], counts.get(d, 1) or 1) for d in in_set if f"{run}::{d}" in maps]
    if not found:
        return None
    shapes = {m.shape for m, _ in found}
    if len(shapes) != 1:
        return None
    weights = np.array([w for _, w in found], dtype=np.float64)
    stack = np.stack([np.asarray(m, dtype=np.float64) for m, _ in found])
    return np.tensordot(weights / weights.sum(), stack, axes=1)


def mean_map_shift(
    mean_maps: Mapping[str, np.ndarray] | None,
    run_groups: Mapping[str, str],
    in_set: Sequence[str],
    out_of_set: Sequence[str],
    counts: Mapping[str, int],
) -> list[dict[str, Any]]:
    """Per run and out-of-set dataset: L1 distance and SSIM between the in-set and out-of-set mean maps.

    The in-set mean map is the image-count-weighted average of the in-set datasets' mean maps.
    """
    if not mean_maps:
        return []
    records = []
    for run, group in run_groups.items():
        inset = _inset_mean_map(mean_maps, run, in_set, counts)
        if inset is None:
            continue
        for dataset in out_of_set:
            key = f"{run}::{dataset}"
            if key not in mean_maps or np.shape(mean_maps[key]) != inset.shape:
                continue
            a = torch.as_tensor(inset, dtype=torch.float64).clamp(0, 1)[None]
            b = torch.as_tensor(np.asarray(mean_maps[key], dtype=np.float64)).clamp(0, 1)[None]
            dist = mean_map_distance(a, b)
            records.append({"run": run, "group": group, "dataset": dataset, "l1": dist["l1"], "ssim": dist["ssim"]})
    return records
