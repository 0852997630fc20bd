"""Mean of per-sample values with a percentile-bootstrap confidence interval."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from salience_audit.stats.values import clean_values

#: Largest number of random indices drawn at once by :func:`bootstrap_ci`.
_BOOTSTRAP_CHUNK = 4_000_000


def bootstrap_ci(
    values: Iterable[float] | np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap confidence interval.

    ``n_boot`` resamples of size n are drawn with replacement (numpy ``default_rng(seed)``,
    so the result is reproducible); the interval is the (1 - level)/2 and (1 + level)/2
    quantiles of the resample means. Vectorised, in chunks of at most a few million drawn
    indices. Returns ``(mean, low, high)``; one value v gives ``(v, v, v)``; no (non-NaN)
    value gives ``(nan, nan, nan)``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arr = clean_values(values)
    n = arr.size
    if n == 0:
        return (float("nan"), float("nan"), float("nan"))
    mean = float(arr.mean())
    if n == 1:
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per_chunk):
        stop = min(start + per_chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return (mean, float(low), float(high))
