"""Salience entropy against scikit-image's shannon_entropy and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import shannon_entropy

from salience_audit.measures.entropy import (
    histogram_entropy,
    level_histogram,
    normalized_histogram_entropy,
    spatial_entropy,
)
from salience_audit.salience.normalize import to_uint8_levels


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(2, 64),
    w=st.integers(2, 64),
    batch=st.integers(1, 4),
    kind=st.sampled_from(["uniform", "few_levels", "constant", "with_constant"]),
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_histogram_entropy_equals_skimage(h: int, w: int, batch: int, kind: str, levels: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        maps = torch.rand(batch, h, w, generator=g)
    elif kind == "few_levels":
        maps = torch.randint(0, levels + 1, (batch, h, w), generator=g).float() / max(levels, 1)
    elif kind == "constant":
        maps = torch.full((batch, h, w), float(torch.rand(1, generator=g)))
    else:
        maps = torch.rand(batch, h, w, generator=g)
        maps[0] = 0.0
    got = histogram_entropy(maps)
    assert got.dtype == torch.float64 and got.shape == (batch,)
    q = to_uint8_levels(maps).numpy()
    expected = np.array([shannon_entropy(q[i]) for i in range(batch)])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-9, rtol=0)
    norm = normalized_histogram_entropy(maps)
    assert torch.isfinite(norm).all() and (norm >= -1e-12).all() and (norm <= 1 + 1e-12).all()
    spatial = spatial_entropy(maps)
    assert torch.isfinite(spatial).all() and (spatial >= -1e-12).all() and (spatial <= 1 + 1e-12).all()
    if kind == "constant":
        assert torch.equal(got, torch.zeros(batch, dtype=torch.float64))


def test_hand_worked_histogram_entropy() -> None:
    # 2x2 map with levels {0, 0, 255, 127}: p = (1/2, 1/4, 1/4) -> H = 1.5 bits.
    maps = torch.tensor([[[0.0, 0.0], [1.0, 0.5]]])
    assert histogram_entropy(maps).item() == pytest.approx(1.5, abs=1e-12)
    # Normalised by log2(min(4, 256)) = 2.
    assert normalized_histogram_entropy(maps).item() == pytest.approx(0.75, abs=1e-12)


def test_normalisation_divisor_7x7() -> None:
    # 49 distinct levels: maximal entropy log2(49) -> normalised 1.
    maps = (torch.arange(49, dtype=torch.float64) / 255.0 + 1e-9).view(1, 7, 7)
    assert len(torch.unique(to_uint8_levels(maps))) == 49
    assert histogram_entropy(maps).item() == pytest.approx(math.log2(49), abs=1e-12)
    assert normalized_histogram_entropy(maps).item() == pytest.approx(1.0, abs=1e-12)


def test_normalisation_divisor_large_map_is_8_bits() -> None:
    maps = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalized_histogram_entropy(maps), histogram_entropy(maps) / 8.0)


def test_level_histogram_counts_every_cell() -> None:
    maps = torch.rand(3, 5, 6, generator=torch.Generator().manual_seed(1))
    counts = level_histogram(maps)
    assert counts.shape == (3, 256)
    assert torch.equal(counts.sum(dim=1), torch.full((3,), 30))
    q = to_uint8_levels(maps)
    for i in range(3):
        assert torch.equal(counts[i], torch.bincount(q[i].flatten(), minlength=256))


def test_spatial_entropy_hand_worked() -> None:
    uniform = torch.ones(1, 4, 4)
    assert spatial_entropy(uniform).item() == pytest.approx(1.0, abs=1e-12)
    peak = torch.zeros(1, 4, 4)
    peak[0, 1, 2] = 0.7
    assert spatial_entropy(peak).item() == 0.0
    # Two equal cells of 16: 1 bit / log2(16) = 0.25.
    two = torch.zeros(1, 4, 4)
    two[0, 0, 0] = two[0, 3, 3] = 1.0
    assert spatial_entropy(two).item() == pytest.approx(0.25, abs=1e-12)
    # P = (1/2, 1/4, 1/4): 1.5 bits / log2(4).
    three = torch.tensor([[[1.0, 0.5], [0.5, 0.0]]])
    assert spatial_entropy(three).item() == pytest.approx(0.75, abs=1e-12)


def test_all_zero_and_single_cell_maps_give_zero() -> None:
    zeros = torch.zeros(2, 7, 7)
    for fn in (histogram_entropy, normalized_histogram_entropy, spatial_entropy):
        assert torch.equal(fn(zeros), torch.zeros(2, dtype=torch.float64))
        assert torch.equal(fn(torch.rand(3, 1, 1)), torch.zeros(3, dtype=torch.float64))


def test_shape_error() -> None:
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        histogram_entropy(torch.zeros(7, 7))
