"""Area under a curve sampled at a few points (noise curves, deletion / insertion curves)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def area_under_curve(x: Iterable[float] | np.ndarray, y: Iterable[float] | np.ndarray) -> float:
    """Trapezoidal area under y(x): sum_i (x_{i+1} - x_i)(y_i + y_{i+1}) / 2.

    Points are first sorted by x (stable), so the area is never negative for y >= 0.
    One point gives 0; no point gives NaN. Not normalised by the x range.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if xs.size != ys.size:
        raise ValueError(f"area_under_curve needs as many x as y values, got {xs.size} and {ys.size}")
    if xs.size == 0:
        return float("nan")
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
