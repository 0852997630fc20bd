"""Per-map normalisation and resolution changes shared by every salience method and measure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Min-max normalise each map of a ``[B, h, w]`` batch to [0, 1].

    S' = (S - min S) / (max S - min S). A constant map (max - min <= eps) becomes all
    zeros, never NaN. Differentiable (used inside the guided training loss).
    """
    if maps.dim() < 2:
        raise ValueError(f"expected maps of shape [B, h, w], got {tuple(maps.shape)}")
    flat = maps.flatten(start_dim=-2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    span = hi - lo
    constant = span <= eps
    scaled = (flat - lo) / torch.where(constant, torch.ones_like(span), span)
    scaled = torch.where(constant, torch.zeros_like(scaled), scaled)
    return scaled.view_as(maps)


def to_uint8_levels(maps: Tensor) -> Tensor:
    """The 8-bit version q = floor(255 * S) of maps in [0, 1], as an integer (int64) tensor.

    This is what saving a map as an 8-bit grayscale PNG gives; values are clamped to [0, 255].
    """
    return torch.floor(maps.clamp(0.0, 1.0) * 255.0).to(torch.int64)


def upscale(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bicubic resize of ``[B, h, w]`` maps to the input size, clamped back to [0, 1]."""
    if isinstance(size, int):
        size = (size, size)
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.clamp(0.0, 1.0)
    up = F.interpolate(maps.unsqueeze(1).float(), size=size, mode="bicubic", align_corners=False)
    return up.squeeze(1).clamp(0.0, 1.0)
