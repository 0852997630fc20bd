"""Agreement with human salience: does the model look where people look?

For every image that has a human annotation map, the map is brought to the salience map's
size (area averaging, :func:`salience_audit.salience.normalize.downscale`), min-max
normalised, and compared with the model's map: ``human_ssim`` (SSIM of the 8-bit maps,
:func:`salience_audit.measures.similarity.ssim_maps`) and ``human_spearman`` (Spearman rank
correlation of the cells). Images without a human map get NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from salience_audit.measures import similarity
from salience_audit.measures.arrays import accepts_numpy
from salience_audit.measures.base import BatchContext, Emit, Measure, Needs, Output, RunView, as_tensor, to_numpy
from salience_audit.salience.normalize import downscale, minmax_normalize

HUMAN_SSIM = "human_ssim"
HUMAN_SPEARMAN = "human_spearman"


def prepare_human_maps(human_maps: Tensor, size: tuple[int, int], device: torch.device) -> Tensor:
    """Human maps ``[B, H', W']`` as float32 at the salience map ``size``, min-max normalised per map."""
    human = human_maps.to(device, torch.float32)
    return minmax_normalize(downscale(human, size))


def _agreement(maps: Tensor, human: Tensor, has: Tensor | None) -> dict[str, np.ndarray]:
    ssim_v = to_numpy(similarity.ssim_maps(maps, human))
    rank_v = to_numpy(similarity.spearman(maps, human))
    if has is not None:
        missing = ~to_numpy(has).astype(bool)
        ssim_v[missing] = np.nan
        rank_v[missing] = np.nan
    return {HUMAN_SSIM: ssim_v, HUMAN_SPEARMAN: rank_v}


@accepts_numpy
def human_agreement(maps: Any, human_maps: Any, has_human_map: Any | None = None) -> dict[str, Tensor]:
    """Per-image agreement of model maps ``[B, h, w]`` with human maps ``[B, H', W']`` (tensors or arrays).

    Returns ``human_ssim`` and ``human_spearman``, each ``[B]`` float64 (NaN where
    ``has_human_map`` ``[B]`` is False).
    """
    m = as_tensor(maps, "maps")
    human = prepare_human_maps(as_tensor(human_maps, "human_maps"), tuple(m.shape[-2:]), m.device)
    has = None if has_human_map is None else as_tensor(has_human_map, "has_human_map").to(torch.bool)
    return {k: torch.from_numpy(v) for k, v in _agreement(m, human, has).items()}


class HumanAgreement(Measure):
    """Agreement of each run's clean map with the human annotation (images that have one)."""

    name = "human"
    title = "Agreement with human salience"
    question = "Does the model look where humans look?"
    intro = (
        "SSIM and Spearman rank correlation between the model's map and the human annotation, for the images "
        "that have one."
    )
    needs = Needs(passes=0, human_maps=True)
    outputs = (
        Output(HUMAN_SSIM, "Agreement with human maps (SSIM)", "Does the model look where humans look?",
               "SSIM (-1 to 1)", "human", better="higher", primary=True),
        Output(HUMAN_SPEARMAN, "Agreement with human maps (Spearman)",
               "Does the model rank regions like humans do?", "rank correlation (-1 to 1)", "human",
               better="higher"),
    )
    functional = staticmethod(human_agreement)

    def run_rows(self, ctx: BatchContext, run: RunView, emit: Emit) -> None:
        if ctx.human_maps is None or ctx.has_human_map is None:
            return
        has = ctx.has_human_map.to(torch.bool)
        if not bool(has.any()):
            return
        size = tuple(run.maps.shape[-2:])
        key = ("human maps", size, run.maps.device)
        if key not in ctx.cache:  # the same for every run of the batch
            ctx.cache[key] = prepare_human_maps(ctx.human_maps, size, run.maps.device)
        for name, values in _agreement(run.maps, ctx.cache[key], has).items():
            emit(run.name, name, "", values)
