"""Bounded-memory aggregation of an audit's per-sample rows: the engine behind the summary.

The result folder is read one shard file at a time by
:func:`salience_audit.results.reader.iter_result_chunks` (shards that share images read
together, chunks that never split an image of a group), and every chunk is folded into
fixed-size accumulators by :meth:`AuditAccumulator.add` (the per-key aggregates are in
:mod:`salience_audit.stats.samples`, the detection state in :mod:`salience_audit.stats.detection`). Nothing proportional to the number of images is kept except:

- per (measure, variant, group, dataset) of per-image group values (each image's value
  averaged over the group's runs, or run pairs): a :class:`~salience_audit.stats.samples.ValueSample` - exact count,
  mean and M2 (:class:`~salience_audit.stats.streaming.StreamingMoments`) plus the values
  themselves while there are at most ``capacity`` of them, a uniform
  :class:`~salience_audit.stats.streaming.Reservoir` of ``capacity`` values after that;
- the same for the pooled in-set images (kept only while they fit; beyond, the pooled
  sample is the merge of the in-set datasets' reservoirs);
- per (measure, variant, group, run, dataset): running moments of the run's own values;
- per run pair: running moments of the stability values (the N x N matrices);
- per (group, run, dataset): detection counts at the threshold and the labelled scores
  (one :class:`ValueSample` per class) for the ROC-AUC;
- the set of runs per key, and per dataset the audited image indices as ranges.

Finishing (:meth:`AuditAccumulator.group_stats` and friends):

- n <= capacity: the sample holds every value, in the order the in-memory computation
  sees them, so every number (bootstrap CI with the same seed, tests, detection metrics)
  is the one of ``summarize`` on all rows at once;
- n > capacity: n, mean and standard deviation are exact (running moments); the 95% CI
  is the normal one, ``mean +- z sd / sqrt(n)`` with z = 1.959964 (97.5% normal quantile);
  two groups are compared with Welch's t-test from their exact moments
  (``scipy.stats.ttest_ind_from_stats``), the Mann-Whitney U test and Cliff's delta on
  their reservoirs (``mean_diff``, ``n_a``, ``n_b`` exact); the out-of-set
  Kolmogorov-Smirnov test and Wasserstein distance use the reservoirs (means exact); a
  ROC-AUC uses the reservoirs of the two classes (accuracy, APCER, BPCER exact from counts).
  A reservoir is a uniform sample of the values, so these are unbiased estimates; the
  p-values are those of samples of ``capacity`` values (conservative for a real difference).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from salience_audit.measures.degradation import DEGRADE_ACCURACY_CHANGE, DEGRADE_FAITHFULNESS, DEGRADE_TRUE_SCORE_DROP
from salience_audit.measures.entropy import ENTROPY_NORM
from salience_audit.measures.equivariance import TRANSFORM_MEASURES
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.report.summary import aggregate
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.derived import derive_rows
from salience_audit.report.summary.describe import pairwise_measures
from salience_audit.report.summary.detection import image_scores
from salience_audit.report.summary.families import REFERENCE_GROUPS
from salience_audit.report.summary.outofset import shift_record
from salience_audit.results.reader import CHUNK_ROWS, iter_result_chunks
from salience_audit.stats.compare import compare_groups
from salience_audit.stats.detection import DetectionState
from salience_audit.stats.samples import ChunkMoments, IndexRanges, ValueSample

DEFAULT_CAPACITY = 50_000
"""Values kept per sample (per-image values of one measure, variant, group and dataset)."""

Z95 = 1.959963984540054
"""97.5% quantile of the standard normal distribution (two-sided 95% CI)."""

GROUP_KEY = ["measure", "variant", "group", "dataset"]
RUN_KEY = ["measure", "variant", "group", "run", "dataset"]
_FAITH = DEGRADE_FAITHFULNESS
_DERIVED_SEGMENT = {DEGRADE_ACCURACY_CHANGE: 2, DEGRADE_TRUE_SCORE_DROP: 3, _FAITH: 4}
"""Order of the derived parts (transforms ``all`` is part 1; a user measure's derived rows come last)."""

Key = tuple


def dataset_role(audit_meta: Mapping[str, Any], dataset: str) -> str:
    """``"in"`` or ``"out-of-set"`` from ``audit.json`` (datasets it does not list are in-set)."""
    meta = (audit_meta.get("datasets") or {}).get(dataset)
    role = meta.get("role", "in") if isinstance(meta, Mapping) else "in"
    return "out-of-set" if str(role).lower().replace("_", "-") in ("out-of-set", "out", "oos") else "in"


def _key_seed(seed: int, key: Key) -> int:
    """A reservoir seed that depends on the summary seed and the key only (not on reading order)."""
    digest = hashlib.blake2b(repr((seed, key)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _chunk_moments(store: dict[Key, ChunkMoments], key: Key) -> ChunkMoments:
    found = store.get(key)
    if found is None:
        found = store[key] = ChunkMoments()
    return found


# ----------------------------------------------------------------------------- accumulator


def _split(frame: pd.DataFrame, cols: list[str]) -> tuple[list[Key], list[np.ndarray]]:
    """Distinct ``cols`` tuples in order of first appearance, and each one's row positions in row order."""
    if frame.empty:
        return [], []
    codes = frame.groupby(cols, sort=False, observed=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    keys = list(frame[cols].drop_duplicates().itertuples(index=False, name=None))
    return keys, [order[bounds[i] : bounds[i + 1]] for i in range(len(keys))]


class AuditAccumulator:
    """Fixed-size aggregates of an audit's rows, fed chunk by chunk (see the module docstring).

    Args:
        audit_meta: ``audit.json`` (dataset roles: pooled samples take the in-set datasets).
        threshold: detection decision threshold (score > threshold = Synthetic).
        capacity: values kept per sample (None: all, for rows already in memory).
        seed: seeds the reservoirs (with each sample's key).

    :meth:`add` takes normalised rows that hold every row of each (group, dataset, image)
    they touch; keys are ordered as the in-memory computation orders them (first
    appearance, with raw rows before derived rows), so the results do not depend on how
    the rows were cut into chunks.
    """

    def __init__(
        self,
        audit_meta: Mapping[str, Any] | None = None,
        *,
        threshold: float = 0.5,
        capacity: int | None = DEFAULT_CAPACITY,
        seed: int = 0,
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.audit_meta = dict(audit_meta or {})
        self.threshold = float(threshold)
        self.capacity = capacity
        self.seed = seed
        self._seq = 0
        self._images: dict[str, IndexRanges] = {}
        self._groups: set[str] = set()
        self._in_set: dict[str, bool] = {}
        # group level: (part, measure, variant, group, dataset)
        self._gorder: dict[Key, tuple] = {}
        self._gsample: dict[Key, ValueSample] = {}
        self._pooled: dict[Key, ValueSample] = {}  # (part, measure, variant, group)
        self._runs: dict[Key, set[str]] = {}
        # run level: (part, measure, variant, group, run, dataset)
        self._rorder: dict[Key, tuple] = {}
        self._rmoments: dict[Key, ChunkMoments] = {}
        self._rpooled: dict[Key, ChunkMoments] = {}  # (part, measure, variant, group, run)
        # stability pairs: (group, dataset, "a|b"); detection: (group, run, dataset)
        self._sorder: dict[Key, int] = {}
        self._smoments: dict[Key, ChunkMoments] = {}
        self._spooled: dict[Key, ChunkMoments] = {}  # (group, "a|b")
        # every pairwise measure: (measure, group, dataset, "a|b") -> moments over images (family statistics)
        self._pmoments: dict[Key, ChunkMoments] = {}
        self._dorder: dict[Key, int] = {}
        self._det: dict[Key, DetectionState] = {}
        self._cache: dict[Any, Any] = {}

    # -- feeding

    def is_in_set(self, dataset: str) -> bool:
        if dataset not in self._in_set:
            self._in_set[dataset] = dataset_role(self.audit_meta, dataset) == "in"
        return self._in_set[dataset]

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def _register(order: dict[Key, Any], key: Key, pos: Any) -> None:
        old = order.get(key)
        if old is None or pos < old:
            order[key] = pos

    def _sample(self, store: dict[Key, ValueSample], key: Key, keep: bool = True) -> ValueSample:
        sample = store.get(key)
        if sample is None:
            sample = store[key] = ValueSample(self.capacity, _key_seed(self.seed, key), keep=keep)
        return sample

    def add(self, rows: pd.DataFrame) -> None:
        """Fold in normalised rows (see the class docstring)."""
        if rows.empty:
            return
        self._cache.clear()
        for dataset, idx in rows.groupby("dataset", sort=False)["index"]:
            self._images.setdefault(str(dataset), IndexRanges()).add(idx.to_numpy())
        self._groups.update(str(g) for g in rows["group"].unique())
        derived = derive_rows(rows)
        for part, frame in ((0, rows), (1, derived)):
            if not frame.empty:
                self._add_group_values(part, frame)
                self._add_run_values(part, frame)
        self._add_stability(rows)
        self._add_pairs(rows)
        self._add_detection(rows)

    def _position(self, part: int, measure: str, dataset: str, group: str, index: np.ndarray, run: str | None = None):
        """Where the in-memory computation puts a key: raw rows, then the derived rows' parts in order.

        Faithfulness rows come from a pivot table, sorted by (dataset, image, group, run).
        """
        if part == 0:
            return (0, 0, self._next())
        segment = 1 if measure in TRANSFORM_MEASURES else _DERIVED_SEGMENT.get(measure, 5)
        if measure == _FAITH:
            tail = (dataset, int(index.min()) if index.size else -1, group)
            return (1, segment, *tail) if run is None else (1, segment, *tail, run)
        return (1, segment, self._next())

    def _add_group_values(self, part: int, frame: pd.DataFrame) -> None:
        iv = aggregate.image_values([frame], unit="group")
        values = iv["value"].to_numpy(dtype=np.float64)
        index = iv["index"].to_numpy()
        keys, rows = _split(iv, GROUP_KEY)
        for key, r in zip(keys, rows):
            full = (part, *key)
            self._register(self._gorder, full, self._position(part, key[0], key[3], key[2], index[r]))
            self._sample(self._gsample, full).update(values[r])
        inset = self._in_set_rows(iv)
        keys, rows = _split(inset, ["measure", "variant", "group"])
        in_values = inset["value"].to_numpy(dtype=np.float64)
        for key, r in zip(keys, rows):
            self._sample(self._pooled, (part, *key), keep=False).update(in_values[r])
        for *key, run in frame[[*GROUP_KEY, "run"]].drop_duplicates().itertuples(index=False, name=None):
            self._runs.setdefault((part, *key), set()).add(run)

    def _in_set_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        names = [d for d in frame["dataset"].unique() if self.is_in_set(d)]
        return frame[frame["dataset"].isin(names).to_numpy(dtype=bool)]

    def _add_run_values(self, part: int, frame: pd.DataFrame) -> None:
        expanded = aggregate.expand_pairs(frame)
        rv = expanded.groupby([*RUN_KEY, "index"], sort=False, observed=True)["value"].mean().reset_index()
        if part == 0:  # expand_pairs: [unpaired rows, pairs as run a, pairs as run b]
            if expanded is frame:
                segments = [(0, len(frame))]
            else:
                n_pairs = len(expanded) - len(frame)
                n_single = len(frame) - n_pairs
                segments = [(0, n_single), (n_single, len(frame)), (len(frame), len(expanded))]
            for s, (a, b) in enumerate(segments):
                for key in expanded.iloc[a:b][RUN_KEY].drop_duplicates().itertuples(index=False, name=None):
                    self._register(self._rorder, (0, *key), (0, s, self._next()))
        grouped = rv.groupby(RUN_KEY, sort=False, observed=True)
        agg = grouped["value"].agg(["count", "mean", "std"])
        first = grouped["index"].min() if part == 1 else None
        for key, count, mean, std in zip(agg.index, agg["count"], agg["mean"], agg["std"]):
            full = (part, *key)
            if first is not None:
                index = np.array([first[key]])
                self._register(self._rorder, full, self._position(1, key[0], key[4], key[2], index, key[3]))
            _chunk_moments(self._rmoments, full).add(count, mean, std)
        inset = self._in_set_rows(rv)
        if not inset.empty:
            agg = inset.groupby(RUN_KEY[:4], sort=False, observed=True)["value"].agg(["count", "mean", "std"])
            for key, count, mean, std in zip(agg.index, agg["count"], agg["mean"], agg["std"]):
                _chunk_moments(self._rpooled, (part, *key)).add(count, mean, std)

    def _add_pairs(self, rows: pd.DataFrame) -> None:
        sel = rows[rows["measure"].isin(pairwise_measures()) & rows["run"].str.contains("|", regex=False)]
        if sel.empty:
            return
        agg = sel.groupby(["measure", "group", "dataset", "run"], sort=False)["value"].agg(["count", "mean"])
        for key, count, mean in zip(agg.index, agg["count"], agg["mean"]):
            _chunk_moments(self._pmoments, key).add(count, mean, float("nan"))

    def pair_means(self, in_set: Sequence[str]) -> dict[Key, float]:
        """``{(measure, group, dataset, "a|b"): mean over images}`` of every pairwise measure.

        Pooled in-set datasets (:data:`POOLED`, when there are two or more): the pair's mean
        over the images of all of them (moments merged).
        """
        out = {k: m.mean for k, m in self._pmoments.items() if m.count}
        present = self._present(in_set, {k[2] for k in self._pmoments})
        if present:
            parts: dict[Key, list[ChunkMoments]] = {}
            for (measure, group, dataset, pair), m in self._pmoments.items():
                if dataset in present:
                    parts.setdefault((measure, group, POOLED, pair), []).append(m)
            out.update({k: ChunkMoments.merged(v).mean for k, v in parts.items()})
        return out

    def _add_stability(self, rows: pd.DataFrame, measure: str = STABILITY_SSIM) -> None:
        sel = rows[(rows["measure"] == measure) & rows["run"].str.contains("|", regex=False)]
        if sel.empty:
            return
        agg = sel.groupby(["group", "dataset", "run"], sort=False)["value"].agg(["count", "mean"])
        for key, count, mean in zip(agg.index, agg["count"], agg["mean"]):
            self._register(self._sorder, key, self._next())
            _chunk_moments(self._smoments, key).add(count, mean, float("nan"))
        inset = self._in_set_rows(sel)
        if not inset.empty:
            agg = inset.groupby(["group", "run"], sort=False)["value"].agg(["count", "mean"])
            for key, count, mean in zip(agg.index, agg["count"], agg["mean"]):
                _chunk_moments(self._spooled, key).add(count, mean, float("nan"))

    def _add_detection(self, rows: pd.DataFrame) -> None:
        scores = image_scores(rows)
        values = scores["value"].to_numpy(dtype=np.float64)
        labels = scores["label"].to_numpy()
        keys, idx = _split(scores, ["group", "run", "dataset"])
        for key, r in zip(keys, idx):
            self._register(self._dorder, key, self._next())
            state = self._det.get(key)
            if state is None:
                state = self._det[key] = DetectionState(self.capacity, _key_seed(self.seed, key), self.threshold)
            state.update(values[r], labels[r])

    # -- what was seen

    @property
    def datasets(self) -> list[str]:
        """Datasets with rows, sorted."""
        return sorted(self._images)

    @property
    def groups(self) -> set[str]:
        """Groups with rows."""
        return set(self._groups)

    def n_images(self, dataset: str) -> int:
        """Distinct image indices of ``dataset`` with rows (any group)."""
        ranges = self._images.get(dataset)
        return len(ranges) if ranges is not None else 0

    def stored(self) -> int:
        """Numbers held in samples and index ranges (running moments and counts not counted: O(keys))."""
        total = sum(s.stored() for s in self._gsample.values())
        total += sum(s.stored() for s in self._pooled.values())
        total += sum(d.stored() for d in self._det.values())
        total += sum(r.stored() for r in self._images.values())
        return int(total)

    # -- finishing

    def _present(self, in_set: Sequence[str], found: set[str]) -> list[str]:
        present = [d for d in in_set if d in found]
        return present if len(present) >= 2 else []

    def group_samples(self, in_set: Sequence[str]) -> dict[Key, ValueSample]:
        """Per-image group values per (measure, variant, group, dataset), pooled keys last, in summary order."""
        cache_key = ("group", tuple(in_set))
        if cache_key in self._cache:
            return self._cache[cache_key]
        order: dict[Key, tuple] = {}
        parts: dict[Key, list[Key]] = {}
        for full, pos in self._gorder.items():
            key = full[1:]
            self._register(order, key, pos)
            parts.setdefault(key, []).append(full)
        keys = sorted(order, key=order.__getitem__)
        out: dict[Key, ValueSample] = {}
        for key in keys:
            fulls = sorted(parts[key])
            out[key] = ValueSample.merged([self._gsample[f] for f in fulls], self.capacity, _key_seed(self.seed, key))
        present = self._present(in_set, {k[3] for k in keys})
        if present:
            porder: dict[Key, tuple] = {}
            for key in keys:
                if key[3] in present:
                    self._register(porder, (*key[:3], POOLED), order[key])
            for pkey in sorted(porder, key=porder.__getitem__):
                pieces = []
                for part in (0, 1):
                    pooled = self._pooled.get((part, *pkey[:3]))
                    if pooled is None:
                        continue
                    if pooled.dropped:  # too many to keep in order: merge the datasets' samples
                        members = [self._gsample[(part, *pkey[:3], d)] for d in present
                                   if (part, *pkey[:3], d) in self._gsample]
                        pooled = ValueSample.merged(members, self.capacity, _key_seed(self.seed, (part, *pkey)))
                    pieces.append(pooled)
                out[pkey] = ValueSample.merged(pieces, self.capacity, _key_seed(self.seed, pkey))
        self._cache[cache_key] = out
        return out

    def run_counts(self, in_set: Sequence[str]) -> dict[Key, int]:
        """Runs (or run pairs) behind each (measure, variant, group, dataset); pooled = max over in-set datasets."""
        counts: dict[Key, int] = {}
        for part in (0, 1):
            for full, runs in self._runs.items():
                if full[0] != part:
                    continue
                key = full[1:]
                counts[key] = len(runs)
                if key[3] in in_set:
                    pooled = (*key[:3], POOLED)
                    counts[pooled] = max(counts.get(pooled, 0), len(runs))
        return counts

    @staticmethod
    def describe(sample: ValueSample, n_boot: int, seed: int) -> dict[str, Any]:
        """n, mean, std and 95% CI: ``aggregate.describe`` (bootstrap) of every value, or the normal CI.

        Normal CI (n > capacity): mean +- 1.959964 * sd / sqrt(n), with the exact mean and
        sample standard deviation sd (ddof 1) of all n values.
        """
        if sample.exact:
            return aggregate.describe(sample.values(), n_boot, seed)
        n, mean, std = sample.n, sample.moments.mean, sample.moments.std
        half = Z95 * std / math.sqrt(n)
        return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}

    def group_stats(self, in_set: Sequence[str], n_boot: int, seed: int) -> list[dict[str, Any]]:
        """One record per (measure, variant, group, dataset): n images, mean, std, 95% CI, n_runs."""
        n_runs = self.run_counts(in_set)
        records = []
        for (measure, variant, group, dataset), sample in self.group_samples(in_set).items():
            rec = {"measure": measure, "variant": variant, "group": group, "dataset": dataset}
            rec.update(self.describe(sample, n_boot, seed))
            rec["n_runs"] = n_runs.get((measure, variant, group, dataset))
            records.append(rec)
        return records

    def approximated(self, in_set: Sequence[str]) -> list[dict[str, Any]]:
        """Keys whose numbers come from moments and a reservoir (more than ``capacity`` images)."""
        return [
            {"measure": k[0], "variant": k[1], "group": k[2], "dataset": k[3], "n": s.n}
            for k, s in self.group_samples(in_set).items()
            if not s.exact
        ]

    @staticmethod
    def compare(a: ValueSample, b: ValueSample) -> dict[str, float]:
        """``compare_groups`` of every value, or of the samples with exact n, means and Welch test.

        Welch from moments: t = (m_a - m_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b) with the
        Welch-Satterthwaite degrees of freedom (``scipy.stats.ttest_ind_from_stats``).
        """
        out = compare_groups(a.values(), b.values())
        if a.exact and b.exact:
            return out
        out.update(n_a=float(a.n), n_b=float(b.n), mean_a=a.moments.mean, mean_b=b.moments.mean)
        out["mean_diff"] = out["mean_a"] - out["mean_b"]
        if a.n >= 2 and b.n >= 2:
            with np.errstate(all="ignore"):
                welch = sps.ttest_ind_from_stats(a.moments.mean, a.moments.std, a.n, b.moments.mean,
                                                 b.moments.std, b.n, equal_var=False)
            out["welch_t"], out["welch_p"] = float(welch.statistic), float(welch.pvalue)
        return out

    def group_comparisons(self, in_set: Sequence[str], groups: Sequence[str]) -> list[dict[str, Any]]:
        """Every pair of groups per (measure, variant, dataset); ``group_a`` precedes ``group_b`` in ``groups``.

        Reference groups (human annotations) are not tested against models.
        """
        order = {g: i for i, g in enumerate(groups)}
        by_cell: dict[Key, dict[str, ValueSample]] = {}
        for (measure, variant, group, dataset), sample in self.group_samples(in_set).items():
            by_cell.setdefault((measure, variant, dataset), {})[group] = sample
        records = []
        for (measure, variant, dataset), by_group in by_cell.items():
            present = sorted(
                (g for g, s in by_group.items() if s.n and g not in REFERENCE_GROUPS),
                key=lambda g: order.get(g, len(order)),
            )
            for i, ga in enumerate(present):
                for gb in present[i + 1 :]:
                    rec = {"measure": measure, "variant": variant, "dataset": dataset, "group_a": ga, "group_b": gb}
                    rec.update(self.compare(by_group[ga], by_group[gb]))
                    records.append(rec)
        return records

    def run_stats(self, in_set: Sequence[str]) -> list[dict[str, Any]]:
        """One record per (measure, variant, run, dataset): group, n images, mean, std (running moments)."""
        order: dict[Key, tuple] = {}
        parts: dict[Key, list[ChunkMoments]] = {}
        for full in sorted(self._rmoments):
            self._register(order, full[1:], self._rorder[full])
            parts.setdefault(full[1:], []).append(self._rmoments[full])
        keys = sorted(order, key=order.__getitem__)
        merged = {k: ChunkMoments.merged(parts[k]) for k in keys}
        present = self._present(in_set, {k[4] for k in keys})
        if present:
            porder: dict[Key, tuple] = {}
            for key in keys:
                if key[4] in present:
                    self._register(porder, (*key[:4], POOLED), order[key])
            for pkey in sorted(porder, key=porder.__getitem__):
                pieces = [self._rpooled[(p, *pkey[:4])] for p in (0, 1) if (p, *pkey[:4]) in self._rpooled]
                merged[pkey] = ChunkMoments.merged(pieces)
        records = []
        for (measure, variant, group, run, dataset), m in merged.items():
            records.append({
                "measure": measure, "variant": variant, "group": group, "run": run, "dataset": dataset,
                "n": int(m.count), "mean": m.mean if m.count else None, "std": m.std if m.count > 1 else None,
            })
        return records

    def stability_pair_means(self, in_set: Sequence[str]) -> list[tuple[Key, float]]:
        """``[((group, dataset, "a|b"), mean over images)]`` in summary order, pooled in-set pairs last."""
        keys = sorted(self._sorder, key=self._sorder.__getitem__)
        out = [(k, self._smoments[k].mean) for k in keys]
        present = self._present(in_set, {k[1] for k in keys})
        if present:
            porder: dict[Key, int] = {}
            for key in keys:
                if key[1] in present:
                    self._register(porder, (key[0], POOLED, key[2]), self._sorder[key])
            out += [(k, self._spooled[(k[0], k[2])].mean) for k in sorted(porder, key=porder.__getitem__)]
        return out

    def detection_states(self, in_set: Sequence[str]) -> list[tuple[Key, DetectionState]]:
        """``[((group, run, dataset), state)]`` in summary order, pooled in-set data last."""
        keys = sorted(self._dorder, key=self._dorder.__getitem__)
        out = [(k, self._det[k]) for k in keys]
        present = self._present(in_set, {k[2] for k in keys})
        if present:
            porder: dict[Key, int] = {}
            pparts: dict[Key, list[DetectionState]] = {}
            for key in keys:
                if key[2] in present:
                    pkey = (key[0], key[1], POOLED)
                    self._register(porder, pkey, self._dorder[key])
                    pparts.setdefault(pkey, []).append(self._det[key])
            for pkey in sorted(porder, key=porder.__getitem__):
                out.append((pkey, DetectionState.merged(pparts[pkey], self.capacity, _key_seed(self.seed, pkey))))
        return out

    def detection_per_run(self, in_set: Sequence[str]) -> list[dict[str, Any]]:
        """detection metrics per (run, dataset), plus the pooled in-set data when 2+ in-set datasets exist."""
        return [{"group": g, "run": r, "dataset": d, **state.metrics()} for (g, r, d), state in
                self.detection_states(in_set)]

    def detection_sampled(self, in_set: Sequence[str]) -> list[dict[str, Any]]:
        """(group, run, dataset) whose ROC-AUC comes from reservoirs."""
        return [{"group": g, "run": r, "dataset": d} for (g, r, d), s in self.detection_states(in_set)
                if not s.exact]

    def inset_sample(self, in_set: Sequence[str], measure: str, variant: str, group: str) -> ValueSample | None:
        """Per-image group values of every in-set image (all in-set datasets, in summary order)."""
        pieces = []
        for part in (0, 1):
            pooled = self._pooled.get((part, measure, variant, group))
            if pooled is None:
                continue
            if pooled.dropped:
                members = [self._gsample[k] for k in sorted(self._gsample)
                           if k[:4] == (part, measure, variant, group) and k[4] in in_set]
                pooled = ValueSample.merged(members, self.capacity, _key_seed(self.seed, (part, measure, group)))
            pieces.append(pooled)
        if not pieces:
            return None
        return ValueSample.merged(pieces, self.capacity, _key_seed(self.seed, (measure, variant, group, "in-set")))

    def entropy_shift(
        self, in_set: Sequence[str], out_of_set: Sequence[str], groups: Sequence[str], measure: str = ENTROPY_NORM
    ) -> list[dict[str, Any]]:
        """:func:`~salience_audit.report.summary.outofset.shift_record` of all in-set images vs each out-of-set dataset.

        With more than ``capacity`` values on a side, KS and Wasserstein are those of the
        samples; n and the means are exact.
        """
        samples = self.group_samples(in_set)
        records = []
        for group in groups:
            inset = self.inset_sample(in_set, measure, "", group)
            if inset is None or inset.rows == 0:
                continue
            for dataset in out_of_set:
                outset = samples.get((measure, "", group, dataset))
                if outset is None or outset.rows == 0:
                    continue
                rec = shift_record(measure, group, dataset, inset.values(), outset.values())
                if not (inset.exact and outset.exact):
                    rec.update(n_inset=inset.n, n_outset=outset.n,
                               mean_inset=inset.moments.mean if inset.n else None,
                               mean_outset=outset.moments.mean if outset.n else None)
                    rec["mean_diff"] = (outset.moments.mean - inset.moments.mean) if inset.n and outset.n else None
                records.append(rec)
        return records

    def image_values(self, in_set: Sequence[str], measures: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-image group values (all of them, or the reservoir's sample) as rows measure, variant, group, dataset, value.

        Pooled rows included, like :func:`~salience_audit.report.summary.build.image_table` (no ``index``).
        """
        parts = []
        for (measure, variant, group, dataset), sample in self.group_samples(in_set).items():
            if measures is not None and measure not in measures:
                continue
            vals = sample.values()
            parts.append(pd.DataFrame({"measure": measure, "variant": variant, "group": group, "dataset": dataset,
                                       "value": vals}))
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object")
                                 for c in ["measure", "variant", "group", "dataset", "value"]})
        return pd.concat(parts, ignore_index=True)


def accumulate_results(
    out_dir: str | Path,
    audit_meta: Mapping[str, Any] | None = None,
    *,
    threshold: float = 0.5,
    capacity: int | None = DEFAULT_CAPACITY,
    seed: int = 0,
    measures: Sequence[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> AuditAccumulator:
    """An :class:`AuditAccumulator` fed with every result shard of ``out_dir`` (bounded memory)."""
    acc = AuditAccumulator(audit_meta, threshold=threshold, capacity=capacity, seed=seed)
    for rows in iter_result_chunks(out_dir, measures=measures, chunk_rows=chunk_rows):
        acc.add(rows)
    return acc
