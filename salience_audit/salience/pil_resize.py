"""Pillow's 8-bit bicubic resize (``Image.resize(..., Image.BICUBIC)`` of an ``"L"`` image), batched on the device.

The original study saved each 7x7 map as an 8-bit PNG, q = floor(255 S), and upscaled that
image with Pillow's bicubic filter. Pillow resamples 8-bit images in fixed point, and this
module reproduces its arithmetic exactly (tests compare with Pillow itself):

1. Coefficients, per output sample ``o`` of an axis resized from n to N samples
   (scale s = n / N, support 2 max(s, 1)): the Keys cubic with a = -0.5,
   ``k(t) = (a + 2)|t|^3 - (a + 3)|t|^2 + 1`` for |t| < 1, ``a(|t|^3 - 5|t|^2 + 8|t| - 4)``
   for 1 <= |t| < 2, evaluated at ``(i - c + 0.5) / max(s, 1)`` for the input samples i of the
   window around ``c = (o + 0.5) s`` *clipped to the image* (no edge replication), divided by
   their sum, then scaled to integers ``K = round_half_away(k 2^22)``.
2. Two passes, horizontal first, each rounding and clipping to 8 bits:
   ``T = clip8(q K_w^T)``, ``U = clip8(K_h T)`` with ``clip8(v) = clamp(floor((v + 2^21) / 2^22), 0, 255)``.

The passes are matrix products in float64, exact because every product and sum is an
integer below 2^53. Resizing from n to N at 224 px this way differs from torch's bicubic of
the float map (a = -0.75, replicated edges, floored after) by up to 9-27 levels
(docs/fidelity.md).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = ["pil_bicubic_matrix", "pil_bicubic_resize_uint8"]

PRECISION_BITS = 22
"""Fixed-point precision of Pillow's 8-bit resampling (32 - 8 - 2 bits)."""

_SUPPORT = 2.0
_A = -0.5


def _keys_cubic(t: float) -> float:
    """Pillow's bicubic kernel (a = -0.5), in the same operation order as its C code."""
    t = abs(t)
    if t < 1.0:
        return ((_A + 2.0) * t - (_A + 3.0)) * t * t + 1
    if t < 2.0:
        return (((t - 5) * t + 8) * t - 4) * _A
    return 0.0


def _to_fixed(k: float) -> int:
    """Round half away from zero to an integer of 2^-22 units (C cast truncates toward zero)."""
    scaled = k * (1 << PRECISION_BITS)
    return math.trunc(scaled - 0.5) if k < 0 else math.trunc(scaled + 0.5)


@functools.lru_cache(maxsize=64)
def _integer_matrix(n_in: int, n_out: int) -> tuple[tuple[int, ...], ...]:
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    rows = []
    for o in range(n_out):
        center = (o + 0.5) * scale
        inv = 1.0 / filterscale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        weights = [_keys_cubic((i - center + 0.5) * inv) for i in range(lo, hi)]
        total = 0.0
        for w in weights:
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        row = [0] * n_in
        for i, w in zip(range(lo, hi), weights):
            row[i] = _to_fixed(w)
        rows.append(tuple(row))
    return tuple(rows)


def pil_bicubic_matrix(n_in: int, n_out: int, device: torch.device | str = "cpu") -> Tensor:
    """``[n_out, n_in]`` float64 matrix of Pillow's integer bicubic coefficients (units of 2^-22)."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    return torch.tensor(_integer_matrix(n_in, n_out), dtype=torch.float64, device=device)


def _clip8(v: Tensor) -> Tensor:
    """Pillow's clip8 of an accumulator that already holds the rounding offset 2^21."""
    return torch.floor(v / float(1 << PRECISION_BITS)).clamp_(0.0, 255.0)


def pil_bicubic_resize_uint8(levels: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize 8-bit maps ``[B, h, w]`` (integers 0..255, any dtype) to ``size`` as Pillow's bicubic does.

    Returns ``[B, H, W]`` float64 integers 0..255, equal to
    ``numpy.asarray(Image.fromarray(q.astype(uint8)).resize((W, H), Image.BICUBIC))`` for each map.
    """
    if levels.dim() != 3:
        raise ValueError(f"expected 8-bit maps [B, h, w], got {tuple(levels.shape)}")
    height, width = (size, size) if isinstance(size, int) else size
    h, w = levels.shape[-2:]
    q = levels.to(torch.float64)
    half = float(1 << (PRECISION_BITS - 1))
    if (w, h) == (width, height):
        return q.clone()
    if w != width:
        q = _clip8(torch.matmul(q, pil_bicubic_matrix(w, width, q.device).T) + half)
    if h != height:
        q = _clip8(torch.matmul(pil_bicubic_matrix(h, height, q.device), q) + half)
    return q


def upscale_floored_pil(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The study's upscale of ``[B, h, w]`` maps in [0, 1]: q = floor(255 S), Pillow bicubic of q, / 255.

    Returns float32 maps whose 8-bit levels (floor(255 U)) are exactly Pillow's output.
    """
    levels = (maps.float() * 255.0).clamp_(0.0, 255.0).floor_()  # torchvision's to_pil_image: mul(255).byte()
    return (pil_bicubic_resize_uint8(levels, size) / 255.0).to(torch.float32)
