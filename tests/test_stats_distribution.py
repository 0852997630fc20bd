"""In-set vs out-of-set comparison against scipy and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from salience_audit.measures.similarity import ssim_maps
from salience_audit.stats.distribution import compare_distributions, mean_map_distance


def test_compare_distributions_against_scipy() -> None:
    rng = np.random.default_rng(0)
    inset, outset = rng.normal(2.0, 0.5, 200), rng.normal(2.6, 0.8, 150)
    out = compare_distributions(inset, torch.from_numpy(outset))
    assert out["mean_diff"] == pytest.approx(outset.mean() - inset.mean())
    ks = sps.ks_2samp(inset, outset)
    assert out["ks_statistic"] == pytest.approx(ks.statistic)
    assert out["ks_pvalue"] == pytest.approx(ks.pvalue)
    assert out["wasserstein"] == pytest.approx(sps.wasserstein_distance(inset, outset))
    assert (out["n_inset"], out["n_outset"]) == (200, 150)


def test_compare_distributions_hand_worked() -> None:
    out = compare_distributions([0.0, 1.0], [2.0, 3.0])
    assert out["mean_diff"] == 2.0  # out - in
    assert out["ks_statistic"] == 1.0
    assert out["wasserstein"] == pytest.approx(2.0)  # every unit of mass moves by 2
    same = compare_distributions([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert same["mean_diff"] == 0.0 and same["ks_statistic"] == 0.0 and same["wasserstein"] == 0.0


def test_compare_distributions_empty_and_nan() -> None:
    out = compare_distributions([], [1.0])
    assert math.isnan(out["mean_diff"]) and math.isnan(out["ks_pvalue"]) and math.isnan(out["wasserstein"])
    out = compare_distributions([1.0, float("nan")], [1.0])
    assert out["n_inset"] == 1 and out["wasserstein"] == 0.0


def test_mean_map_distance() -> None:
    a = torch.zeros(2, 7, 7)
    a[0, 0, 0] = 1.0  # mean map: 0.5 at (0, 0), 0 elsewhere
    b = torch.zeros(3, 7, 7)
    out = mean_map_distance(a, b)
    assert out["l1"] == pytest.approx(0.5 / 49)
    expected_ssim = ssim_maps(a.double().mean(0, keepdim=True), b.double().mean(0, keepdim=True)).item()
    assert out["ssim"] == pytest.approx(expected_ssim)
    same = mean_map_distance(a, a.flip(0))
    assert same == {"l1": 0.0, "ssim": 1.0}


def test_mean_map_distance_errors() -> None:
    with pytest.raises(ValueError, match="same size"):
        mean_map_distance(torch.zeros(1, 7, 7), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        mean_map_distance(torch.zeros(7, 7), torch.zeros(7, 7))
    assert math.isnan(mean_map_distance(torch.zeros(0, 7, 7), torch.zeros(1, 7, 7))["l1"])
