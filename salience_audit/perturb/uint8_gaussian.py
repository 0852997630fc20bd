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

_CACHE_BYTES = 2_000_000
"""Working-set size of one chunk of planes on the CPU (about a core's L2 cache)."""


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


def _reflect_indices(n: int, start: int, stop: int, device: torch.device) -> Tensor:
    """Indices start..stop-1 (may lie outside 0..n-1) folded by scipy's "reflect" rule (period 2n, i -> 2n - 1 - i)."""
    idx = torch.remainder(torch.arange(start, stop, device=device), 2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def _correlate_truncate(x: Tensor, taps: tuple[float, ...], dim: int, lo: int, hi: int) -> Tensor:
    """One truncating pass of the symmetric kernel ``taps`` (centre first) along ``dim``, outputs lo..hi-1 only."""
    radius = len(taps) - 1
    n, count = x.shape[dim], hi - lo
    if radius == 0:
        return torch.floor(x.narrow(dim, lo, count) * taps[0]).clamp_(0.0, 255.0)
    padded = x.index_select(dim, _reflect_indices(n, lo - radius, hi + radius, x.device))
    acc = padded.narrow(dim, radius, count) * taps[0]
    pair = torch.empty_like(acc)
    for m in range(radius, 0, -1):  # separate multiply and add (no fused multiply-add), as scipy's C loop
        torch.add(padded.narrow(dim, radius - m, count), padded.narrow(dim, radius + m, count), out=pair)
        acc.add_(pair.mul_(taps[m]))
    return torch.floor_(acc).clamp_(0.0, 255.0)


def uint8_gaussian_filter(
    x: Tensor, sigma: float, truncate: float = TRUNCATE, window: tuple[int, int, int, int] | None = None
) -> Tensor:
    """``scipy.ndimage.gaussian_filter(u8, sigma)`` of every ``[..., H, W]`` plane of ``x``.

    ``x`` holds integers 0..255 (any dtype); the result is float64 integers 0..255 on the same
    device. sigma 0 returns a float64 copy (scipy skips the filter). ``window = (top, bottom,
    left, right)`` computes only ``[..., top:bottom, left:right]`` of the result (the same
    values as cropping the full result; only the rows and columns the window needs are filtered).
    """
    if x.dim() < 2:
        raise ValueError(f"expected a tensor with at least 2 dims, got {tuple(x.shape)}")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    height, width = x.shape[-2:]
    top, bottom, left, right = window if window is not None else (0, height, 0, width)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"window {window} does not lie in a {height} x {width} plane")
    out = x.to(torch.float64)
    if sigma <= 1e-15:  # scipy leaves axes with sigma <= 1e-15 alone
        return out[..., top:bottom, left:right].clone()
    taps = scipy_kernel_taps(float(sigma), truncate)
    planes = out.reshape(-1, height, width)
    # On the CPU the tap loop is bound by memory traffic: a few planes at a time stay in cache
    # (3-4x faster at 224 px than the whole batch at once). Each plane is filtered on its own
    # either way, so the chunking changes no value.
    step = planes.shape[0]
    if out.device.type == "cpu":
        step = max(1, _CACHE_BYTES // (8 * (height + 2 * len(taps)) * (width + 2 * len(taps))))
    parts = [
        _correlate_truncate(_correlate_truncate(chunk, taps, 1, top, bottom), taps, 2, left, right)
        for chunk in planes.split(step)
    ]
    return torch.cat(parts).view(*out.shape[:-2], bottom - top, right - left)
