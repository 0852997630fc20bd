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
from salience_audit.measures.base import BatchContext, Emit, Measure, Needs, Output, RunView, as_tensor, callable_module
from salience_audit.measures.similarity import average_ranks, pearson_rows, ssim_uint8, topk_count, topk_mask
from salience_audit.salience.normalize import to_uint8_levels

STABILITY_SSIM = "stability_ssim"
STABILITY_SPEARMAN = "stability_spearman"
STABILITY_IOU = "stability_iou"


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


@accepts_numpy
def stability(maps: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray) -> dict[str, Tensor]:
    """Cross-run stability of the maps of the same B images from N >= 2 runs, per image and pair.

    ``maps``: a list of N arrays ``[B, h, w]`` (one per run) or one ``[N, B, h, w]`` array,
    in [0, 1] (tensors or numpy arrays). Returns ``pairs`` ``[P, 2]`` (run indices i < j,
    P = N(N-1)/2) and ``stability_ssim``, ``stability_spearman``, ``stability_iou``
    (top-10% cells), each ``[B, P]`` float64; a pair's mean over its images is column p's mean.
    """
    stacked = torch.stack([as_tensor(m, "maps") for m in maps]) if isinstance(maps, (list, tuple)) else as_tensor(maps, "maps")
    out: dict[str, Tensor] = {}
    pairs: list[tuple[int, int]] = []
    for key, fn in ((STABILITY_SSIM, pairwise_ssim), (STABILITY_SPEARMAN, pairwise_spearman),
                    (STABILITY_IOU, pairwise_topk_iou)):
        pairs, values = fn(stacked)
        out[key] = values.t()
    return {"pairs": torch.tensor(pairs, dtype=torch.long).view(-1, 2), **out}


class Stability(Measure):
    """(d) Agreement of the maps of every pair of runs of a group (no extra pass)."""

    name = "stability"
    title = "(d) Stability across training runs"
    question = "Does the focus stay the same across independent training runs?"
    intro = (
        "For every image, the maps of every pair of runs of the same group (same recipe, different seeds) are "
        "compared with SSIM; each image's value is the mean over pairs. The matrix shows the mean SSIM of each "
        "pair of runs."
    )
    finding = "Human-guided models were more stable across training runs than cross-entropy models."
    needs = Needs(passes=0, runs=2)
    outputs = (
        Output(STABILITY_SSIM, "Cross-run stability (SSIM)",
               "Does the focus stay the same across training runs?", "SSIM (-1 to 1)", "stability",
               better="higher", study="higher", primary=True, pairwise=True),
        Output(STABILITY_SPEARMAN, "Cross-run stability (Spearman)",
               "Do runs rank the map cells in the same order?", "rank correlation (-1 to 1)", "stability",
               better="higher", pairwise=True),
        Output(STABILITY_IOU, "Cross-run stability (top-k IoU)",
               "Do runs highlight the same most salient cells?", "IoU (0-1)", "stability", better="higher",
               pairwise=True),
    )
    functional = staticmethod(stability)
    constant_keys = ("pairs",)

    def group_rows(self, ctx: BatchContext, runs: Sequence[RunView], emit: Emit) -> None:
        if len(runs) < 2:
            return
        stacked = torch.stack([r.maps for r in runs])
        for key, fn in ((STABILITY_SSIM, pairwise_ssim), (STABILITY_SPEARMAN, pairwise_spearman),
                        (STABILITY_IOU, pairwise_topk_iou)):
            pairs, values = fn(stacked)
            for (i, j), vals in zip(pairs, values):
                emit(runs[i].name, key, "", vals, run_b=runs[j].name)


callable_module(__name__)  # salience_audit.measures.stability(...) calls stability() above
