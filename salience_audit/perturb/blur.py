"""Salience-guided degradation (measure (e)) and deletion / insertion curves.

Gaussian filtering here reproduces ``scipy.ndimage.gaussian_filter(mode="reflect",
truncate=4.0)`` on the last two dims: the 1-D kernel is g[m] = exp(-m^2 / (2 sigma^2)),
m = -r..r, r = int(4 sigma + 0.5), normalised to sum 1, and samples outside the image are
mirrored with the edge repeated (... c b a | a b c ... | x y z | z y x ...). Along one axis of
length n this filter is a linear map M_sigma (n x n, the taps falling outside folded back
in), so a 2-D blur is M_sigma(H) @ X @ M_sigma(W)^T: two batched matmuls, exact for any
sigma and image size.

The same boundary rule makes M_sigma diagonal in the orthonormal DCT-II basis C:
M_sigma = C^T diag(lambda_sigma) C with lambda_sigma[k] = sum_m g[m] cos(pi k m / n).
``guided_blur`` uses this twice: strong blurs are applied through their K leading
frequencies only (gains below 1e-4 dropped), and the per-pixel blur of any level is a
fixed combination of a few "anchor" blurs whose coefficients are fitted in that basis.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

TRUNCATE = 4.0
"""Kernel radius in standard deviations (scipy's default)."""

MAP_SIGMA = 5.0
"""Smoothing of the upscaled map before it is turned into blur levels (pixels)."""

MAX_LEVEL = 10.0
LEVEL_STEPS = 100
"""Levels are k / 10 for k = 0..100."""

ANCHOR_LEVELS: tuple[float, ...] = (10.0, 4.5, 2.8, 1.5, 0.5, 0.0)
"""Levels whose blur ``guided_blur`` computes: sigma = 0, 0.92, 2.69, 5.22, 8.15, 10."""

FACTOR_TOL = 1e-4
"""Frequencies whose gain is at most this are dropped from a strong anchor blur; the result
changes by at most 1e-4 x the image's RMS (Parseval)."""

_REFERENCE_SIZE = 224.0
"""Image size at which the fit's spectral weight is 1 / (1 + k^2 + l^2) up to scale."""

Mode = Literal["background", "object"]
Baseline = Literal["blur", "zero"]

# --------------------------------------------------------------------------------------
# Gaussian filtering with scipy's "reflect" boundary
# --------------------------------------------------------------------------------------


def _radius(sigma: float, truncate: float = TRUNCATE) -> int:
    return int(truncate * float(sigma) + 0.5)


def _kernel1d(sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """Normalised taps g[-r..r] (float64); ``[1.]`` when sigma is 0 or the radius is 0."""
    r = _radius(sigma, truncate) if sigma > 0 else 0
    if r == 0:
        return torch.ones(1, dtype=torch.float64)
    m = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (m / float(sigma)) ** 2)
    return g / g.sum()


def _reflect_index(idx: Tensor, n: int) -> Tensor:
    """scipy "reflect" (half-sample symmetric) index folding: period 2n, i -> 2n - 1 - i."""
    idx = torch.remainder(idx, 2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


@functools.lru_cache(maxsize=256)
def _dense_operator(n: int, sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """M_sigma [n, n] (float64): (M x)[i] = sum_m g[m] x[reflect(i + m)]."""
    g = _kernel1d(sigma, truncate)
    r = (g.numel() - 1) // 2
    rows = torch.arange(n).unsqueeze(1).expand(n, 2 * r + 1)
    cols = _reflect_index(rows + torch.arange(-r, r + 1), n)
    op = torch.zeros(n, n, dtype=torch.float64)
    op.index_put_((rows.reshape(-1), cols.reshape(-1)), g.repeat(n), accumulate=True)
    return op


@functools.lru_cache(maxsize=64)
def _dct_matrix(n: int) -> Tensor:
    """Orthonormal DCT-II C [n, n] (float64): C[k, i] = a_k cos(pi k (2i + 1) / (2n))."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


@functools.lru_cache(maxsize=1024)
def _gains(n: int, sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """DCT eigenvalues of M_sigma: lambda[k] = sum_m g[m] cos(pi k m / n), k = 0..n-1 (float64)."""
    g = _kernel1d(sigma, truncate)
    r = (g.numel() - 1) // 2
    m = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    return (g * torch.cos(math.pi * k * m / n)).sum(dim=1)


@functools.lru_cache(maxsize=256)
def _axis_factors(n: int, sigma: float, tol: float = 0.0, truncate: float = TRUNCATE) -> tuple[Tensor, ...]:
    """Factors whose product (left to right) is the 1-D blur M_sigma along an axis of length n.

    ``()`` is the identity (radius 0). With ``tol > 0`` and few frequencies above ``tol``
    (K <= 0.6 n, where the low-rank product is cheaper), returns (C_K^T diag(lambda_K), C_K);
    otherwise the exact dense ``(M_sigma,)``.
    """
    if sigma <= 0 or _radius(sigma, truncate) == 0:
        return ()
    if tol > 0:
        lam = _gains(n, sigma, truncate)
        above = (lam.abs() > tol).nonzero()
        keep = int(above.max()) + 1 if above.numel() else 1
        if keep <= 0.6 * n:
            basis = _dct_matrix(n)[:keep]
            return (basis.T * lam[:keep], basis)
    return (_dense_operator(n, sigma, truncate),)


@functools.lru_cache(maxsize=256)
def _factors_on(
    n: int, sigma: float, tol: float, truncate: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, ...]:
    """:func:`_axis_factors` converted to ``device`` / ``dtype`` (cached)."""
    return tuple(f.to(device=device, dtype=dtype) for f in _axis_factors(n, sigma, tol, truncate))


def _blur_last2(
    t: Tensor,
    sigma: float,
    tol: float = 0.0,
    truncate: float = TRUNCATE,
    out: Tensor | None = None,
    scratch: Tensor | None = None,
) -> Tensor:
    """``R t C^T`` on the last two dims with R, C the 1-D blurs of :func:`_axis_factors`.

    Factors are applied right to left, alternating rows and columns, so a low-rank blur
    shrinks the tensor to K x K before expanding it back. ``out`` receives the result and
    ``scratch`` (same shape) a full-size intermediate, if given: reusing large buffers
    avoids fresh allocations, which cost as much as the products on the CPU. The identity
    (radius 0) returns ``t`` itself.
    """
    rows = _factors_on(t.shape[-2], float(sigma), tol, float(truncate), t.device, t.dtype)
    cols = _factors_on(t.shape[-1], float(sigma), tol, float(truncate), t.device, t.dtype)
    steps = [
        (side, factor)
        for fr, fc in itertools.zip_longest(reversed(rows), reversed(cols))
        for side, factor in (("rows", fr), ("cols", fc))
        if factor is not None
    ]
    for i, (side, factor) in enumerate(steps):
        if side == "rows":
            shape = (*t.shape[:-2], factor.shape[0], t.shape[-1])
        else:
            shape = (*t.shape[:-2], t.shape[-2], factor.shape[0])
        target = out if i == len(steps) - 1 else scratch
        if target is not None and (tuple(target.shape) != shape or target is t):
            target = None
        t = torch.matmul(factor, t, out=target) if side == "rows" else torch.matmul(t, factor.T, out=target)
    return t


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def gaussian_blur(t: Tensor, sigma: float, truncate: float = TRUNCATE) -> Tensor:
    """Gaussian blur of the last two dims, equal to ``scipy.ndimage.gaussian_filter`` with
    ``sigma=(0, ..., 0, sigma, sigma)``, ``mode="reflect"``, ``truncate=truncate``.

    out = M_sigma(H) @ t @ M_sigma(W)^T (exact dense operators); sigma 0 returns ``t``.
    """
    if t.dim() < 2:
        raise ValueError(f"expected a tensor with at least 2 dims, got {tuple(t.shape)}")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    out = _blur_last2(t.to(_compute_dtype(t)), sigma, 0.0, truncate)
    return out.to(t.dtype) if torch.is_floating_point(t) else out


# --------------------------------------------------------------------------------------
# Blur levels and the guided blur
# --------------------------------------------------------------------------------------


def level_to_sigma(level: float | Tensor) -> float | Tensor:
    """sigma(L) = (10 - L)^4 / 1000: 10 at level 0 (no salience), 0 at level 10 (the peak)."""
    return (MAX_LEVEL - level) ** 4 / 1000.0


def _check_maps(maps_up: Tensor) -> None:
    if maps_up.dim() != 3:
        raise ValueError(f"expected upscaled maps [B, H, W], got shape {tuple(maps_up.shape)}")


def _level_indices(maps_up: Tensor) -> Tensor:
    """k = 10 L as int32 in 0..100 (see :func:`blur_levels`): round(100 G_5(S) / max G_5(S))."""
    _check_maps(maps_up)
    smooth = gaussian_blur(maps_up.to(_compute_dtype(maps_up)), MAP_SIGMA)
    peak = smooth.amax(dim=(-2, -1), keepdim=True)
    scale = torch.where(peak > 0, (MAX_LEVEL * 10.0) / peak, torch.zeros_like(peak))
    return torch.round(smooth * scale).clamp_(0, LEVEL_STEPS).to(torch.int32)


def blur_levels(maps_up: Tensor) -> Tensor:
    """Blur level L in {0, 0.1, ..., 10} of every pixel of upscaled maps ``[B, H, W]``.

    L = round(10 * G_5(S) / max G_5(S), 1 decimal), with G_5 a Gaussian of sigma 5 px
    (scipy "reflect", truncate 4). A map whose smoothed maximum is 0 gives all zeros.
    """
    return _level_indices(maps_up).to(_compute_dtype(maps_up)) / 10.0


@functools.lru_cache(maxsize=32)
def _anchor_coefficients(height: int, width: int) -> Tensor:
    """Coefficients c [101, A] (float64) such that blur(level k) ~= sum_a c[k, a] blur(anchor a).

    In the DCT basis every blur is the separable gain Phi_s(k, l) = lambda_s^H(k) lambda_s^W(l).
    For each level s, c[s] minimises sum_{k,l} w(k,l) (Phi_s - sum_a c_a Phi_a)^2 subject to
    sum_a c_a = 1 (the mean is kept exactly), with w = 1 / (224^-2 + (k/H)^2 + (l/W)^2), the
    1/f^2 power spectrum of natural images (f in half-cycles per pixel). Levels whose blur
    equals an anchor's (the anchors themselves and every level with kernel radius 0, i.e.
    the identity) get that anchor exactly (one-hot).
    """
    sigmas = [float(level_to_sigma(k / 10.0)) for k in range(LEVEL_STEPS + 1)]
    anchors = [round(level * 10) for level in ANCHOR_LEVELS]
    lam_h = torch.stack([_gains(height, s) for s in sigmas])  # [S, H]
    lam_w = torch.stack([_gains(width, s) for s in sigmas])  # [S, W]
    fh = torch.arange(height, dtype=torch.float64).unsqueeze(1) / height
    fw = torch.arange(width, dtype=torch.float64).unsqueeze(0) / width
    weight = 1.0 / (_REFERENCE_SIZE**-2 + fh**2 + fw**2)
    a_h, a_w = lam_h[anchors], lam_w[anchors]  # [A, H], [A, W]
    gram = torch.einsum("ak,bk,kl,al,bl->ab", a_h, a_h, weight, a_w, a_w)
    rhs = torch.einsum("sk,ak,kl,sl,al->as", lam_h, a_h, weight, lam_w, a_w)  # [A, S]
    n_anchor = len(anchors)
    kkt = torch.zeros(n_anchor + 1, n_anchor + 1, dtype=torch.float64)
    kkt[:n_anchor, :n_anchor] = gram
    kkt[:n_anchor, n_anchor] = 1.0
    kkt[n_anchor, :n_anchor] = 1.0
    rhs = torch.cat([rhs, torch.ones(1, rhs.shape[1], dtype=torch.float64)])
    # least squares also covers tiny images, where several anchors coincide (singular system)
    coef = torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution[:n_anchor].T.contiguous()  # [S, A]
    for s in range(LEVEL_STEPS + 1):
        for a, idx in enumerate(anchors):
            if torch.equal(lam_h[s], lam_h[idx]) and torch.equal(lam_w[s], lam_w[idx]):
                coef[s] = 0.0
                coef[s, a] = 1.0
                break
    return coef


def _anchor_blurs(x: Tensor) -> Iterator[Tensor]:
    """G_sigma(x) for the sigma of each of ``ANCHOR_LEVELS``, in order.

    The low-rank anchors all start with the same projection onto the leading DCT
    frequencies (C_K x C_K^T, K their largest cut): it is computed once and each of them
    only expands its own K x K corner back, (C_K^T diag lambda) Z_K (diag lambda C_K).
    Every yielded tensor but ``x`` itself is one reused buffer, valid until the next item.
    """
    height, width = x.shape[-2], x.shape[-1]
    plans = []
    for level in ANCHOR_LEVELS:
        sigma = float(level_to_sigma(level))
        rows = _factors_on(height, sigma, FACTOR_TOL, TRUNCATE, x.device, x.dtype)
        cols = _factors_on(width, sigma, FACTOR_TOL, TRUNCATE, x.device, x.dtype)
        plans.append((sigma, rows, cols, len(rows) == 2 and len(cols) == 2))
    low_rank = [(rows, cols) for _, rows, cols, shared in plans if shared]
    if low_rank:
        reduce_rows = max((rows[1] for rows, _ in low_rank), key=len)
        reduce_cols = max((cols[1] for _, cols in low_rank), key=len)
        projected = torch.matmul(torch.matmul(reduce_rows, x), reduce_cols.T)
    result = torch.empty_like(x)
    scratch: Tensor | None = None
    for sigma, rows, cols, shared in plans:
        if shared:
            corner = projected[..., : rows[1].shape[0], : cols[1].shape[0]]
            yield torch.matmul(torch.matmul(rows[0], corner), cols[0].T, out=result)
        elif not rows and not cols:
            yield x
        else:
            if scratch is None:
                scratch = torch.empty_like(x)
            yield _blur_last2(x, sigma, FACTOR_TOL, out=result, scratch=scratch)


def _check_images_and_maps(x01: Tensor, maps_up: Tensor) -> tuple[int, int, int]:
    """Validate images ``[B, C, H, W]`` and upscaled maps ``[B, H, W]``; return (B, H, W)."""
    if x01.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x01.shape)}")
    _check_maps(maps_up)
    b, _, height, width = x01.shape
    if tuple(maps_up.shape) != (b, height, width):
        raise ValueError(
            f"maps_up {tuple(maps_up.shape)} must match the images' batch and size {(b, height, width)}; "
            "upscale the maps to the input size first"
        )
    return b, height, width


def guided_blur(x01: Tensor, maps_up: Tensor, mode: Mode = "background") -> Tensor:
    """Salience-guided blur of images ``[B, C, H, W]`` by upscaled maps ``[B, H, W]``.

    A pixel at blur level L (see :func:`blur_levels`) takes its value from the image blurred
    per channel with sigma(L) = (10 - L)^4 / 1000 ("background": blur where the model does
    not look) or sigma(10 - L) ("object": blur where it looks); sigma 0 keeps the pixel.

    Computed as out = sum_a c_a(L) * G_{sigma_a}(x) over the ``ANCHOR_LEVELS`` with the
    fitted coefficients of :func:`_anchor_coefficients`. Exact at every level whose kernel has
    radius 0 (sigma < 0.125) and at the anchor levels (up to the 1e-4 frequency cut of the
    strong blurs); elsewhere the mean absolute difference to the per-level scipy reference is
    below 1e-3 on natural images (benchmarks/bench_guided_blur.py, tests).
    """
    b, height, width = _check_images_and_maps(x01, maps_up)
    if mode not in ("background", "object"):
        raise ValueError(f"mode must be 'background' or 'object', got {mode!r}")
    if b == 0:
        return x01.clone()
    dtype = _compute_dtype(x01)
    x = x01.to(dtype)
    index = _level_indices(maps_up.to(x.device))
    if mode == "object":
        index = LEVEL_STEPS - index
    coef = _anchor_coefficients(height, width).T.to(device=x.device, dtype=dtype).contiguous()  # [A, 101]
    levels = index.reshape(-1)
    out = torch.empty_like(x)
    weight = torch.empty(b, 1, height, width, dtype=dtype, device=x.device)
    for a, blurred in enumerate(_anchor_blurs(x)):
        torch.index_select(coef[a], 0, levels, out=weight.view(-1))  # c_a(L) per pixel
        if a == 0:
            torch.mul(blurred, weight, out=out)
        else:
            out.addcmul_(blurred, weight)
    return out.to(x01.dtype)
