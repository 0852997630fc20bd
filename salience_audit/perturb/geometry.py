"""The 13 geometric variants of an image used by measure (c), following the focus.

Every variant acts on the last two dimensions, so one object transforms images
``[B, C, H, W]`` and maps ``[B, H, W]`` alike, batched and on the tensor's device:

- ``identity``;
- ``flip_lr`` (mirror left-right) and ``flip_tb`` (mirror top-bottom);
- eight translations ``shift(dx,dy)`` with (dx, dy) in {-t, 0, t}^2 minus (0, 0), where
  t = max(1, floor(16 * input_size / 224 + 1/2)) (16 px at 224 px). The content moves
  right by dx and down by dy, and the uncovered border repeats the edge pixels:
  ``out[..., i, j] = t[..., clamp(i - dy, 0, H-1), clamp(j - dx, 0, W-1)]``, which equals
  edge-padding by |d| and cropping back to H x W;
- ``rot90_cw`` and ``rot90_ccw``: ``torch.rot90`` with k = -1 and k = +1 on the last two dims.

Equivariance compares U(S(T x)) with T(U(S(x))) (:mod:`salience_audit.measures.equivariance`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

VariantKind = Literal["identity", "flip", "shift", "rot90"]

REFERENCE_SHIFT = 16
"""Translation in pixels at the reference input size of 224 px."""


def shift_pixels(input_size: int) -> int:
    """The translation t = max(1, round_half_up(16 * input_size / 224)) for an input size."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
        raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
    return max(1, math.floor(REFERENCE_SHIFT * input_size / 224 + 0.5))


def _shift(t: Tensor, dx: int, dy: int) -> Tensor:
    """Translate the last two dims by (dx, dy) with edge replication (clamped index gathering)."""
    height, width = t.shape[-2], t.shape[-1]
    rows = (torch.arange(height, device=t.device) - dy).clamp_(0, height - 1)
    cols = (torch.arange(width, device=t.device) - dx).clamp_(0, width - 1)
    return t.index_select(-2, rows).index_select(-1, cols)


@dataclass(frozen=True)
class GeometricVariant:
    """One geometric transformation T of the equivariance measure.

    ``kind`` selects the operation and ``params`` its arguments:
    ``identity`` {}, ``flip`` {"dim": -1 | -2}, ``shift`` {"dx": int, "dy": int},
    ``rot90`` {"k": -1 (clockwise) | 1 (counter-clockwise)}.
    """

    name: str
    kind: VariantKind
    params: dict[str, int] = field(default_factory=dict, hash=False)

    def apply(self, t: Tensor) -> Tensor:
        """T(t) for images ``[B, C, H, W]`` or maps ``[B, H, W]`` (any tensor with >= 2 dims)."""
        if t.dim() < 2:
            raise ValueError(f"{self.name}: expected a tensor with at least 2 dims, got {tuple(t.shape)}")
        if self.kind == "identity":
            return t
        if self.kind == "flip":
            return torch.flip(t, dims=(self.params["dim"],))
        if self.kind == "shift":
            return _shift(t, self.params["dx"], self.params["dy"])
        if self.kind == "rot90":
            return torch.rot90(t, k=self.params["k"], dims=(-2, -1))
        raise ValueError(f"unknown geometric variant kind {self.kind!r}")

    __call__ = apply

    def commutes_with_window_means(self) -> bool:
        """True when T(window means of m) equals the window means of T(m) for a square map.

        Flips and quarter turns only permute cells, and a square window grid onto itself, so
        the per-window sums of T(m) are the permuted sums of m (exactly, not approximately);
        an edge-replicating shift changes the content of the border windows.
        """
        return self.kind in ("identity", "flip", "rot90")


def apply_all(variants: list[GeometricVariant], t: Tensor) -> list[Tensor]:
    """``[v.apply(t) for v in variants]``, with every shift taken from one edge-padded copy.

    The tensor is padded once by the largest shift (replicating the edges); each shift is
    then a view of that copy, ``out[..., i, j] = padded[..., i - dy + p, j - dx + p]``,
    which equals the clamped gather of :meth:`GeometricVariant.apply` element for element.
    Shifted results are views (callers that need contiguous memory copy them once).
    """
    shifts = [v for v in variants if v.kind == "shift"]
    if not shifts:
        return [v.apply(t) for v in variants]
    pad = max(max(abs(v.params["dx"]), abs(v.params["dy"])) for v in shifts)
    height, width = t.shape[-2], t.shape[-1]
    rows = torch.arange(-pad, height + pad, device=t.device).clamp_(0, height - 1)
    cols = torch.arange(-pad, width + pad, device=t.device).clamp_(0, width - 1)
    padded = t.index_select(-2, rows).index_select(-1, cols)
    out = []
    for v in variants:
        if v.kind != "shift":
            out.append(v.apply(t))
            continue
        top, left = pad - v.params["dy"], pad - v.params["dx"]
        out.append(padded[..., top : top + height, left : left + width])
    return out


def _shift_name(dx: int, dy: int) -> str:
    def fmt(d: int) -> str:
        return "0" if d == 0 else f"{d:+d}"

    return f"shift({fmt(dx)},{fmt(dy)})"


def geometric_variants(input_size: int) -> list[GeometricVariant]:
    """The 13 variants, in this fixed order.

    ``identity``, ``flip_lr``, ``flip_tb``, then the eight shifts for dx in (-t, 0, t)
    (outer) and dy in (-t, 0, t) (inner) without (0, 0), named ``shift(dx,dy)`` e.g.
    ``shift(-16,+16)`` or ``shift(+16,0)`` at 224 px, then ``rot90_cw`` and ``rot90_ccw``.
    """
    t = shift_pixels(input_size)
    variants = [
        GeometricVariant("identity", "identity"),
        GeometricVariant("flip_lr", "flip", {"dim": -1}),
        GeometricVariant("flip_tb", "flip", {"dim": -2}),
    ]
    for dx, dy in itertools.product((-t, 0, t), repeat=2):
        if (dx, dy) != (0, 0):
            variants.append(GeometricVariant(_shift_name(dx, dy), "shift", {"dx": dx, "dy": dy}))
    variants.append(GeometricVariant("rot90_cw", "rot90", {"k": -1}))
    variants.append(GeometricVariant("rot90_ccw", "rot90", {"k": 1}))
    return variants
