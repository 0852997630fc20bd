"""Per-sample values as a flat float64 array without NaN (the input of every statistic here).

NaN values are ignored everywhere in :mod:`salience_audit.stats` (as pandas' ``mean`` does):
a per-sample measure that is undefined for one image does not poison its aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def clean_values(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Values (array-like or torch tensor, any device) as a flat float64 array without NaN."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]
