"""Area under a curve sampled at a few points (noise curves, deletion / insertion curves, report curves)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

import numpy as np
import torch
from torch import Tensor


@overload
def area_under_curve(x: Iterable[float] | np.ndarray | Tensor, y: Tensor) -> Tensor: ...
@overload
def area_under_curve(x: Iterable[float] | np.ndarray | Tensor, y: Iterable[float] | np.ndarray) -> float | np.ndarray: ...


def area_under_curve(x, y):  # type: ignore[no-untyped-def]
    """Trapezoidal area under y(x): sum_i (x_{i+1} - x_i)(y_i + y_{i+1}) / 2, along the last axis of y.

    ``x`` holds the K sample points, ``y`` the values ``[..., K]`` (a 1-D y gives a float, a
    batch of curves an array, a torch tensor a float64 tensor on its device). Points are first
    sorted by x (stable), so the area is never negative for y >= 0. One point gives 0; no
    point gives NaN. Not normalised by the x range.
    """
    if isinstance(y, Tensor):
        xs_t = torch.as_tensor(x, dtype=torch.float64, device=y.device).reshape(-1)
        ys_t = y.to(torch.float64)
        _check(xs_t.shape[0], ys_t.shape[-1] if ys_t.dim() else 0)
        if xs_t.shape[0] == 0:
            return torch.full(ys_t.shape[:-1], float("nan"), dtype=torch.float64, device=y.device)
        order = torch.argsort(xs_t, stable=True)
        xs_t, ys_t = xs_t[order], ys_t[..., order]
        return (torch.diff(xs_t) * (ys_t[..., 1:] + ys_t[..., :-1]) / 2.0).sum(dim=-1)
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64)
    if ys.ndim == 0:
        ys = ys.reshape(1)
    _check(xs.size, ys.shape[-1])
    if xs.size == 0:
        return float("nan") if ys.ndim == 1 else np.full(ys.shape[:-1], np.nan)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[..., order]
    area = np.sum(np.diff(xs) * (ys[..., 1:] + ys[..., :-1]) / 2.0, axis=-1)
    return float(area) if ys.ndim == 1 else area


def _check(n_x: int, n_y: int) -> None:
    if n_x != n_y:
        raise ValueError(f"area_under_curve needs as many x as y values, got {n_x} and {n_y}")
