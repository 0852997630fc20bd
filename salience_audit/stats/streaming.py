"""Merge-able streaming aggregates for result sets too large to hold.

- :class:`StreamingMoments` - exact count, mean and variance (Chan et al.'s pairwise update);
- :class:`Reservoir` - a uniform sample of bounded size (for CIs and rank tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from salience_audit.stats.values import clean_values


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
        arr = clean_values(values)
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
        arr = clean_values(values)
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
