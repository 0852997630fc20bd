"""In-set vs out-of-set comparison of salience (beyond the paper, DESIGN 3b).

- :func:`compare_distributions` - how a per-image measure (typically map entropy) shifts
  from the in-set data to a user-given out-of-set dataset.
- :func:`mean_map_distance` - how far apart the average maps of the two datasets are.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import torch
from scipy import stats as sps
from torch import Tensor

from salience_audit.measures.similarity import ssim_maps


def _clean(values: Iterable[float] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]


def compare_distributions(
    inset: Iterable[float] | np.ndarray | Tensor, outset: Iterable[float] | np.ndarray | Tensor
) -> dict[str, float]:
    """Compare the distribution of a per-image value between in-set and out-of-set data.

    Returns a dict with ``n_inset``, ``n_outset``, ``mean_inset``, ``mean_outset``,
    ``mean_diff`` = mean(outset) - mean(inset), ``ks_statistic`` and ``ks_pvalue``
    (two-sample Kolmogorov-Smirnov, ``scipy.stats.ks_2samp``, two-sided) and
    ``wasserstein`` (earth mover's distance between the empirical distributions,
    ``scipy.stats.wasserstein_distance``, in the units of the values). NaN values are
    ignored; with an empty side every comparison is NaN.
    """
    x, y = _clean(inset), _clean(outset)
    nan = float("nan")
    out = {
        "n_inset": float(x.size),
        "n_outset": float(y.size),
        "mean_inset": float(x.mean()) if x.size else nan,
        "mean_outset": float(y.mean()) if y.size else nan,
    }
    out["mean_diff"] = out["mean_outset"] - out["mean_inset"]
    if x.size == 0 or y.size == 0:
        out.update(ks_statistic=nan, ks_pvalue=nan, wasserstein=nan)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ks = sps.ks_2samp(x, y)
    out["ks_statistic"] = float(ks.statistic)
    out["ks_pvalue"] = float(ks.pvalue)
    out["wasserstein"] = float(sps.wasserstein_distance(x, y))
    return out


def mean_map_distance(maps_a: Tensor, maps_b: Tensor) -> dict[str, float]:
    """Distance between the mean maps of two sets of [0, 1] maps ``[B_a, h, w]``, ``[B_b, h, w]``.

    With M_a, M_b the per-cell means (float64, still in [0, 1], not re-normalised):
    - ``l1`` = mean over cells of |M_a - M_b| (0 identical, 1 opposite extremes);
    - ``ssim`` = SSIM of their 8-bit versions floor(255 M)
      (:func:`salience_audit.measures.similarity.ssim_maps`; 1 identical).
    The two sets may hold different numbers of maps but need the same h x w.
    """
    if maps_a.dim() != 3 or maps_b.dim() != 3:
        raise ValueError(
            f"mean_map_distance expects maps [B, h, w], got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}"
        )
    if maps_a.shape[-2:] != maps_b.shape[-2:]:
        raise ValueError(
            f"mean_map_distance needs maps of the same size, got {tuple(maps_a.shape[-2:])} "
            f"and {tuple(maps_b.shape[-2:])}"
        )
    if maps_a.shape[0] == 0 or maps_b.shape[0] == 0:
        return {"l1": float("nan"), "ssim": float("nan")}
    mean_a = maps_a.to(torch.float64).mean(dim=0, keepdim=True)
    mean_b = maps_b.to(device=maps_a.device, dtype=torch.float64).mean(dim=0, keepdim=True)
    return {
        "l1": float((mean_a - mean_b).abs().mean()),
        "ssim": float(ssim_maps(mean_a, mean_b)[0]),
    }
