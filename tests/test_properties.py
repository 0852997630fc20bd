"""Property-based tests (hypothesis) of every measure function.

Random shapes (maps from 1x1 to 12x12, batches of 1 to 4), dtypes (float32, float64, and
uint8 / int64 where a function accepts 8-bit levels), value ranges (random, constant,
all-zero, binary) and batch sizes. Checked: outputs are finite, lie in their documented
range, and are invariant where they must be (a map against itself has SSIM 1, a constant
map has entropy 0, the identity transform is exact, salt and pepper of amount 0 is the
identity ...).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from salience_audit.measures import curve, similarity
from salience_audit.measures.deletion import deletion_insertion_curves
from salience_audit.measures.entropy import histogram_entropy, normalized_histogram_entropy, spatial_entropy
from salience_audit.measures.stability import (
    pair_indices,
    pairwise_spearman,
    pairwise_ssim,
    pairwise_topk_iou,
    stability_matrix,
)
from salience_audit.perturb import blur, geometry, noise
from salience_audit.stats import bootstrap, compare, detection, distribution, streaming

PROPS = settings(max_examples=30, deadline=None, database=None)
FLOAT_DTYPES = (np.float32, np.float64)

# ----------------------------------------------------------------------------- strategies


@st.composite
def map_batches(draw, min_side: int = 1, max_side: int = 12, max_batch: int = 4, n_models: int | None = None):
    """A float tensor of maps in [0, 1], shape ``[B, h, w]`` (or ``[N, B, h, w]``), of a random kind."""
    b = draw(st.integers(1, max_batch))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = (b, h, w) if n_models is None else (n_models, b, h, w)
    kind = draw(st.sampled_from(["random", "random", "constant", "zero", "binary", "levels"]))
    if kind == "random":
        arr = draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1, width=32 if dtype == np.float32 else 64)))
    elif kind == "constant":
        arr = np.full(shape, draw(st.floats(0, 1)), dtype=dtype)
    elif kind == "zero":
        arr = np.zeros(shape, dtype=dtype)
    elif kind == "binary":
        arr = draw(hnp.arrays(np.bool_, shape)).astype(dtype)
    else:  # few distinct values, many ties
        arr = (draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3))) / 3).astype(dtype)
    return torch.from_numpy(arr)


@st.composite
def image_batches(draw, max_side: int = 16, channels: tuple[int, ...] = (1, 3)):
    b = draw(st.integers(1, 3))
    c = draw(st.sampled_from(channels))
    h = draw(st.integers(2, max_side))
    w = draw(st.integers(2, max_side))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    arr = draw(hnp.arrays(dtype, (b, c, h, w), elements=st.floats(0, 1, width=32 if dtype == np.float32 else 64)))
    return torch.from_numpy(arr)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(torch.as_tensor(t)).all())


def _in(t: torch.Tensor, low: float, high: float, tol: float = 1e-9) -> bool:
    t = torch.as_tensor(t, dtype=torch.float64)
    return bool(((t >= low - tol) & (t <= high + tol)).all())


def _is_constant(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(start_dim=-2)
    return flat.amax(dim=-1) == flat.amin(dim=-1)


# ----------------------------------------------------------------------------- entropy


@PROPS
@given(map_batches())
def test_entropy_ranges_and_constant_maps(maps):
    h, w = maps.shape[-2:]
    hist = histogram_entropy(maps)
    norm = normalized_histogram_entropy(maps)
    spatial = spatial_entropy(maps)
    for values in (hist, norm, spatial):
        assert values.shape == (maps.shape[0],) and values.dtype == torch.float64 and _finite(values)
    assert _in(hist, 0.0, math.log2(min(h * w, 256)), 1e-9)
    assert _in(norm, 0.0, 1.0, 1e-9) and _in(spatial, 0.0, 1.0, 1e-9)
    const = _is_constant(maps)
    assert (hist[const] == 0).all() and (norm[const] == 0).all()
    # an all-zero map (what min-max normalisation makes of a constant one) has no spread at all
    zero = maps.flatten(1).amax(1) == 0
    assert (spatial[zero] == 0).all()


@PROPS
@given(map_batches(), st.randoms(use_true_random=False))
def test_histogram_entropy_ignores_where_values_are(maps, rnd):
    b, h, w = maps.shape
    perm = list(range(h * w))
    rnd.shuffle(perm)
    shuffled = maps.flatten(1)[:, perm].view(b, h, w)
    torch.testing.assert_close(histogram_entropy(shuffled), histogram_entropy(maps))
    torch.testing.assert_close(spatial_entropy(shuffled), spatial_entropy(maps))
    torch.testing.assert_close(histogram_entropy(maps.transpose(1, 2)), histogram_entropy(maps))


# ----------------------------------------------------------------------------- similarity


@PROPS
@given(map_batches(), map_batches())
def test_map_similarities_ranges_symmetry_and_identity(a, b):
    b = b[: a.shape[0]] if b.shape[0] >= a.shape[0] else b.repeat(a.shape[0], 1, 1)[: a.shape[0]]
    b = torch.nn.functional.interpolate(b.unsqueeze(1).double(), size=a.shape[-2:], mode="nearest").squeeze(1).to(a.dtype)
    ssim = similarity.ssim_maps(a, b)
    rho = similarity.spearman(a, b)
    iou = similarity.topk_iou(a, b, fraction=0.25)
    for values in (ssim, rho, iou):
        assert values.shape == (a.shape[0],) and values.dtype == torch.float64 and _finite(values)
    assert _in(ssim, -1.0, 1.0, 1e-9) and _in(rho, -1.0, 1.0, 1e-12) and _in(iou, 0.0, 1.0)
    torch.testing.assert_close(ssim, similarity.ssim_maps(b, a))
    torch.testing.assert_close(rho, similarity.spearman(b, a))
    torch.testing.assert_close(iou, similarity.topk_iou(b, a, fraction=0.25))
    # a map against itself
    assert (similarity.ssim_maps(a, a) == 1.0).all()
    assert (similarity.topk_iou(a, a) == 1.0).all()
    self_rho = similarity.spearman(a, a)
    const = _is_constant(a)
    torch.testing.assert_close(self_rho[~const], torch.ones(int((~const).sum()), dtype=torch.float64))
    assert (self_rho[const] == 0).all()  # undefined for a constant map: 0, never NaN


@PROPS
@given(st.data())
def test_ssim_uint8_accepts_integer_and_float_levels(data):
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 11)), data.draw(st.integers(1, 11)))
    q = data.draw(hnp.arrays(np.uint8, shape))
    r = data.draw(hnp.arrays(np.uint8, shape))
    ref = similarity.ssim_uint8(torch.from_numpy(q), torch.from_numpy(r))
    assert _finite(ref) and _in(ref, -1.0, 1.0, 1e-9)
    for dtype in (torch.int64, torch.float32, torch.float64):
        torch.testing.assert_close(similarity.ssim_uint8(torch.from_numpy(q).to(dtype), torch.from_numpy(r).to(dtype)), ref)
    assert (similarity.ssim_uint8(torch.from_numpy(q), torch.from_numpy(q)) == 1.0).all()


def test_ssim_of_an_empty_batch():
    empty = torch.zeros(0, 7, 7)
    assert similarity.ssim_maps(empty, empty).shape == (0,)


# ----------------------------------------------------------------------------- stability


@PROPS
@given(st.integers(2, 4).flatmap(lambda n: map_batches(max_batch=3, max_side=9, n_models=n)))
def test_pairwise_stability_matches_pairwise_similarity(maps):
    n, b = maps.shape[:2]
    for fn, single, low in (
        (pairwise_ssim, similarity.ssim_maps, -1.0),
        (pairwise_spearman, similarity.spearman, -1.0),
        (pairwise_topk_iou, similarity.topk_iou, 0.0),
    ):
        pairs, values = fn(maps)
        assert pairs == pair_indices(n) and len(pairs) == n * (n - 1) // 2
        assert values.shape == (len(pairs), b) and _finite(values) and _in(values, low, 1.0, 1e-9)
        for p, (i, j) in enumerate(pairs):
            torch.testing.assert_close(values[p], single(maps[i], maps[j]))
    same = maps[:1].expand_as(maps).contiguous()
    assert (pairwise_ssim(same)[1] == 1.0).all()
    matrix = stability_matrix(pairwise_ssim(maps)[1].mean(dim=1), n)
    assert np.allclose(matrix, matrix.T) and (np.diag(matrix) == 1).all() and np.isfinite(matrix).all()


def test_stability_of_a_single_run_is_refused():
    with pytest.raises(ValueError, match="at least two runs"):
        pairwise_ssim(torch.rand(1, 2, 7, 7))


# ----------------------------------------------------------------------------- noise


@PROPS
@given(image_batches(), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_salt_and_pepper(x, amount, seed):
    same = noise.salt_and_pepper(x, 0.0)
    assert torch.equal(same, x) and same is not x  # amount 0: an exact copy
    out = noise.salt_and_pepper(x, amount, generator=torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype and _finite(out) and _in(out, 0.0, 1.0, 0.0)
    kept_or_replaced = (out == x) | (out == 0) | (out == 1)
    assert kept_or_replaced.all()
    again = noise.salt_and_pepper(x, amount, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, again)
    full = noise.salt_and_pepper(x, 1.0, generator=torch.Generator().manual_seed(seed))
    assert ((full == 0) | (full == 1)).all()


@pytest.mark.parametrize("amount", [-0.1, 1.5, float("nan"), float("inf")])
def test_salt_and_pepper_refuses_bad_amounts(amount):
    with pytest.raises(ValueError):
        noise.salt_and_pepper(torch.rand(1, 3, 4, 4), amount)


def test_salt_and_pepper_refuses_integer_images():
    with pytest.raises(ValueError, match="floating-point"):
        noise.salt_and_pepper(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 0.1)


# ----------------------------------------------------------------------------- geometry


@PROPS
@given(image_batches(max_side=20), st.integers(8, 400))
def test_geometric_variants(x, input_size):
    variants = geometry.geometric_variants(input_size)
    assert len(variants) == 13 and len({v.name for v in variants}) == 13
    by_name = {v.name: v for v in variants}
    assert by_name["identity"].apply(x) is x
    assert torch.equal(by_name["flip_lr"].apply(by_name["flip_lr"].apply(x)), x)
    assert torch.equal(by_name["flip_tb"].apply(by_name["flip_tb"].apply(x)), x)
    assert torch.equal(by_name["rot90_ccw"].apply(by_name["rot90_cw"].apply(x)), x)
    maps = x[:, 0]
    levels = (x * 255).to(torch.uint8)
    for v in variants:
        moved = v.apply(x)
        assert moved.dtype == x.dtype and _finite(moved)
        if v.kind != "rot90":
            assert moved.shape == x.shape
        # values are only moved or repeated, never invented
        assert set(moved.unique().tolist()) <= set(x.unique().tolist())
        # maps [B, H, W] move exactly like one channel of the images
        assert torch.equal(v.apply(maps), moved[:, 0])
        assert torch.equal(v.apply(levels), (moved * 255).to(torch.uint8))  # 8-bit levels are accepted too
    assert geometry.shift_pixels(input_size) >= 1


# ----------------------------------------------------------------------------- degradation


@PROPS
@given(image_batches(max_side=24), st.floats(0, 12))
def test_gaussian_blur(x, sigma):
    out = blur.gaussian_blur(x, sigma)
    assert out.shape == x.shape and out.dtype == x.dtype and _finite(out)
    tol = 1e-5 if x.dtype == torch.float32 else 1e-10
    assert _in(out, float(x.min()), float(x.max()), tol)  # a weighted average of the pixels
    torch.testing.assert_close(out.double().mean(dim=(-2, -1)), x.double().mean(dim=(-2, -1)), atol=tol, rtol=0)
    if sigma == 0:
        assert torch.equal(out, x)


@PROPS
@given(map_batches(min_side=2, max_side=24, max_batch=3))
def test_blur_levels(maps):
    levels = blur.blur_levels(maps)
    assert levels.shape == maps.shape and _finite(levels) and _in(levels, 0.0, 10.0, 0.0)
    tenths = levels * 10
    assert torch.allclose(tenths, tenths.round(), atol=1e-4)
    nonzero = maps.flatten(1).amax(1) > 0
    assert (levels.flatten(1)[nonzero].amax(1) == 10).all()
    assert (levels.flatten(1)[~nonzero] == 0).all()


@PROPS
@given(st.data())
def test_guided_blur(data):
    x = data.draw(image_batches(max_side=24, channels=(3,)))
    b, _, h, w = x.shape
    maps = data.draw(map_batches(min_side=h, max_side=h, max_batch=b)) if h == w else None
    if maps is None or maps.shape != (b, h, w):
        maps = torch.rand(b, h, w, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    for mode in ("background", "object"):
        out = blur.guided_blur(x, maps.to(x.dtype), mode=mode)
        assert out.shape == x.shape and out.dtype == x.dtype and _finite(out)
        assert _in(out, -0.02, 1.02, 0.0)  # fitted blend of blurs: within a hair of the image range
    flat = torch.full_like(x, 0.3)
    torch.testing.assert_close(blur.guided_blur(flat, maps.to(x.dtype)), flat, atol=1e-5, rtol=0)
    zero = torch.zeros(b, h, w, dtype=x.dtype)
    # no salience anywhere: "object" mode blurs nothing (sigma 0 everywhere)
    torch.testing.assert_close(blur.guided_blur(x, zero, mode="object"), x, atol=1e-6, rtol=0)


@PROPS
@given(image_batches(max_side=12, channels=(3,)), st.integers(1, 6), st.booleans())
def test_deletion_insertion_curves(x, steps, random_order):
    maps = x.mean(dim=1)
    score_fn = lambda images: images.double().mean(dim=(1, 2, 3))  # noqa: E731
    out = deletion_insertion_curves(
        score_fn, x, maps, steps=steps, random_order=random_order, generator=torch.Generator().manual_seed(0)
    )
    b = x.shape[0]
    assert out["deletion"].shape == (b, steps + 1) and out["insertion"].shape == (b, steps + 1)
    for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
        assert _finite(out[key]) and _in(out[key], 0.0, 1.0, 1e-6)
    clean = score_fn(x)
    torch.testing.assert_close(out["deletion"][:, 0], clean)
    torch.testing.assert_close(out["insertion"][:, -1], clean)


# ----------------------------------------------------------------------------- detection


@PROPS
@given(st.data())
def test_detection_metrics(data):
    n = data.draw(st.integers(0, 30))
    scores = np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)), dtype=np.float64)
    labels = np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    m = detection.detection_metrics(scores.astype(dtype), labels, threshold=data.draw(st.floats(0, 1)))
    both = 0 < labels.sum() < n
    for key in ("accuracy", "apcer", "bpcer", "acer", "roc_auc"):
        value = m[key]
        assert math.isnan(value) or 0.0 <= value <= 1.0
    assert m["n"] == n and m["n_real"] + m["n_synthetic"] == n
    assert math.isnan(m["roc_auc"]) != both
    if n:
        assert 0.0 <= m["accuracy"] <= 1.0
    if both:
        # rank-based: a monotone change of the scores does not change the AUC; reversing flips it
        assert detection.roc_auc(scores * 2.0, labels) == pytest.approx(detection.roc_auc(scores, labels))
        assert detection.roc_auc(-scores, labels) == pytest.approx(1 - detection.roc_auc(scores, labels))


def test_detection_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="finite"):
        detection.detection_metrics([0.2, float("nan")], [0, 1])


# ----------------------------------------------------------------------------- stats and distributions

values_lists = st.lists(st.floats(-1e3, 1e3), min_size=0, max_size=40)


@PROPS
@given(values_lists, st.integers(0, 2**16))
def test_bootstrap_ci(values, seed):
    arr = np.asarray(values, dtype=np.float64)
    with_nan = np.concatenate([arr, [np.nan, np.nan]])
    mean, low, high = bootstrap.bootstrap_ci(with_nan, n_boot=200, seed=seed)
    if arr.size == 0:
        assert all(math.isnan(v) for v in (mean, low, high))
        return
    assert all(math.isfinite(v) for v in (mean, low, high))
    tol = 1e-9 * (1 + np.abs(arr).max())
    assert arr.min() - tol <= low <= high <= arr.max() + tol
    assert mean == pytest.approx(arr.mean())
    assert bootstrap.bootstrap_ci(arr, n_boot=200, seed=seed) == (mean, low, high)
    if np.ptp(arr) == 0:
        assert low == high == pytest.approx(arr[0])


@PROPS
@given(values_lists, values_lists)
def test_compare_groups(a, b):
    out = compare.compare_groups(a, b)
    back = compare.compare_groups(b, a)
    for key in ("mannwhitney_p", "welch_p"):
        assert math.isnan(out[key]) or 0.0 <= out[key] <= 1.0
    d = out["cliffs_delta"]
    assert math.isnan(d) == (not a or not b)
    if a and b:
        assert -1.0 <= d <= 1.0 and back["cliffs_delta"] == pytest.approx(-d)
        assert out["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-9)


@PROPS
@given(
    st.lists(st.tuples(st.floats(-100, 100), st.floats(0, 100)), min_size=1, max_size=20, unique_by=lambda p: p[0]),
    st.randoms(use_true_random=False),
)
def test_area_under_curve(points, rnd):
    """(With repeated x values the curve itself is ambiguous; the measures use distinct noise levels.)"""
    xs, ys = zip(*points)
    area = curve.area_under_curve(xs, ys)
    assert math.isfinite(area) and area >= 0
    shuffled = list(points)
    rnd.shuffle(shuffled)
    sx, sy = zip(*shuffled)
    assert curve.area_under_curve(sx, sy) == pytest.approx(area, abs=1e-9)
    assert curve.area_under_curve(xs, [2.0] * len(xs)) == pytest.approx(2.0 * (max(xs) - min(xs)))
    assert math.isnan(curve.area_under_curve([], []))


@PROPS
@given(values_lists, values_lists, st.integers(1, 10))
def test_streaming_aggregates_merge(a, b, k):
    merged = streaming.StreamingMoments().update(a).merge(streaming.StreamingMoments().update(b))
    whole = streaming.StreamingMoments().update(a + b)
    assert merged.count == whole.count == len(a) + len(b)
    if whole.count:
        assert merged.mean == pytest.approx(whole.mean, abs=1e-6)
    if whole.count > 1:
        assert merged.variance == pytest.approx(whole.variance, rel=1e-6, abs=1e-6)
    res = streaming.Reservoir(k, seed=1).update(a).merge(streaming.Reservoir(k, seed=2).update(b))
    assert len(res) == min(k, len(a) + len(b)) and set(res.values.tolist()) <= set(a) | set(b)


@PROPS
@given(values_lists, values_lists)
def test_compare_distributions(a, b):
    out = distribution.compare_distributions(a, b)
    if a and b:
        assert 0.0 <= out["ks_statistic"] <= 1.0 and 0.0 <= out["ks_pvalue"] <= 1.0
        assert out["wasserstein"] >= 0 and math.isfinite(out["wasserstein"])
        same = distribution.compare_distributions(a, a)
        assert same["ks_statistic"] == 0 and same["wasserstein"] == pytest.approx(0, abs=1e-9)
    else:
        assert math.isnan(out["ks_statistic"]) and math.isnan(out["wasserstein"])


@PROPS
@given(map_batches(max_side=9), map_batches(max_side=9))
def test_mean_map_distance(a, b):
    b = torch.nn.functional.interpolate(b.unsqueeze(1).double(), size=a.shape[-2:], mode="nearest").squeeze(1)
    out = distribution.mean_map_distance(a, b)
    assert 0.0 <= out["l1"] <= 1.0 and -1.0 <= out["ssim"] <= 1.0
    assert distribution.mean_map_distance(a, a) == {"l1": 0.0, "ssim": 1.0}
