"""Pairwise stability across runs: pair order, agreement with the per-pair measures, matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salience_audit.measures.similarity import spearman, ssim_maps, topk_iou
from salience_audit.measures.stability import (
    pair_indices,
    pairwise_spearman,
    pairwise_ssim,
    pairwise_topk_iou,
    stability_matrix,
)


def _maps(n: int, batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, h, w, generator=g)
    runs = (base + 0.3 * torch.rand(n, batch, h, w, generator=g)).clamp(0, 1)
    runs[0, 0] = 0.0  # a constant (all-zero) map in the mix
    return runs


def test_pair_indices_order_and_count() -> None:
    assert pair_indices(3) == [(0, 1), (0, 2), (1, 2)]
    assert len(pair_indices(10)) == 45


@pytest.mark.parametrize(
    "pairwise,single",
    [
        (pairwise_ssim, ssim_maps),
        (pairwise_spearman, spearman),
        (pairwise_topk_iou, topk_iou),
    ],
)
@pytest.mark.parametrize("h,w", [(7, 7), (8, 8), (4, 5)])
def test_pairwise_matches_per_pair_calls(pairwise, single, h: int, w: int) -> None:
    maps = _maps(4, 3, h, w, seed=h + w)
    pairs, values = pairwise(maps)
    assert pairs == pair_indices(4)
    assert values.shape == (6, 3) and values.dtype == torch.float64
    for p, (i, j) in enumerate(pairs):
        torch.testing.assert_close(values[p], single(maps[i], maps[j]), atol=1e-12, rtol=0)


def test_pairwise_topk_iou_fraction_is_passed() -> None:
    maps = _maps(3, 2, 7, 7)
    _, values = pairwise_topk_iou(maps, fraction=0.5)
    for p, (i, j) in enumerate(pair_indices(3)):
        torch.testing.assert_close(values[p], topk_iou(maps[i], maps[j], fraction=0.5))


def test_identical_runs_give_one() -> None:
    maps = _maps(1, 5, 7, 7).expand(3, -1, -1, -1).clone()
    maps[:, 1] = 0.0
    _, ssim = pairwise_ssim(maps)
    assert torch.equal(ssim, torch.ones(3, 5, dtype=torch.float64))
    _, iou = pairwise_topk_iou(maps)
    assert torch.equal(iou, torch.ones(3, 5, dtype=torch.float64))


@pytest.mark.parametrize("fn", [pairwise_ssim, pairwise_spearman, pairwise_topk_iou])
def test_fewer_than_two_runs_is_an_error(fn) -> None:
    with pytest.raises(ValueError, match="stability needs at least two runs"):
        fn(torch.rand(1, 2, 7, 7))
    with pytest.raises(ValueError, match=r"\[N, B, h, w\]"):
        fn(torch.rand(2, 7, 7))


def test_stability_matrix() -> None:
    matrix = stability_matrix(torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64), 3)
    expected = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.7], [0.8, 0.7, 1.0]])
    np.testing.assert_array_equal(matrix, expected)
    maps = _maps(5, 4, 7, 7)
    pairs, values = pairwise_ssim(maps)
    matrix = stability_matrix(values.mean(dim=1), 5)
    assert matrix.shape == (5, 5)
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), np.ones(5))
    for p, (i, j) in enumerate(pairs):
        assert matrix[i, j] == pytest.approx(values[p].mean().item())


def test_stability_matrix_errors() -> None:
    with pytest.raises(ValueError, match="stability needs at least two runs"):
        stability_matrix([], 1)
    with pytest.raises(ValueError, match="3 pairs"):
        stability_matrix([0.5, 0.5], 3)
