"""Map similarities against scikit-image / scipy oracles and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from salience_audit.measures.similarity import (
    average_ranks,
    spearman,
    ssim_maps,
    ssim_uint8,
    ssim_uint8_with_moments,
    ssim_window_moments,
    ssim_window_size,
    topk_count,
    topk_iou,
    topk_mask,
)
from salience_audit.salience.normalize import to_uint8_levels


def _skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Oracle: scikit-image per pair on uint8 arrays, with the window rule of DESIGN 3(d)."""
    h, w = a.shape[-2:]
    win = ssim_window_size(h, w)
    out = []
    for x, y in zip(a.numpy().astype(np.uint8), b.numpy().astype(np.uint8)):
        if win == 1:
            out.append(structural_similarity(x, y, data_range=255, win_size=1, use_sample_covariance=False))
        else:
            out.append(structural_similarity(x, y, data_range=255, win_size=win))
    return np.asarray(out)


def _random_pair(h: int, w: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (batch, h, w), generator=g)
    # b: a noisy copy of a (realistic similarities), one identical pair, one independent.
    b = (a + torch.randint(-40, 41, (batch, h, w), generator=g)).clamp(0, 255)
    b[0] = a[0]
    b[-1] = torch.randint(0, 256, (h, w), generator=g)
    return a, b


@pytest.mark.parametrize("h,w", [(7, 7), (8, 8), (7, 12), (16, 9), (14, 14), (32, 32), (224, 224)])
def test_ssim_matches_skimage_default_window(h: int, w: int) -> None:
    a, b = _random_pair(h, w, batch=4, seed=h * 1000 + w)
    assert ssim_window_size(h, w) == 7
    got = ssim_uint8(a, b)
    assert got.dtype == torch.float64 and got.shape == (4,)
    np.testing.assert_allclose(got.numpy(), _skimage_ssim(a, b), atol=1e-4, rtol=0)
    assert got[0].item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "h,w,win", [(1, 1, 1), (2, 2, 1), (2, 5, 1), (3, 3, 3), (4, 4, 3), (4, 9, 3), (5, 5, 5), (6, 6, 5), (6, 20, 5)]
)
def test_ssim_small_maps_use_largest_odd_window(h: int, w: int, win: int) -> None:
    assert ssim_window_size(h, w) == win
    a, b = _random_pair(h, w, batch=5, seed=h * 100 + w)
    np.testing.assert_allclose(ssim_uint8(a, b).numpy(), _skimage_ssim(a, b), atol=1e-4, rtol=0)


def test_ssim_accepts_uint8_int_and_float_inputs() -> None:
    a, b = _random_pair(9, 9, batch=3, seed=1)
    ref = ssim_uint8(a, b)
    for dtype in (torch.uint8, torch.int32, torch.float32, torch.float64):
        torch.testing.assert_close(ssim_uint8(a.to(dtype), b.to(dtype)), ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", [1, 2, 5, 7, 10])
def test_ssim_constant_maps_are_finite(size: int) -> None:
    zeros = torch.zeros(2, size, size, dtype=torch.uint8)
    assert torch.equal(ssim_uint8(zeros, zeros), torch.ones(2, dtype=torch.float64))
    full = torch.full((2, size, size), 200, dtype=torch.uint8)
    got = ssim_uint8(zeros, full)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), _skimage_ssim(zeros, full), atol=1e-4, rtol=0)
    mixed = torch.randint(0, 256, (2, size, size), generator=torch.Generator().manual_seed(size)).to(torch.uint8)
    np.testing.assert_allclose(ssim_uint8(full, mixed).numpy(), _skimage_ssim(full, mixed), atol=1e-4, rtol=0)


def test_ssim_hand_worked_population_window_one() -> None:
    # 1x1 window: variances vanish, SSIM = mean over cells of (2xy + C1) / (x^2 + y^2 + C1).
    a = torch.tensor([[[0, 255], [10, 20]]])
    b = torch.tensor([[[0, 0], [10, 30]]])
    c1 = (0.01 * 255) ** 2
    cells = [(0, 0), (255, 0), (10, 10), (20, 30)]
    expected = np.mean([(2 * x * y + c1) / (x * x + y * y + c1) for x, y in cells])
    assert ssim_uint8(a, b).item() == pytest.approx(expected, abs=1e-12)


def test_ssim_maps_converts_to_8bit_levels() -> None:
    g = torch.Generator().manual_seed(3)
    a01, b01 = torch.rand(4, 7, 7, generator=g), torch.rand(4, 7, 7, generator=g)
    torch.testing.assert_close(ssim_maps(a01, b01), ssim_uint8(to_uint8_levels(a01), to_uint8_levels(b01)))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ssim_uint8(torch.zeros(2, 7, 7), torch.zeros(2, 7, 8))
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        spearman(torch.zeros(7, 7), torch.zeros(7, 7))
    with pytest.raises(ValueError, match="fraction"):
        topk_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), fraction=0.0)


def test_empty_batch() -> None:
    empty = torch.zeros(0, 7, 7)
    for fn in (ssim_uint8, ssim_maps, spearman, topk_iou):
        assert fn(empty, empty).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    batch=st.integers(1, 3),
    levels=st.sampled_from([2, 5, 256]),
    seed=st.integers(0, 2**31 - 1),
)
def test_ssim_properties(h: int, w: int, batch: int, levels: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a01 = torch.randint(0, levels, (batch, h, w), generator=g).double() / (levels - 1)
    b01 = torch.rand(batch, h, w, generator=g, dtype=torch.float64)
    assert torch.allclose(ssim_maps(a01, a01), torch.ones(batch, dtype=torch.float64), atol=1e-12, rtol=0)
    ab, ba = ssim_maps(a01, b01), ssim_maps(b01, a01)
    assert torch.isfinite(ab).all() and (ab <= 1 + 1e-12).all() and (ab >= -1 - 1e-12).all()
    torch.testing.assert_close(ab, ba)  # symmetric


def test_average_ranks_match_scipy_rankdata() -> None:
    from scipy.stats import rankdata

    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    expected = np.stack([rankdata(row) for row in values.numpy()])
    np.testing.assert_array_equal(average_ranks(values).numpy(), expected)


@pytest.mark.parametrize("h,w,levels", [(7, 7, 256), (7, 7, 4), (8, 8, 3), (14, 14, 256), (3, 5, 2)])
def test_spearman_matches_scipy(h: int, w: int, levels: int) -> None:
    g = torch.Generator().manual_seed(h * w + levels)
    a = torch.randint(0, levels, (6, h, w), generator=g).double() / (levels - 1)
    b = torch.randint(0, levels, (6, h, w), generator=g).double() / (levels - 1)
    b[0] = a[0]
    b[1] = 1 - a[1]
    got = spearman(a, b).numpy()
    for i in range(6):
        x, y = a[i].flatten().numpy(), b[i].flatten().numpy()
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            assert got[i] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-1.0)


def test_spearman_constant_map_is_zero() -> None:
    const = torch.zeros(2, 7, 7)
    other = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(spearman(const, other), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(spearman(const, const), torch.zeros(2, dtype=torch.float64))


def test_topk_count_rounding() -> None:
    assert topk_count(49, 0.1) == 5  # ceil(4.9)
    assert topk_count(100, 0.07) == 7  # not 8 from 7.000000000000001
    assert topk_count(100, 0.1) == 10
    assert topk_count(4, 0.01) == 1
    assert topk_count(64, 1.0) == 64


def test_topk_iou_hand_worked() -> None:
    # 2x5 maps, fraction 0.3 -> k = 3.
    a = torch.tensor([[[9.0, 8.0, 7.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    b = torch.tensor([[[9.0, 8.0, 0.0, 0.0, 0.0], [7.0, 0.0, 0.0, 0.0, 0.0]]])
    # A = {0, 1, 2}, B = {0, 1, 5}: IoU = 2 / 4.
    assert topk_iou(a, b, fraction=0.3).item() == pytest.approx(0.5)
    assert topk_iou(a, a, fraction=0.3).item() == 1.0


def test_topk_ties_broken_by_lower_index() -> None:
    maps = torch.tensor([[[1.0, 0.5, 1.0], [0.5, 1.0, 0.5]]])
    # fraction 0.34 of 6 cells -> k = 3: the three 1.0 cells at indices 0, 2, 4.
    assert topk_mask(maps, 0.34)[0].nonzero().flatten().tolist() == [0, 2, 4]
    # fraction 0.6 -> k = 4: ties among the 0.5 cells -> lowest index 1.
    assert topk_mask(maps, 0.6)[0].nonzero().flatten().tolist() == [0, 1, 2, 4]
    # A constant map selects its first k cells, so two constant maps agree exactly.
    const = torch.zeros(1, 7, 7)
    assert topk_mask(const, 0.1)[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    assert topk_iou(const, const).item() == 1.0


def test_topk_iou_brute_force() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 6, (20, 7, 7), generator=g).double()
    b = torch.randint(0, 6, (20, 7, 7), generator=g).double()
    got = topk_iou(a, b, fraction=0.2)
    k = 10  # ceil(0.2 * 49)
    for i in range(20):
        def top(m: torch.Tensor) -> set[int]:
            cells = sorted(range(49), key=lambda c: (-m.flatten()[c].item(), c))
            return set(cells[:k])

        sa, sb = top(a[i]), top(b[i])
        assert got[i].item() == pytest.approx(len(sa & sb) / len(sa | sb))


@pytest.mark.parametrize("h, w", [(64, 64), (224, 224), (7, 9), (5, 6), (3, 4), (2, 2), (1, 1)])
def test_ssim_with_moments_is_bit_identical(h: int, w: int) -> None:
    """The split per-map / per-pair SSIM equals ssim_uint8 exactly, shared moments included."""
    g = torch.Generator().manual_seed(h * 1000 + w)
    a = torch.randint(0, 256, (20, h, w), generator=g)
    b = torch.randint(0, 256, (20, h, w), generator=g)
    b[3] = a[3]
    b[4] = 7
    ma, mb = ssim_window_moments(a), ssim_window_moments(b)
    assert torch.equal(ssim_uint8_with_moments(a, b, ma, mb), ssim_uint8(a, b))
    # The shared moments are not modified: a second use gives the same values.
    assert torch.equal(ssim_uint8_with_moments(a, a, ma, ma), ssim_uint8(a, a))
    assert torch.equal(ssim_uint8_with_moments(a, b, ma, mb), ssim_uint8(a, b))


def test_ssim_with_moments_checks_moment_shapes() -> None:
    a = torch.zeros(2, 8, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match="moments"):
        ssim_uint8_with_moments(a, a, ssim_window_moments(a[:1]), ssim_window_moments(a))


def test_ssim_with_moments_same_for_float_held_levels_and_uint8() -> None:
    """Levels held as float64, int64 or uint8 (int32 or float64 sums inside) give the same SSIM."""
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 256, (6, 64, 64), generator=g)
    b = torch.randint(0, 256, (6, 64, 64), generator=g)
    expected = ssim_uint8(a, b)
    for dtype in (torch.float64, torch.uint8, torch.int32):
        x, y = a.to(dtype), b.to(dtype)
        got = ssim_uint8_with_moments(x, y, ssim_window_moments(x), ssim_window_moments(y))
        assert torch.equal(got, expected), dtype
