"""Run-level statistics: crossed (runs x images) CIs, permutation tests of run labels, pairs, BH.

The simulations are seeded and vectorised (all replicates in one call), so they run in a
few seconds; their numbers are the ones docs/statistics.md reports.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from salience_audit.stats.crossed import (
    CrossedMoments,
    crossed_ci,
    image_only_ci,
    pigeonhole_bootstrap,
    pigeonhole_variance,
)
from salience_audit.stats.fdr import bh_adjust
from salience_audit.stats.pairs import jackknife_variance, pair_matrix, pairs_ci, pairs_test
from salience_audit.stats.runtests import (
    difference_ci,
    driven_by_one_run,
    hedges_g,
    leave_one_run_out,
    permutation_test,
    relabellings,
)

RUN_SD, IMAGE_SD, RESIDUAL_SD, N_IMAGES = 1.0, 1.0, 0.5, 100


def crossed_tables(rng: np.random.Generator, reps: int, runs: int, shift: float = 0.0) -> np.ndarray:
    """``reps`` tables Y[r, i] = shift + a_r + b_i + e_ri (family mean = shift)."""
    return (shift + rng.normal(0.0, RUN_SD, (reps, runs, 1)) + rng.normal(0.0, IMAGE_SD, (reps, 1, N_IMAGES))
            + rng.normal(0.0, RESIDUAL_SD, (reps, runs, N_IMAGES)))


def covers(ci: dict, truth: float) -> np.ndarray:
    return (ci["ci_low"] <= truth) & (truth <= ci["ci_high"])


@pytest.mark.parametrize("runs", [5, 10])
def test_crossed_ci_covers_the_family_mean(runs: int) -> None:
    """Done-means simulation: run SD 1, image SD 1, residual SD 0.5, 100 images, 1000 replicates."""
    tables = crossed_tables(np.random.default_rng(runs), 1000, runs)
    coverage = covers(crossed_ci(CrossedMoments.from_table(tables)), 0.0).mean()
    assert 0.92 <= coverage <= 0.98, coverage
    image_only = covers(image_only_ci(tables), 0.0).mean()
    assert image_only < 0.6, image_only  # the image-only view does not describe the family (~0.3-0.45)


def test_closed_form_is_the_two_way_bootstrap_variance() -> None:
    rng = np.random.default_rng(3)
    table = crossed_tables(rng, 1, 6)[0]
    boot = pigeonhole_bootstrap(table, n_boot=40_000, seed=1)
    expected = float(pigeonhole_variance(CrossedMoments.from_table(table)))
    assert boot.mean() == pytest.approx(table.mean(), abs=4 * math.sqrt(expected / 40_000))
    assert boot.var() == pytest.approx(expected, rel=0.03)


def test_bootstrap_resample_is_the_mean_of_selected_cells() -> None:
    """Counts x table x counts equals averaging the explicitly resampled table."""
    table = np.arange(12, dtype=float).reshape(3, 4) ** 1.5
    got = pigeonhole_bootstrap(table, n_boot=5, seed=9)
    rng = np.random.default_rng(9)
    run_counts = rng.multinomial(3, np.full(3, 1 / 3), size=5)
    img_counts = rng.multinomial(4, np.full(4, 1 / 4), size=5)
    for b in range(5):
        rows = np.repeat(np.arange(3), run_counts[b])
        cols = np.repeat(np.arange(4), img_counts[b])
        assert got[b] == pytest.approx(table[np.ix_(rows, cols)].mean(), rel=1e-12)


def test_moments_from_streams_equal_the_table() -> None:
    table = crossed_tables(np.random.default_rng(4), 1, 4)[0]
    m2 = ((table - table.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    streamed = CrossedMoments.from_run_moments(np.full(4, N_IMAGES), table.mean(axis=1), m2, N_IMAGES,
                                               table.mean(axis=0).var(ddof=1))
    direct = CrossedMoments.from_table(table)
    for name in ("mean", "run_var", "image_var", "within_var"):
        assert float(getattr(streamed, name)) == pytest.approx(float(getattr(direct, name)), rel=1e-12)
    assert crossed_ci(streamed)["ci_low"] == pytest.approx(float(crossed_ci(direct)["ci_low"]), rel=1e-12)


def test_one_run_has_no_family_ci() -> None:
    ci = crossed_ci(CrossedMoments.from_table(np.random.default_rng(0).normal(size=(1, 50))))
    assert np.isnan(ci["ci_low"]) and np.isnan(ci["df"])


def test_crossed_ci_df_follow_the_dominant_source() -> None:
    runs_dominate = CrossedMoments(5, 1000, 0.0, 1.0, 1e-6, 1e-6)
    images_dominate = CrossedMoments(5, 1000, 0.0, 1e-9, 1.0, 1.0)
    assert float(crossed_ci(runs_dominate)["df"]) == pytest.approx(4.0, rel=1e-3)
    assert float(crossed_ci(images_dominate)["df"]) == pytest.approx(999.0, rel=1e-2)


# ----------------------------------------------------------------------------- permutation tests


def test_permutation_p_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.3, 1.0, 5), rng.normal(0.0, 1.0, 6)
    ours = permutation_test(a, b)
    # two-sided as |T*| >= |T| (scipy's "two-sided" doubles the smaller tail instead)
    ref = sps.permutation_test((a, b), lambda x, y: abs(np.mean(x) - np.mean(y)), permutation_type="independent",
                               n_resamples=np.inf, alternative="greater", vectorized=False)
    assert ours["exact"] and ours["n_relabellings"] == math.comb(11, 5)
    assert ours["statistic"] == pytest.approx(a.mean() - b.mean())
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_permutation_hand_worked() -> None:
    """1,2,3 vs 4,5,6: only the two extreme splits of 20 reach |T| = 3, so p = 2/20."""
    assert permutation_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])["p"] == pytest.approx(0.1)
    assert permutation_test([1.0, 2.0], [3.0, 4.0])["p"] == pytest.approx(2 / 6)  # the floor with 2 and 2 runs


def test_monte_carlo_relabellings_are_valid() -> None:
    rows, exact = relabellings(12, 12, n_perm=500, seed=0, exact_limit=1000)
    assert not exact and rows.shape == (501, 24) and (rows.sum(axis=1) == 12).all() and rows[0, :12].all()
    a, b = np.arange(12.0), np.arange(12.0) + 100.0
    res = permutation_test(a, b, n_perm=500, exact_limit=1000)
    assert res["p"] == pytest.approx(1 / 501)  # nothing reaches the observed split but itself


@pytest.mark.parametrize("runs", [5, 10])
def test_permutation_type_one_error_and_power(runs: int) -> None:
    """Run means of crossed data: at most 6% rejections of a true null; 10 runs detect 1 run-SD in >= 50%."""
    rng = np.random.default_rng(100 + runs)
    reps = 400
    null_a = crossed_tables(rng, reps, runs).mean(axis=-1)
    null_b = crossed_tables(rng, reps, runs).mean(axis=-1)
    type_one = (permutation_test(null_a, null_b)["p"] < 0.05).mean()
    assert type_one <= 0.06, type_one
    if runs == 10:
        shifted = crossed_tables(rng, reps, runs, shift=RUN_SD).mean(axis=-1)
        power = (permutation_test(shifted, null_b)["p"] < 0.05).mean()
        assert power >= 0.5, power


def test_hedges_g_hand_worked() -> None:
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 3.0, 4.0, 5.0])
    # s_p = sqrt(5/3), d = -1/s_p, J = 1 - 3/23
    d = -1.0 / math.sqrt(5.0 / 3.0)
    g = (1.0 - 3.0 / 23.0) * d
    se = math.sqrt(0.5 + g * g / 16.0)
    res = hedges_g(a, b)
    assert res["g"] == pytest.approx(g) and res["ci_low"] == pytest.approx(g - 1.959963984540054 * se)
    assert math.isnan(hedges_g([1.0], [2.0, 3.0])["g"])


def test_difference_ci_matches_welch() -> None:
    """With per-group variances s^2/n and df n - 1 it is Welch's interval."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(1, 1, 8), rng.normal(0, 2, 11)
    res = difference_ci(a.mean(), a.var(ddof=1) / 8, 7, b.mean(), b.var(ddof=1) / 11, 10)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert res["ci_low"] == pytest.approx(ref.low) and res["ci_high"] == pytest.approx(ref.high)


def test_one_run_driving_the_difference_is_found() -> None:
    """The issue's case: one guided run at 0.47, the others at 0.92-0.95."""
    guided, plain = [0.47, 0.94, 0.93], [0.95, 0.92, 0.94]
    diff = np.mean(guided) - np.mean(plain)
    loro = leave_one_run_out(guided, plain, ["g_s0", "g_s1", "g_s2"], ["p_s0", "p_s1", "p_s2"])
    assert driven_by_one_run(diff, loro) == ["g_s0"]
    assert driven_by_one_run(-0.3, leave_one_run_out([0.6, 0.62, 0.61], [0.9, 0.92, 0.91], "abc", "def")) == []


# ----------------------------------------------------------------------------- pairs (stability)


def stability_groups(rng: np.random.Generator, reps: int, runs: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pair values S[r, s] = shift + c_r + c_s + pair noise + image effects, averaged over 100 images."""
    pairs = list(itertools.combinations(range(runs), 2))
    c = rng.normal(0.0, 1.0, (reps, runs))
    image = rng.normal(0.0, 1.0, (reps, 1, N_IMAGES))
    j, k = np.array(pairs).T
    per_image = (shift + c[:, j, None] + c[:, k, None] + rng.normal(0.0, 0.5, (reps, len(pairs), 1)) + image
                 + rng.normal(0.0, 0.5, (reps, len(pairs), N_IMAGES)))
    matrices = np.full((reps, runs, runs), np.nan)
    means = per_image.mean(axis=-1)
    matrices[:, j, k] = means
    matrices[:, k, j] = means
    return matrices, per_image.mean(axis=1).var(axis=-1, ddof=1)


def test_jackknife_matches_a_loop() -> None:
    s = stability_groups(np.random.default_rng(0), 1, 6)[0][0]
    loo = []
    for r in range(6):
        keep = [q for q in range(6) if q != r]
        sub = s[np.ix_(keep, keep)]
        loo.append(sub[np.triu_indices(5, 1)].mean())
    loo = np.array(loo)
    assert jackknife_variance(s) == pytest.approx(5 / 6 * np.sum((loo - loo.mean()) ** 2), rel=1e-12)
    assert math.isnan(jackknife_variance(s[:2, :2]))


@pytest.mark.parametrize("runs", [5, 10])
def test_pairs_ci_coverage_and_test_level(runs: int) -> None:
    rng = np.random.default_rng(200 + runs)
    reps = 400
    ma, va = stability_groups(rng, reps, runs)
    mb, vb = stability_groups(rng, reps, runs)
    cis_a = [pairs_ci(ma[r], va[r], N_IMAGES) for r in range(reps)]
    cis_b = [pairs_ci(mb[r], vb[r], N_IMAGES) for r in range(reps)]
    coverage = np.mean([c["ci_low"] <= 0.0 <= c["ci_high"] for c in cis_a])
    assert 0.92 <= coverage <= 0.98, coverage
    type_one = np.mean([pairs_test(a, b)["p"] < 0.05 for a, b in zip(cis_a, cis_b)])
    assert type_one <= 0.06, type_one


def test_pair_matrix_from_named_pairs() -> None:
    m = pair_matrix({("a", "b"): 0.5, ("c", "a"): 0.7}, ["a", "b", "c"])
    assert m[0, 1] == m[1, 0] == 0.5 and m[0, 2] == m[2, 0] == 0.7 and np.isnan(m[1, 2]) and np.isnan(m[0, 0])


# ----------------------------------------------------------------------------- Benjamini-Hochberg


def test_bh_hand_worked_and_undefined_values() -> None:
    # sorted 0.01, 0.03, 0.04, 0.2 (m = 4): 0.04, min(0.06, 0.0533), 0.0533, 0.2
    got = bh_adjust([0.01, 0.04, None, 0.03, 0.2, float("nan")])
    expected = [0.04, 0.04 * 4 / 3, np.nan, 0.04 * 4 / 3, 0.2, np.nan]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert bh_adjust([]).size == 0
