"""Stability of salience across independent training runs.

Input: the maps of the same B images from N >= 2 models (same architecture and recipe,
different seeds), stacked as ``maps [N, B, h, w]`` in [0, 1]. Every pair of models
(i, j) with i < j is compared image by image: N(N-1)/2 pairs (45 for N = 10), in the
order of ``itertools.combinations(range(N), 2)``. All pairs are compared in one batched
call; each map is converted / ranked / thresholded once, not once per pair.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from salience_audit.measures.arrays import accepts_numpy

from salience_audit.measures.similarity import average_ranks, pearson_rows, ssim_uint8, topk_count, topk_mask
from salience_audit.salience.normalize import to_uint8_levels


def _too_few_runs(n: int) -> ValueError:
    return ValueError(
        f"stability needs at least two runs (models trained with different seeds), got N={n}; "
        "pass maps of shape [N, B, h, w] with N >= 2"
    )


def pair_indices(n: int) -> list[tuple[int, int]]:
    """All model pairs (i, j), i < j, of ``n`` runs in lexicographic order."""
    if n < 2:
        raise _too_few_runs(n)
    return list(itertools.combinations(range(n), 2))


def _pairs_and_index(maps: Tensor) -> tuple[list[tuple[int, int]], Tensor, Tensor]:
    if maps.dim() != 4:
        raise ValueError(f"stability expects maps of shape [N, B, h, w], got {tuple(maps.shape)}")
    pairs = pair_indices(maps.shape[0])
    first = torch.tensor([i for i, _ in pairs], dtype=torch.long, device=maps.device)
    second = torch.tensor([j for _, j in pairs], dtype=torch.long, device=maps.device)
    return pairs, first, second


@accepts_numpy
def pairwise_ssim(maps: Tensor) -> tuple[list[tuple[int, int]], Tensor]:
    """SSIM between the 8-bit maps of every pair of runs, per image.

    values[p, b] = ``ssim_uint8(q[i, b], q[j, b])`` for pairs[p] = (i, j), with
    q = floor(255 S) (see :func:`salience_audit.measures.similarity.ssim_uint8`).
    Returns ``(pairs, values [P, B] float64)``.
    """
    pairs, first, second = _pairs_and_index(maps)
    n_pairs, (batch, h, w) = len(pairs), maps.shape[1:]
    levels = to_uint8_levels(maps)
    values = ssim_uint8(levels[first].reshape(-1, h, w), levels[second].reshape(-1, h, w))
    return pairs, values.view(n_pairs, batch)


@accepts_numpy
def pairwise_spearman(maps: Tensor) -> tuple[list[tuple[int, int]], Tensor]:
    """Spearman rank correlation between the maps of every pair of runs, per image.

    Computed on the [0, 1] maps (not the 8-bit q); each map is ranked once. A constant map
    gives 0 (see :func:`salience_audit.measures.similarity.spearman`).
    Returns ``(pairs, values [P, B] float64)``.
    """
    pairs, first, second = _pairs_and_index(maps)
    n_runs, batch = maps.shape[:2]
    ranks = average_ranks(maps.reshape(n_runs * batch, -1)).view(n_runs, batch, -1)
    n_cells = ranks.shape[-1]
    values = pearson_rows(ranks[first].reshape(-1, n_cells), ranks[second].reshape(-1, n_cells))
    return pairs, values.view(len(pairs), batch)


@accepts_numpy
def pairwise_topk_iou(maps: Tensor, fraction: float = 0.1) -> tuple[list[tuple[int, int]], Tensor]:
    """IoU of the top-k cells (k = ceil(fraction * h * w)) of every pair of runs, per image.

    Same tie-breaking as :func:`salience_audit.measures.similarity.topk_iou` (lower cell
    index first). Returns ``(pairs, values [P, B] float64)``.
    """
    pairs, first, second = _pairs_and_index(maps)
    n_runs, batch = maps.shape[:2]
    masks = topk_mask(maps.reshape(n_runs * batch, -1), fraction).view(n_runs, batch, -1)
    k = topk_count(masks.shape[-1], fraction)
    inter = (masks[first] & masks[second]).sum(dim=-1).to(torch.float64)
    return pairs, inter / (2.0 * k - inter)


def stability_matrix(pair_means: Sequence[float] | np.ndarray | Tensor, n: int) -> np.ndarray:
    """Symmetric ``[n, n]`` matrix of per-pair means (e.g. mean SSIM over images).

    ``pair_means[p]`` belongs to the p-th pair of :func:`pair_indices` (i < j); it is
    written at (i, j) and (j, i). The diagonal is 1 (a run compared with itself).
    """
    if n < 2:
        raise _too_few_runs(n)
    if isinstance(pair_means, Tensor):
        pair_means = pair_means.detach().cpu().numpy()
    values = np.asarray(pair_means, dtype=np.float64).reshape(-1)
    expected = n * (n - 1) // 2
    if values.size != expected:
        raise ValueError(f"stability_matrix: {n} runs have {expected} pairs, got {values.size} pair values")
    matrix = np.eye(n, dtype=np.float64)
    rows, cols = np.triu_indices(n, k=1)
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return matrix
