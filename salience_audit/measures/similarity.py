"""Similarities between two batches of salience maps, one value per map pair.

Every function takes two batches ``a`` and ``b`` of the same shape ``[B, h, w]`` and
returns a float64 tensor ``[B]`` on the input device; pair ``i`` compares ``a[i]`` with
``b[i]``. All of them are batched (no per-map Python loop).

- :func:`ssim_uint8` - SSIM with scikit-image's defaults on 8-bit maps (the headline
  similarity of the stability, noise, equivariance and degradation measures).
- :func:`ssim_maps` - the same on [0, 1] maps, after q = floor(255 S).
- :func:`ssim_window_moments` + :func:`ssim_uint8_with_moments` - :func:`ssim_uint8` split
  in its per-map and per-pair halves, for maps compared several times (transforms).
- :func:`spearman` - Spearman rank correlation over the h*w cells.
- :func:`topk_iou` - intersection over union of the top-k% cells.

The helpers :func:`average_ranks`, :func:`pearson_rows` and :func:`topk_mask` are public
so that the pairwise (stability) versions can rank / threshold each map once and then
compare every pair.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from salience_audit.measures.arrays import accepts_numpy
from salience_audit.salience.normalize import to_uint8_levels

#: SSIM constants of Wang et al. (2004), as scikit-image's defaults.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Dynamic range of 8-bit maps.
SSIM_DATA_RANGE = 255.0
#: Side of the uniform window when the map is large enough.
SSIM_WINDOW = 7


def _check_pair(a: Tensor, b: Tensor, name: str) -> None:
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(
            f"{name} expects two batches of maps [B, h, w], got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape != b.shape:
        raise ValueError(f"{name} expects batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-2] < 1 or a.shape[-1] < 1:
        raise ValueError(f"{name} expects maps of at least 1x1 cells, got {tuple(a.shape)}")


def ssim_window_size(h: int, w: int) -> int:
    """Side of the square uniform SSIM window for an ``h x w`` map.

    7 when both sides are at least 7, otherwise the largest odd number <= min(h, w)
    (5 for 5x5 and 6x6 maps, 3 for 3x3 and 4x4, 1 for 1x1 and 2x2).
    """
    if h < 1 or w < 1:
        raise ValueError(f"SSIM needs maps of at least 1x1 cells, got {h}x{w}")
    side = min(h, w, SSIM_WINDOW)
    return side if side % 2 == 1 else side - 1


@accepts_numpy
def ssim_uint8(a: Tensor, b: Tensor) -> Tensor:
    """Mean structural similarity of each pair of 8-bit maps, as scikit-image computes it.

    ``a`` and ``b`` are ``[B, h, w]`` batches holding values 0..255 (any integer dtype, or a
    float dtype holding those values). The result equals
    ``skimage.metrics.structural_similarity(a[i], b[i], data_range=255)`` on the uint8
    arrays: with a uniform ``W x W`` window (W = :func:`ssim_window_size`), window means
    mu, variances sigma^2 and covariance sigma_xy,

        SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),

    C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over the (h - W + 1)(w - W + 1)
    windows that lie fully inside the map (scikit-image crops (W - 1) / 2 cells from each
    border before averaging, which leaves exactly these windows).

    Variances use the sample normalisation W^2 / (W^2 - 1) as scikit-image's default
    ``use_sample_covariance=True`` does - except for W = 1 (maps with a side of 1 or 2),
    where the sample covariance is undefined (W^2 - 1 = 0) and the population covariance
    is used (variances are then 0 and SSIM reduces to the luminance term); this equals
    scikit-image with ``win_size=1, use_sample_covariance=False``.

    Because C1, C2 > 0 the value is always finite: two identical maps, constant or all
    zero included, give exactly 1. Computed in float64; returns ``[B]`` float64.
    """
    _check_pair(a, b, "ssim_uint8")
    batch, h, w = a.shape
    if batch == 0:
        return torch.zeros(0, dtype=torch.float64, device=a.device)
    # Large maps (upscaled to the input size) go in chunks of a few images, so that the
    # temporaries stay in cache; 7x7 maps go in one piece.
    step = max(1, _SSIM_CHUNK_CELLS // (h * w))
    out = []
    for start in range(0, batch, step):
        x, y = a[start : start + step], b[start : start + step]
        out.append(ssim_uint8_with_moments(x, y, ssim_window_moments(x), ssim_window_moments(y)))
    return torch.cat(out)


def _cov_norm(win: int) -> float:
    """Sample-covariance factor W^2 / (W^2 - 1) of a ``win x win`` window (1 for W = 1)."""
    n_cells = win * win
    return n_cells / (n_cells - 1) if n_cells > 1 else 1.0


def _ssim_from_means(ux: Tensor, uy: Tensor, uxx: Tensor, uyy: Tensor, uxy: Tensor, cov_norm: float) -> Tensor:
    """Mean SSIM ``[k]`` of ``k`` map pairs from their window means ``[k, h', w']`` (float64).

    Overwrites ``uxx`` and ``uxy`` (callers pass temporaries): sq = ux^2 + uy^2,
    var = vx + vy + C2, cv = 2 vxy + C2 (sample normalisation ``cov_norm``). Identical maps
    give exactly 1.
    """
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    uxuy = ux * uy
    sq = ux.square().add_(uy.square())
    var = uxx.add_(uyy).sub_(sq).mul_(cov_norm).add_(c2)
    cv = uxy.sub_(uxuy).mul_(2.0 * cov_norm).add_(c2)
    numerator = uxuy.mul_(2.0).add_(c1).mul_(cv)
    denominator = sq.add_(c1).mul_(var)
    return numerator.div_(denominator).flatten(start_dim=1).mean(dim=1)


def ssim_window_moments(levels: Tensor) -> Tensor:
    """Window means E[x] and E[x^2] of each 8-bit map ``[B, h, w]``: ``[B, 2, h', w']`` float64.

    The per-map half of :func:`ssim_uint8`'s work, to compute once for a map that is
    compared several times (see :func:`ssim_uint8_with_moments`).
    """
    if levels.dim() != 3:
        raise ValueError(f"ssim_window_moments expects maps [B, h, w], got {tuple(levels.shape)}")
    batch, h, w = levels.shape
    win = ssim_window_size(h, w)
    step = max(1, _SSIM_CHUNK_CELLS // (h * w))
    parts = [_sat_window_means(levels[s : s + step].unsqueeze(1), win, squares=True)
             for s in range(0, batch, step)]
    return torch.cat(parts) if parts else levels.new_zeros((0, 2, h - win + 1, w - win + 1), dtype=torch.float64)


def ssim_uint8_with_moments(a: Tensor, b: Tensor, moments_a: Tensor, moments_b: Tensor) -> Tensor:
    """:func:`ssim_uint8` of ``a`` and ``b`` given their :func:`ssim_window_moments`.

    Only E[ab] is computed here. Every window sum of 8-bit levels is an exact integer, so
    the result is bit-identical to ``ssim_uint8(a, b)``. Returns ``[B]`` float64.
    """
    _check_pair(a, b, "ssim_uint8_with_moments")
    batch, h, w = a.shape
    win = ssim_window_size(h, w)
    expected = (batch, 2, h - win + 1, w - win + 1)
    if tuple(moments_a.shape) != expected or tuple(moments_b.shape) != expected:
        raise ValueError(
            f"ssim_uint8_with_moments: moments of shape {expected} expected (ssim_window_moments of the maps), "
            f"got {tuple(moments_a.shape)} and {tuple(moments_b.shape)}"
        )
    step = max(1, _SSIM_CHUNK_CELLS // (h * w))
    out = [torch.zeros(0, dtype=torch.float64, device=a.device)]
    for s in range(0, batch, step):
        xa, xb = a[s : s + step], b[s : s + step]
        floats = xa.is_floating_point() or xb.is_floating_point()
        xy = xa.to(torch.float64) * xb if floats else xa.to(torch.int64) * xb.to(torch.int64)
        uxy = _sat_window_means(xy.unsqueeze(1), win, squares=False)[:, 0]
        mx, my = moments_a[s : s + step], moments_b[s : s + step]
        # E[x^2] is overwritten by _ssim_from_means: a copy, as the moments are shared.
        out.append(_ssim_from_means(mx[:, 0], my[:, 0], mx[:, 1].clone(), my[:, 1], uxy, _cov_norm(win)))
    return torch.cat(out)


def _sum_dtype(x: Tensor, n_cells: int, squares: bool) -> torch.dtype:
    """Exact accumulation dtype for summed-area tables of ``x`` (and x^2) over ``n_cells`` cells.

    Integer maps sum in int32 when the largest table entry, n_cells * max|x|^(2 if squares),
    stays below 2^31 (8-bit maps up to 181 x 181 cells), else in int64; float maps in float64.
    Every choice gives the same exact integer window sums for integer-valued maps.
    """
    if x.is_floating_point() or x.is_complex():
        return torch.float64
    if x.numel() == 0:
        return torch.int32
    top = int(x.abs().amax())
    bound = n_cells * (top * top if squares else top)
    return torch.int32 if bound < 2**31 else torch.int64


def _sat_window_means(x: Tensor, win: int, squares: bool) -> Tensor:
    """Means over every ``win x win`` window of ``x [k, 1, h, w]``.

    With ``squares`` the means of x^2 come too (``[k, 2, h', w']``), else ``[k, 1, h', w']``;
    float64. From the summed-area table of x (two running sums, then four corners per
    window): O(1) work per cell whatever the window. Integer maps are summed in an integer
    dtype (:func:`_sum_dtype`), float maps in float64; for 8-bit levels every partial sum
    is an exact integer either way, so the means equal ``avg_pool2d(kernel_size=win,
    stride=1)``'s and do not depend on the dtype.
    """
    k, _, h, w = x.shape
    acc = _sum_dtype(x, h * w, squares)
    x = x.to(acc)
    table = x.new_zeros(k, 2 if squares else 1, h + 1, w + 1)
    table[:, :1, 1:, 1:] = x
    if squares:
        torch.mul(x, x, out=table[:, 1:, 1:, 1:])
    table.cumsum_(dim=-2).cumsum_(dim=-1)
    sums = table[..., win:, win:] - table[..., :-win, win:]
    sums.sub_(table[..., win:, :-win]).add_(table[..., :-win, :-win])
    return sums.to(torch.float64).div_(win * win)


_SSIM_CHUNK_CELLS = 1 << 16
"""Map cells per SSIM chunk (about one 224 x 224 map, 16 maps of 64 x 64)."""


@accepts_numpy
def ssim_maps(a01: Tensor, b01: Tensor) -> Tensor:
    """SSIM of maps in [0, 1]: :func:`ssim_uint8` on q = floor(255 S) of each map.

    The 8-bit conversion is :func:`salience_audit.salience.normalize.to_uint8_levels`
    (what saving the maps as 8-bit PNG files gives). Returns ``[B]`` float64.
    """
    _check_pair(a01, b01, "ssim_maps")
    return ssim_uint8(to_uint8_levels(a01), to_uint8_levels(b01))


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of each row of ``values [B, n]``, ties sharing their average rank.

    For a value v of a row: rank = (#{< v} + #{<= v} + 1) / 2, which is the mean of the
    positions 1..n that the tied values occupy (scipy's ``rankdata(method="average")``).
    Batched through one sort and two ``searchsorted`` calls. NaN is not supported.
    Returns float64 ``[B, n]``.
    """
    if values.dim() != 2:
        raise ValueError(f"average_ranks expects [B, n], got {tuple(values.shape)}")
    ordered = torch.sort(values, dim=1).values.contiguous()
    values = values.contiguous()
    below = torch.searchsorted(ordered, values, right=False)
    at_or_below = torch.searchsorted(ordered, values, right=True)
    return (below + at_or_below + 1).to(torch.float64) / 2.0


def pearson_rows(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of each row pair of ``x, y [B, n]`` in float64.

    r = sum (x - mean x)(y - mean y) / sqrt(sum (x - mean x)^2 * sum (y - mean y)^2).
    A row with zero variance (constant) gives r = 0 (no linear association can be
    measured), never NaN. Returns ``[B]``.
    """
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    xc = x - x.mean(dim=1, keepdim=True)
    yc = y - y.mean(dim=1, keepdim=True)
    cov = (xc * yc).sum(dim=1)
    denom = torch.sqrt((xc * xc).sum(dim=1) * (yc * yc).sum(dim=1))
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, (cov / safe).clamp(-1.0, 1.0), torch.zeros_like(cov))


@accepts_numpy
def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation over the h*w cells of each map pair.

    rho = Pearson correlation of the average ranks (ties share their mean rank), as
    ``scipy.stats.spearmanr`` computes it. When either map is constant its ranks have no
    variance and rho is undefined; it is defined here as 0 (not NaN) so that per-image
    aggregates stay finite. Returns ``[B]`` float64 in [-1, 1].
    """
    _check_pair(a, b, "spearman")
    return pearson_rows(average_ranks(a.flatten(start_dim=1)), average_ranks(b.flatten(start_dim=1)))


def topk_count(n_cells: int, fraction: float) -> int:
    """k = ceil(fraction * n_cells), kept within [1, n_cells].

    A tolerance of 1e-9 absorbs floating-point error (0.07 * 100 counts as 7, not 8).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top-k fraction must be in (0, 1], got {fraction}")
    k = math.ceil(fraction * n_cells - 1e-9)
    return min(max(k, 1), n_cells)


@accepts_numpy
def topk_mask(maps: Tensor, fraction: float = 0.1) -> Tensor:
    """Boolean mask ``[B, h*w]`` of the k = :func:`topk_count` highest cells of each map.

    Ties are broken deterministically by cell index: among equal values the cell with the
    lower row-major index is taken first (a stable descending sort), so a constant map
    selects its first k cells.
    """
    if maps.dim() < 2:
        raise ValueError(f"topk_mask expects maps [B, h, w], got {tuple(maps.shape)}")
    flat = maps.flatten(start_dim=1)
    k = topk_count(flat.shape[1], fraction)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros(flat.shape, dtype=torch.bool, device=flat.device).scatter_(1, order, True)


@accepts_numpy
def topk_iou(a: Tensor, b: Tensor, fraction: float = 0.1) -> Tensor:
    """Intersection over union of the top-k cells of each map pair.

    k = ceil(fraction * h * w) cells per map (see :func:`topk_count`), chosen with the
    index tie-breaking of :func:`topk_mask`. Both sets have k cells, so
    IoU = |A & B| / |A | B| = |A & B| / (2k - |A & B|), in [0, 1] (1 when both maps select
    the same cells). Returns ``[B]`` float64.
    """
    _check_pair(a, b, "topk_iou")
    mask_a = topk_mask(a, fraction)
    mask_b = topk_mask(b, fraction)
    k = topk_count(mask_a.shape[1], fraction)
    inter = (mask_a & mask_b).sum(dim=1).to(torch.float64)
    return inter / (2.0 * k - inter)
