"""The human-salience-guided training loss (CYBORG, Boyd et al., WACV 2023).

    L = alpha * CE(logits, y) + (1 - alpha) * MSE(S_cam, H)

S_cam is the differentiable, min-max normalised class activation map of the
*predicted* class at the native resolution h x w of the CAM layer; H is the
human annotation resized to h x w and min-max normalised. Samples without a
human map contribute cross-entropy only. alpha = 1 is plain cross-entropy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from salience_audit.salience.normalize import downscale, minmax_normalize, resize_bilinear


class LossTerms(NamedTuple):
    """The guided loss and its two parts (all scalar tensors).

    ``total`` carries the graph for ``backward()``; ``ce`` is the mean cross-entropy
    over the batch; ``mse`` is the mean CAM-vs-human MSE over the samples that have a
    human map (0 when none has one, or when alpha = 1 and the CAM term is skipped).
    ``n_maps`` is how many samples contributed to ``mse``.
    """

    total: Tensor
    ce: Tensor
    mse: Tensor
    n_maps: int


def resize_human_maps(human_maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``[B, H, W]`` (or ``[B, 1, H, W]``) human maps to ``size`` and min-max normalise.

    Downscaling uses area averaging (each output cell is the mean of the input cells it
    covers); upscaling uses bilinear interpolation. The result is ``[B, h, w]`` in [0, 1],
    a constant map becoming all zeros.
    """
    maps = (human_maps.squeeze(1) if human_maps.dim() == 4 else human_maps).float()
    shrinking = maps.shape[-2] >= size[0] and maps.shape[-1] >= size[1]
    maps = downscale(maps, size) if shrinking else resize_bilinear(maps, size)
    return minmax_normalize(maps)


def guided_loss(
    logits: Tensor,
    cams: Tensor | None,
    human_maps: Tensor | None,
    has_map: Tensor | None,
    labels: Tensor,
    alpha: float = 0.5,
) -> LossTerms:
    """alpha * CE(logits, y) + (1 - alpha) * MSE(S_cam, H) for a whole batch.

    Args:
        logits: ``[B, C]`` raw model outputs.
        cams: ``[B, h, w]`` differentiable CAMs of the predicted class (min-max normalised
            again here, which leaves normalised maps and their gradients unchanged). May be
            ``None`` when ``alpha == 1``.
        human_maps: ``[B, H, W]`` human annotations at any resolution (rows without a map
            are ignored). May be ``None`` when ``alpha == 1``.
        has_map: ``[B]`` bool, which samples have a human map.
        labels: ``[B]`` integer class labels.
        alpha: weight of the cross-entropy term, in [0, 1].

    Returns:
        :class:`LossTerms`. With m_i = has_map_i and n = sum_i m_i,
        MSE = (1 / n) * sum_i m_i * mean_{u,v} (S_i[u,v] - H_i[u,v])^2 (0 when n = 0),
        so every sample weighs the same in CE and every mapped sample the same in MSE.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ce = F.cross_entropy(logits, labels)
    zero = ce.new_zeros(())
    if alpha == 1.0 or cams is None or human_maps is None or has_map is None:
        if alpha != 1.0:
            raise ValueError("cams, human_maps and has_map are required when alpha < 1")
        return LossTerms(total=ce, ce=ce, mse=zero, n_maps=0)

    mask = has_map.to(device=cams.device, dtype=torch.bool).reshape(-1)
    n_maps = int(mask.sum().item())
    if n_maps == 0:
        return LossTerms(total=alpha * ce, ce=ce, mse=zero, n_maps=0)

    s_cam = minmax_normalize(cams.float())
    human = human_maps.to(device=cams.device, dtype=torch.float32)
    # Rows without a map may hold anything (zeros, NaN): blank them before any arithmetic.
    human = torch.where(mask.view(-1, *([1] * (human.dim() - 1))), human, torch.zeros_like(human))
    target = resize_human_maps(human, tuple(s_cam.shape[-2:]))
    per_sample = (s_cam - target).pow(2).flatten(1).mean(dim=1)
    mse = torch.where(mask, per_sample, torch.zeros_like(per_sample)).sum() / n_maps
    total = alpha * ce + (1.0 - alpha) * mse
    return LossTerms(total=total, ce=ce, mse=mse, n_maps=n_maps)
