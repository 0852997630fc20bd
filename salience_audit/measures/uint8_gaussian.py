"""``scipy.ndimage.gaussian_filter`` applied to uint8 arrays, as the original study did, batched in torch.

scipy filters the axes one after the other (rows, i.e. axis -2, first) and writes each pass
into an array of the input's type, so with uint8 input every pass is truncated:

    P = trunc8(G_sigma along H (X)),   out = trunc8(G_sigma along W (P)),   trunc8(v) = clamp(floor(v), 0, 255)

with G_sigma the 1-D correlation with scipy's kernel (radius r = int(4 sigma + 0.5),
g[m] = exp(-0.5 / sigma^2 * m^2) normalised to sum 1, "reflect" boundary: ... c b a | a b c ...).
Its float64 arithmetic is reproduced in scipy's order (centre tap first, then the pairs
(x[i - m] + x[i + m]) g[m] for m = r down to 1), so results equal scipy's bit for bit; the
truncation is what makes the study's blurred images 0.6-1.0 levels darker on average than a
float blur (docs/fidelity.md).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["scipy_gaussian_kernel", "uint8_gaussian_filter"]

TRUNCATE = 4.0


@functools.lru_cache(maxsize=512)
def scipy_kernel_taps(sigma: float, truncate: float = TRUNCATE) -> tuple[float, ...]:
    """Taps g[0..r] (centre first) of scipy's Gaussian kernel, computed with numpy as scipy does."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    phi = phi / phi.sum()
    return tuple(float(v) for v in phi[radius:])


def scipy_gaussian_kernel(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """The full kernel g[-r..r] (float64) that ``scipy.ndimage.gaussian_filter1d`` correlates with."""
    taps = scipy_kernel_taps(float(sigma), truncate)
    return np.asarray(taps[:0:-1] + taps, dtype=np.float64)


def _reflect_indices(n: int, radius: int, device: torch.device) -> Tensor:
    """Indices -r..n-1+r folded by scipy's "reflect" rule (period 2n, i -> 2n - 1 - i)."""
    idx = torch.remainder(torch.arange(-radius, n + radius, device=device), 2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def _correlate_truncate(x: Tensor, taps: tuple[float, ...], dim: int) -> Tensor:
    """One truncating pass of the symmetric kernel ``taps`` (centre first) along ``dim`` (float64 in, out)."""
    radius = len(taps) - 1
    if radius == 0:
        return torch.floor(x * taps[0]).clamp_(0.0, 255.0)
    n = x.shape[dim]
    padded = x.index_select(dim, _reflect_indices(n, radius, x.device))
    acc = padded.narrow(dim, radius, n) * taps[0]
    pair = torch.empty_like(acc)
    for m in range(radius, 0, -1):  # separate multiply and add (no fused multiply-add), as scipy's C loop
        torch.add(padded.narrow(dim, radius - m, n), padded.narrow(dim, radius + m, n), out=pair)
        acc.add_(pair.mul_(taps[m]))
    return torch.floor_(acc).clamp_(0.0, 255.0)


def uint8_gaussian_filter(x: Tensor, sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """``scipy.ndimage.gaussian_filter(u8, sigma)`` of every ``[..., H, W]`` plane of ``x``.

    ``x`` holds integers 0..255 (any dtype); the result is float64 integers 0..255 on the same
    device. sigma 0 returns a float64 copy (scipy skips the filter).
    """
    if x.dim() < 2:
        raise ValueError(f"expected a tensor with at least 2 dims, got {tuple(x.shape)}")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    out = x.to(torch.float64)
    if sigma <= 1e-15:  # scipy leaves axes with sigma <= 1e-15 alone
        return out.clone()
    taps = scipy_kernel_taps(float(sigma), truncate)
    out = _correlate_truncate(out, taps, x.dim() - 2)
    return _correlate_truncate(out, taps, x.dim() - 1)
