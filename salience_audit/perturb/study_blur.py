"""The original study's salience-guided blur (measure (e) under profile ``study``), batched.

Inputs are 8-bit: the image q (0..255 per channel) and the upscaled map c (0..255, the
PIL-bicubic upscale of the floored 7x7 map, see :mod:`salience_audit.salience.pil_resize`).
For each image:

1. the map the levels come from: M = c ("background": blur where the model does not look)
   or M = 255 - c ("object": blur where it looks);
2. G = gaussian_filter(M, 5) with uint8 truncation after each pass
   (:func:`~salience_audit.perturb.uint8_gaussian.uint8_gaussian_filter`);
3. level index k = rint(10 * G / (max G / 10)) in 0..100 (the level L = k / 10, numpy's
   ``around(G / (max G / 10), 1)``). In object mode, without the truncation, G = 255 - G_5(c)
   and so L = 10 (255 - G_5(c)) / (255 - min G_5(c)), not the default's 10 - 10 G_5(c) / max G_5(c);
4. every pixel at level k takes its value from the image filtered per channel with
   sigma_k = 0.001 * b^4, b = round(10 - k / 10, 1), by the same uint8-truncating filter;
   sigma 0 (k = 100) keeps the pixel. A map whose smoothed maximum is 0 leaves the image as it
   is (the published code divides 0 by 0 there, and no pixel matches the NaN level).

Every float operation is the published code's (numpy float64, same order), so levels and
pixels equal it bit for bit; docs/fidelity.md measures how far this is from the default blur.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from salience_audit.perturb.uint8_gaussian import uint8_gaussian_filter

__all__ = ["study_guided_blur", "study_level_indices", "study_level_sigma"]

MAP_SIGMA = 5.0
MAX_BLUR = 10
LEVEL_STEPS = 100

Mode = Literal["background", "object"]


def _to_levels(t01: Tensor) -> Tensor:
    """round(255 t) clamped to 0..255, float64: the 8-bit values of a [0, 1] image or map."""
    return torch.round(t01.to(torch.float64) * 255.0).clamp_(0.0, 255.0)


def study_level_indices(map_levels: Tensor, mode: Mode) -> Tensor:
    """k = 10 L (int64, 0..100) of 8-bit upscaled maps ``[B, H, W]``; -1 where max G = 0 (no blur).

    See the module docstring, steps 1-3.
    """
    if map_levels.dim() != 3:
        raise ValueError(f"expected 8-bit upscaled maps [B, H, W], got {tuple(map_levels.shape)}")
    if mode not in ("background", "object"):
        raise ValueError(f"mode must be 'background' or 'object', got {mode!r}")
    m = map_levels.to(torch.float64)
    if mode == "object":
        m = 255.0 - m
    g = uint8_gaussian_filter(m, MAP_SIGMA)
    peak = g.amax(dim=(-2, -1), keepdim=True)
    empty = peak == 0
    scaled = g / torch.where(empty, torch.ones_like(peak), peak / float(MAX_BLUR))
    k = torch.round(scaled * 10.0).to(torch.int64)
    return torch.where(empty, torch.full_like(k, -1), k)


@functools.lru_cache(maxsize=LEVEL_STEPS + 1)
def study_level_sigma(k: int) -> float:
    """Blur sigma of level index k, in the published code's float operations: 0.001 * b^4, b = round(10 - k / 10, 1)."""
    val = np.float64(k) / 10.0  # numpy around(x, 1) stores rint(10 x) / 10
    amount = np.round(MAX_BLUR - val, 1)
    return float((1 / (MAX_BLUR ** 3)) * (amount**4))


def study_guided_blur(x01: Tensor, maps_up: Tensor, mode: Mode = "background") -> Tensor:
    """The study's guided blur of images ``[B, C, H, W]`` in [0, 1] by upscaled maps ``[B, H, W]`` in [0, 1].

    Images and maps are read as 8-bit (round(255 x)); the result is the blurred 8-bit image
    divided by 255, in ``x01``'s dtype. One filter pass per level present, over the images
    that hold that level and the rows and columns its pixels span only.
    """
    if x01.dim() != 4 or maps_up.dim() != 3 or x01.shape[0] != maps_up.shape[0] or x01.shape[-2:] != maps_up.shape[-2:]:
        raise ValueError(
            f"expected images [B, C, H, W] and maps [B, H, W] of the same batch and size, got "
            f"{tuple(x01.shape)} and {tuple(maps_up.shape)}"
        )
    image = _to_levels(x01)
    k = study_level_indices(_to_levels(maps_up.to(x01.device)), mode)
    out = image.clone()
    # On the CPU image by image (the filter is memory-bound and each level's window is then
    # that image's own); on a GPU the whole batch at once.
    groups = [slice(n, n + 1) for n in range(len(k))] if k.device.type == "cpu" else [slice(0, len(k))]
    for group in groups:
        _blur_levels_into(out[group], image[group], k[group])
    return (out / 255.0).to(x01.dtype)


def _blur_levels_into(out: Tensor, image: Tensor, k: Tensor) -> None:
    """Copy into ``out`` each pixel's value from ``image`` filtered at its level's sigma (steps 4)."""
    for level in torch.unique(k).tolist():
        sigma = study_level_sigma(int(level)) if level >= 0 else 0.0
        if sigma == 0.0:
            continue
        b, i, j = (k == level).nonzero(as_tuple=True)
        chosen, local = torch.unique(b, return_inverse=True)
        # only the images holding this level, and only the rows and columns its pixels span
        top, bottom, left, right = int(i.min()), int(i.max()) + 1, int(j.min()), int(j.max()) + 1
        blurred = uint8_gaussian_filter(image.index_select(0, chosen), sigma, window=(top, bottom, left, right))
        out[b, :, i, j] = blurred[local, :, i - top, j - left]
