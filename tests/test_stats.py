"""Aggregate statistics: bootstrap CI, group comparison, AUC, streaming moments, reservoir."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from salience_audit.measures.curve import area_under_curve
from salience_audit.stats.bootstrap import bootstrap_ci
from salience_audit.stats.compare import cliffs_delta, compare_groups
from salience_audit.stats.streaming import Reservoir, StreamingMoments


def test_bootstrap_ci_basic() -> None:
    values = np.random.default_rng(0).normal(2.0, 1.0, size=400)
    mean, low, high = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # Close to the normal-theory interval mean +- 1.96 * sd / sqrt(n).
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_ci(values) == bootstrap_ci(values)  # deterministic for a seed
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=0)


def test_bootstrap_ci_matches_plain_loop() -> None:
    values = np.arange(10, dtype=float) ** 2
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 10, size=(500, 10))
    means = values[idx].mean(axis=1)
    expected = np.quantile(means, [0.05, 0.95])
    _, low, high = bootstrap_ci(values, n_boot=500, level=0.90, seed=3)
    assert (low, high) == pytest.approx(tuple(expected))


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([3.5]) == (3.5, 3.5, 3.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in bootstrap_ci([float("nan")]))
    assert bootstrap_ci([1.0, float("nan"), 1.0]) == (1.0, 1.0, 1.0)
    assert bootstrap_ci(torch.tensor([2.0, 2.0])) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_cliffs_delta_brute_force() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=30).astype(float)
    b = rng.integers(1, 6, size=25).astype(float)
    brute = np.mean([np.sign(x - y) for x, y in itertools.product(a, b)])
    assert cliffs_delta(a, b) == pytest.approx(brute, abs=1e-12)
    assert cliffs_delta([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert cliffs_delta([0.0], [0.0]) == 0.0


def test_compare_groups_against_scipy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, 50), rng.normal(0.5, 2.0, 40)
    out = compare_groups(a, b)
    assert out["mean_diff"] == pytest.approx(a.mean() - b.mean())
    assert out["mannwhitney_p"] == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert out["welch_p"] == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert out["welch_t"] == pytest.approx(sps.ttest_ind(a, b, equal_var=False).statistic)
    assert out["cliffs_delta"] == pytest.approx(cliffs_delta(a, b))
    assert (out["n_a"], out["n_b"]) == (50, 40)


def test_compare_groups_degenerate() -> None:
    out = compare_groups([], [1.0, 2.0])
    assert math.isnan(out["mannwhitney_p"]) and math.isnan(out["cliffs_delta"]) and math.isnan(out["mean_diff"])
    out = compare_groups([1.0], [2.0, 3.0])
    assert math.isnan(out["welch_p"]) and out["cliffs_delta"] == -1.0
    out = compare_groups([1.0, 1.0], [1.0, 1.0])
    assert out["mean_diff"] == 0.0 and out["cliffs_delta"] == 0.0


def test_area_under_curve() -> None:
    assert area_under_curve([0, 1, 2], [0, 1, 0]) == pytest.approx(1.0)
    assert area_under_curve([2, 0, 1], [0, 0, 1]) == pytest.approx(1.0)  # sorted by x
    levels = [0, 0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 1.0]
    assert area_under_curve(levels, [1.0] * 8) == pytest.approx(1.0)
    assert area_under_curve([0.3], [5.0]) == 0.0
    assert math.isnan(area_under_curve([], []))
    with pytest.raises(ValueError):
        area_under_curve([0, 1], [1])


def test_streaming_moments_merge_equals_batch() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(3.0, 2.0, 1000)
    whole = StreamingMoments().update(values)
    assert whole.count == 1000
    assert whole.mean == pytest.approx(values.mean(), abs=1e-12)
    assert whole.variance == pytest.approx(values.var(ddof=1), rel=1e-12)
    parts = [StreamingMoments().update(chunk) for chunk in np.array_split(values, 7)]
    merged = StreamingMoments()
    for part in parts:
        merged = merged.merge(part)
    assert merged.count == 1000
    assert merged.mean == pytest.approx(whole.mean, abs=1e-12)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-10)
    sequential = StreamingMoments()
    for chunk in np.array_split(values, 13):
        sequential.update(chunk)
    assert sequential.std == pytest.approx(values.std(ddof=1), rel=1e-10)


def test_streaming_moments_edge_cases() -> None:
    empty = StreamingMoments()
    assert math.isnan(empty.result()["mean"]) and math.isnan(empty.std)
    one = StreamingMoments().update([5.0, float("nan")])
    assert one.count == 1 and one.mean == 5.0 and math.isnan(one.variance)
    assert empty.merge(one).mean == 5.0 and one.merge(empty).count == 1


def test_reservoir_keeps_everything_below_k() -> None:
    res = Reservoir(k=10, seed=0).update([1.0, 2.0, 3.0])
    assert sorted(res.values) == [1.0, 2.0, 3.0] and len(res) == 3 and res.count == 3


def test_reservoir_size_merge_and_determinism() -> None:
    res = Reservoir(k=50, seed=1)
    for chunk in np.array_split(np.arange(1000, dtype=float), 10):
        res.update(chunk)
    assert len(res) == 50 and res.count == 1000
    assert len(set(res.values)) == 50 and set(res.values) <= set(range(1000))
    again = Reservoir(k=50, seed=1)
    for chunk in np.array_split(np.arange(1000, dtype=float), 10):
        again.update(chunk)
    np.testing.assert_array_equal(res.values, again.values)
    other = Reservoir(k=50, seed=2).update(np.arange(1000, 2000, dtype=float))
    merged = res.merge(other)
    assert len(merged) == 50 and merged.count == 2000
    assert set(merged.values) <= set(res.values) | set(other.values)
    with pytest.raises(ValueError):
        Reservoir(k=0)


def test_reservoir_is_uniform() -> None:
    # Each of 20 items should be kept with probability k/n = 5/20 over many seeds.
    hits = np.zeros(20)
    trials = 2000
    for seed in range(trials):
        res = Reservoir(k=5, seed=seed)
        res.update(np.arange(8, dtype=float)).update(np.arange(8, 20, dtype=float))
        hits[res.values.astype(int)] += 1
    freq = hits / trials
    assert np.all(np.abs(freq - 0.25) < 0.05)
    # Merging two shards must be uniform too: items 0..9 in one, 10..19 in the other.
    hits[:] = 0
    for seed in range(trials):
        left = Reservoir(k=5, seed=2 * seed).update(np.arange(10, dtype=float))
        right = Reservoir(k=5, seed=2 * seed + 1).update(np.arange(10, 20, dtype=float))
        hits[left.merge(right).values.astype(int)] += 1
    assert np.all(np.abs(hits / trials - 0.25) < 0.05)
