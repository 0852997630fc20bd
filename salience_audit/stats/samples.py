"""Bounded per-key aggregates of a stream of values: what the summary keeps per key, whatever the data size.

- :class:`ValueSample`: exact count / mean / std, and the values themselves up to a
  capacity (a uniform reservoir beyond);
- :class:`ChunkMoments`: running moments fed a chunk at a time (exact as one pass while a
  key's values arrive in one chunk);
- :class:`IndexRanges`: the set of image indices seen, as merged ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from salience_audit.stats.streaming import Reservoir, StreamingMoments


class ValueSample:
    """Exact count / mean / std of a stream of values, and the values up to ``capacity``.

    Only finite values count (as in ``describe``: NaN and +-inf are left out); ``rows``
    counts every value offered. While at most ``capacity`` finite values have arrived they
    are all kept, in arrival order (:attr:`exact`); the next one turns the sample into a
    uniform :class:`Reservoir` of ``capacity`` values (bottom-k with random keys; incoming
    values are buffered and folded in ``capacity`` at a time, which does not change the
    distribution). With ``keep=False`` the sample is dropped instead (only the moments go
    on): used for pooled samples that can be rebuilt by merging. ``capacity=None`` keeps
    every value.
    """

    __slots__ = (
        "_buf",
        "_held",
        "_n_pending",
        "_pending",
        "capacity",
        "dropped",
        "keep",
        "moments",
        "reservoir",
        "rows",
        "seed",
    )

    def __init__(self, capacity: int | None, seed: int = 0, keep: bool = True) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self.keep = keep
        self.moments = StreamingMoments()
        self.rows = 0
        self._buf = np.empty(0, dtype=np.float64)
        self._held = 0
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self.reservoir: Reservoir | None = None
        self.dropped = False

    @property
    def n(self) -> int:
        """Number of finite values seen (exact)."""
        return self.moments.count

    @property
    def exact(self) -> bool:
        """True while every finite value is held."""
        return self.reservoir is None and not self.dropped

    def update(self, values: np.ndarray) -> None:
        """Offer a batch of values (float64, any)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        self.rows += int(values.size)
        vals = values[np.isfinite(values)]
        if vals.size == 0:
            return
        self.moments.update(vals)
        if self.dropped:
            return
        if self.reservoir is not None:
            self._pending.append(vals)
            self._n_pending += int(vals.size)
            if self._n_pending >= self.capacity:
                self._flush()
            return
        if self.capacity is None or self._held + vals.size <= self.capacity:
            self._append(vals)
            return
        if not self.keep:
            self._buf, self._held, self.dropped = np.empty(0, dtype=np.float64), 0, True
            return
        self.reservoir = Reservoir(self.capacity, self.seed)
        self.reservoir.update(np.concatenate([self._buf[: self._held], vals]))
        self._buf, self._held = np.empty(0, dtype=np.float64), 0

    def _append(self, vals: np.ndarray) -> None:
        need = self._held + vals.size
        if need > self._buf.size:
            size = max(need, 2 * self._buf.size, 16)
            if self.capacity is not None:
                size = min(size, self.capacity)
            grown = np.empty(size, dtype=np.float64)
            grown[: self._held] = self._buf[: self._held]
            self._buf = grown
        self._buf[self._held : need] = vals
        self._held = need

    def _flush(self) -> None:
        if self._pending and self.reservoir is not None:
            self.reservoir.update(np.concatenate(self._pending))
            self._pending, self._n_pending = [], 0

    def values(self) -> np.ndarray:
        """Every finite value in arrival order (exact), else the reservoir's sample (a copy)."""
        if self.dropped:
            raise ValueError("a dropped sample has no values")
        if self.reservoir is not None:
            self._flush()
            return self.reservoir.values
        return self._buf[: self._held].copy()

    def as_reservoir(self) -> Reservoir:
        """The sample as a reservoir of ``capacity`` values (for merging)."""
        if self.reservoir is not None:
            self._flush()
            return self.reservoir
        res = Reservoir(self.capacity or max(self._held, 1), self.seed)
        res.update(self._buf[: self._held])
        return res

    def stored(self) -> int:
        """Numbers held (values, reservoir keys, buffered values): the sample's memory in float64s."""
        held = self._buf.size + self._n_pending
        if self.reservoir is not None:
            held += 2 * len(self.reservoir)
        return int(held)

    @classmethod
    def merged(cls, parts: Sequence[ValueSample], capacity: int | None, seed: int) -> ValueSample:
        """One sample of the concatenated streams (exact when all are and they fit, else a merged reservoir)."""
        if len(parts) == 1:
            return parts[0]
        out = cls(capacity, seed)
        for part in parts:
            out.moments = out.moments.merge(part.moments)
            out.rows += part.rows
        if all(p.exact for p in parts) and (capacity is None or sum(p._held for p in parts) <= capacity):
            for part in parts:
                out._append(part._buf[: part._held])
            return out
        reservoir: Reservoir | None = None
        for part in parts:
            if part.n == 0:
                continue
            res = part.as_reservoir()
            reservoir = res if reservoir is None else reservoir.merge(res)
        out.reservoir = reservoir if reservoir is not None else Reservoir(capacity or 1, seed)
        return out


class IndexRanges:
    """A set of image indices kept as sorted disjoint ranges ``[start, stop)``.

    Shards hold contiguous ranges of images, so this stays a handful of ranges per
    dataset (one more per gap, e.g. a rejected image).
    """

    __slots__ = ("starts", "stops")

    def __init__(self) -> None:
        self.starts = np.empty(0, dtype=np.int64)
        self.stops = np.empty(0, dtype=np.int64)

    def add(self, indices: np.ndarray) -> None:
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        if idx.size == 0:
            return
        breaks = np.flatnonzero(np.diff(idx) != 1)
        starts = np.concatenate([self.starts, idx[np.r_[0, breaks + 1]]])
        stops = np.concatenate([self.stops, idx[np.r_[breaks, idx.size - 1]] + 1])
        order = np.argsort(starts, kind="stable")
        starts, reach = starts[order], np.maximum.accumulate(stops[order])
        new = np.r_[True, starts[1:] > reach[:-1]]  # touching ranges merge
        last = np.r_[np.flatnonzero(new)[1:] - 1, starts.size - 1]
        self.starts, self.stops = starts[new], reach[last]

    def __len__(self) -> int:
        return int(np.sum(self.stops - self.starts))

    def stored(self) -> int:
        return int(self.starts.size + self.stops.size)


class ChunkMoments:
    """Count, mean and standard deviation of a stream, fed with per-chunk pandas aggregates.

    Chunks merge with Chan et al.'s formula (:meth:`StreamingMoments.merge`); while only
    one chunk has arrived, mean and std are pandas' own numbers for it, so rows summarised
    in one piece give exactly the in-memory ``groupby`` results.
    """

    __slots__ = ("_std", "chunks", "moments")

    def __init__(self) -> None:
        self.moments = StreamingMoments()
        self._std = float("nan")
        self.chunks = 0

    def add(self, count: int, mean: float, std: float) -> None:
        """Fold in one chunk's count, mean and std (ddof 1; NaN for one value) of its non-NaN values."""
        count = int(count)
        if count == 0:
            return
        m2 = float(std) ** 2 * (count - 1) if count > 1 else 0.0
        self.moments = self.moments.merge(StreamingMoments(count, float(mean), m2))
        self._std = float(std) if count > 1 else float("nan")
        self.chunks += 1

    @classmethod
    def merged(cls, parts: Sequence[ChunkMoments]) -> ChunkMoments:
        live = [p for p in parts if p.chunks]
        if len(live) == 1:
            return live[0]
        out = cls()
        for part in live:
            out.moments = out.moments.merge(part.moments)
            out.chunks += part.chunks
        return out

    @property
    def count(self) -> int:
        return self.moments.count

    @property
    def mean(self) -> float:
        return float(self.moments.mean) if self.count else float("nan")

    @property
    def std(self) -> float:
        if self.chunks == 1:
            return self._std
        return self.moments.std
