"""Per-map normalisation and resolution changes: the one home of every way a map is resized.

- :func:`upscale`: bicubic, salience map -> input size (the measures, the report's pictures);
- :func:`downscale`: area averaging, a map read larger than the salience map -> its size;
- :func:`resize_bilinear`: bilinear (optionally antialiased), for maps read from files and
  human maps brought up to the CAM size in the guided training loss.
"""

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
    # Truncation toward zero is floor on [0, 255]: one pass fewer than clamp + floor.
    return (maps * 255.0).clamp_(0.0, 255.0).to(torch.int64)


def upscale(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bicubic resize of ``[B, h, w]`` maps to the input size, clamped back to [0, 1].

    Bicubic resizing (``F.interpolate(mode="bicubic", align_corners=False)``: Keys kernel
    a = -0.75, border indices clamped) is separable and linear, U(S) = R S C^T with R
    ``[H, h]`` and C ``[W, w]``; both matrices are taken from ``F.interpolate`` itself
    (:func:`bicubic_matrix`), so U equals it up to float rounding (about 1e-7), and the
    whole batch is resized by two matrix products instead of a per-pixel kernel.
    """
    if isinstance(size, int):
        size = (size, size)
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.clamp(0.0, 1.0)
    if maps.dim() != 3:
        raise ValueError(f"upscale expects maps [B, h, w], got {tuple(maps.shape)}")
    h, w = maps.shape[-2:]
    rows = bicubic_matrix(h, size[0], maps.device)
    cols = bicubic_matrix(w, size[1], maps.device)
    up = torch.matmul(torch.matmul(rows, maps.float()), cols.t())
    return up.clamp_(0.0, 1.0)


def downscale(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-averaging resize of ``[B, H, W]`` maps to ``size`` (``F.interpolate(mode="area")``).

    Used for human annotation maps, read at a multiple of the salience map size and brought
    down to it; the dtype is kept. A map already at ``size`` is returned as it is.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps.unsqueeze(1), size=tuple(size), mode="area").squeeze(1)


def resize_bilinear(maps: Tensor, size: tuple[int, int], antialias: bool = False) -> Tensor:
    """Bilinear resize of ``[B, H, W]`` maps to ``size`` (``F.interpolate(mode="bilinear", align_corners=False)``).

    With ``antialias`` the kernel is widened when shrinking, so each output cell averages the
    input area it covers (like PIL's BILINEAR). Values are not clamped; a map already at
    ``size`` is returned as it is.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=antialias).squeeze(1)


_MATRICES: dict[tuple[int, int, str], Tensor] = {}


def bicubic_matrix(n_in: int, n_out: int, device: torch.device | str = "cpu") -> Tensor:
    """The ``[n_out, n_in]`` float32 matrix of 1-D bicubic resizing from n_in to n_out samples.

    Column j is ``F.interpolate`` (bicubic, align_corners=False) of the j-th unit vector, so
    resizing a vector v is ``matrix @ v``. Cached per (n_in, n_out, device).
    """
    key = (n_in, n_out, str(device))
    found = _MATRICES.get(key)
    if found is None:
        basis = torch.eye(n_in, dtype=torch.float32, device=device).view(n_in, 1, 1, n_in)
        found = F.interpolate(basis, size=(1, n_out), mode="bicubic", align_corners=False).view(n_in, n_out).t()
        found = found.contiguous()
        _MATRICES[key] = found
    return found
