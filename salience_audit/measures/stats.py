"""Aggregate statistics of per-sample measure values (numpy, float64).

- :func:`bootstrap_ci` - mean with a percentile-bootstrap confidence interval.
- :func:`compare_groups` - two-sample tests and effect size (e.g. xent vs cyborg models).
- :func:`area_under_curve` - trapezoidal area (e.g. a measure over noise levels).
- :class:`StreamingMoments`, :class:`Reservoir` - merge-able streaming aggregates for
  result sets too large to hold (count/mean/variance, and a uniform sample for CIs).

NaN values are ignored everywhere (as pandas' ``mean`` does): a per-sample measure that
is undefined for one image does not poison its aggregate.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

#: Largest number of random indices drawn at once by :func:`bootstrap_ci`.
_BOOTSTRAP_CHUNK = 4_000_000


def _clean(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Values (array-like or torch tensor, any device) as a flat float64 array without NaN."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]


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
    arr = _clean(values)
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


def cliffs_delta(a: Iterable[float] | np.ndarray, b: Iterable[float] | np.ndarray) -> float:
    """Cliff's delta = P(a > b) - P(a < b) over all (a_i, b_j) pairs, in [-1, 1].

    Computed from the Mann-Whitney statistic with average ranks,
    U_a = #(a > b) + #(a = b) / 2, as delta = 2 U_a / (n_a n_b) - 1 (O(n log n)).
    NaN when either group is empty.
    """
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return float("nan")
    ranks = sps.rankdata(np.concatenate([x, y]))
    u_a = ranks[: x.size].sum() - x.size * (x.size + 1) / 2.0
    return float(2.0 * u_a / (x.size * y.size) - 1.0)


def compare_groups(a: Iterable[float] | np.ndarray, b: Iterable[float] | np.ndarray) -> dict[str, float]:
    """Compare two groups of values (e.g. per-image entropy of two model families).

    Returns a dict with
    - ``n_a``, ``n_b``, ``mean_a``, ``mean_b``;
    - ``mean_diff`` = mean(a) - mean(b);
    - ``mannwhitney_u`` (U of group a) and ``mannwhitney_p`` (two-sided,
      ``scipy.stats.mannwhitneyu``);
    - ``welch_t`` and ``welch_p`` (two-sided t-test without equal variances,
      ``scipy.stats.ttest_ind(equal_var=False)``);
    - ``cliffs_delta`` = P(a > b) - P(a < b) (:func:`cliffs_delta`).

    Positive ``mean_diff`` and ``cliffs_delta`` mean a is larger. Quantities that are
    undefined (an empty group; fewer than two values or zero variance for Welch) are NaN.
    """
    x, y = _clean(a), _clean(b)
    out: dict[str, float] = {
        "n_a": float(x.size),
        "n_b": float(y.size),
        "mean_a": float(x.mean()) if x.size else float("nan"),
        "mean_b": float(y.mean()) if y.size else float("nan"),
    }
    out["mean_diff"] = out["mean_a"] - out["mean_b"]
    nan = float("nan")
    out.update(mannwhitney_u=nan, mannwhitney_p=nan, welch_t=nan, welch_p=nan, cliffs_delta=nan)
    if x.size == 0 or y.size == 0:
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        mw = sps.mannwhitneyu(x, y, alternative="two-sided")
        out["mannwhitney_u"] = float(mw.statistic)
        out["mannwhitney_p"] = float(mw.pvalue)
        if x.size >= 2 and y.size >= 2:
            welch = sps.ttest_ind(x, y, equal_var=False)
            out["welch_t"] = float(welch.statistic)
            out["welch_p"] = float(welch.pvalue)
    out["cliffs_delta"] = cliffs_delta(x, y)
    return out


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


@dataclass
class StreamingMoments:
    """Count, mean and sum of squared deviations (M2) of a stream of values.

    ``update`` folds in a batch, ``merge`` combines two partial results (e.g. from shards
    or workers) with Chan et al.'s parallel form of Welford's update:
    delta = mean_b - mean_a, n = n_a + n_b, mean = mean_a + delta n_b / n,
    M2 = M2_a + M2_b + delta^2 n_a n_b / n. NaN values are ignored.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, values: Iterable[float] | np.ndarray) -> StreamingMoments:
        """Fold a batch of values in (in place); returns ``self``."""
        arr = _clean(values)
        if arr.size:
            batch_mean = float(arr.mean())
            batch = StreamingMoments(int(arr.size), batch_mean, float(np.sum((arr - batch_mean) ** 2)))
            self._absorb(batch)
        return self

    def merge(self, other: StreamingMoments) -> StreamingMoments:
        """A new accumulator holding both streams (neither input is changed)."""
        merged = StreamingMoments(self.count, self.mean, self.m2)
        merged._absorb(other)
        return merged

    def _absorb(self, other: StreamingMoments) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / total
        self.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / total
        self.count = total

    @property
    def variance(self) -> float:
        """Sample variance M2 / (n - 1); NaN for fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation sqrt(M2 / (n - 1)); NaN for fewer than two values."""
        return float(np.sqrt(self.variance))

    def result(self) -> dict[str, float]:
        """``{"n", "mean", "std"}`` (mean NaN when empty)."""
        return {"n": float(self.count), "mean": self.mean if self.count else float("nan"), "std": self.std}


@dataclass(eq=False)
class Reservoir:
    """A uniform random sample of at most ``k`` values of a stream, merge-able.

    Bottom-k sampling: every value gets an independent key u ~ U(0, 1) and the reservoir
    keeps the k values with the smallest keys, so every subset of size k of the stream is
    equally likely. Two reservoirs merge by keeping the k smallest keys of their union,
    which is again a uniform sample of the combined stream; give each shard its own seed.
    NaN values are ignored. Use the sample for bootstrap CIs of streams too large to hold.
    """

    k: int
    seed: int = 0
    count: int = 0
    _values: np.ndarray = field(init=False, repr=False)
    _keys: np.ndarray = field(init=False, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"reservoir size k must be at least 1, got {self.k}")
        self._rng = np.random.default_rng(self.seed)
        self._values = np.empty(0, dtype=np.float64)
        self._keys = np.empty(0, dtype=np.float64)

    def update(self, values: Iterable[float] | np.ndarray) -> Reservoir:
        """Offer a batch of values (in place); returns ``self``."""
        arr = _clean(values)
        if arr.size:
            self.count += int(arr.size)
            self._keep(np.concatenate([self._values, arr]), np.concatenate([self._keys, self._rng.random(arr.size)]))
        return self

    def merge(self, other: Reservoir) -> Reservoir:
        """A new reservoir (size k of ``self``) sampling both streams."""
        merged = Reservoir(self.k, self.seed)
        merged.count = self.count + other.count
        merged._keep(np.concatenate([self._values, other._values]), np.concatenate([self._keys, other._keys]))
        return merged

    def _keep(self, values: np.ndarray, keys: np.ndarray) -> None:
        if values.size > self.k:
            chosen = np.argpartition(keys, self.k - 1)[: self.k]
            values, keys = values[chosen], keys[chosen]
        order = np.argsort(keys, kind="stable")
        self._values, self._keys = values[order], keys[order]

    @property
    def values(self) -> np.ndarray:
        """The sampled values (min(k, count) of them, in random order), a copy."""
        return self._values.copy()

    def __len__(self) -> int:
        return int(self._values.size)
