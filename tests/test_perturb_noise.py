"""Salt-and-pepper noise (measure (b)): statistics, edge amounts, reproducibility, validation."""

from __future__ import annotations

import math

import pytest
import torch

from salience_audit.perturb.noise import NOISE_LEVELS, salt_and_pepper

SHAPE = (4, 3, 64, 64)


def _image(seed: int = 0) -> torch.Tensor:
    # values strictly inside (0, 1), so a replaced element is exactly the ones that became 0 or 1
    g = torch.Generator().manual_seed(seed)
    return 0.05 + 0.9 * torch.rand(SHAPE, generator=g)


def _within_binomial(count: int, n: int, p: float, k_sd: float = 5.0) -> bool:
    """count is within n p +- k_sd sqrt(n p (1 - p)) (exact when the variance is 0)."""
    sd = math.sqrt(n * p * (1.0 - p))
    return abs(count - n * p) <= k_sd * sd + 1e-9


def test_levels_are_the_published_ones() -> None:
    assert NOISE_LEVELS == (0.0, 0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 1.0)


@pytest.mark.parametrize("amount", NOISE_LEVELS)
def test_replaced_fraction_and_balance_follow_the_binomial(amount: float) -> None:
    x = _image()
    y = salt_and_pepper(x, amount, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    salt = y == 1.0
    pepper = y == 0.0
    replaced = salt | pepper
    kept = ~replaced
    assert torch.equal(y[kept], x[kept]), "elements that are not replaced must keep their value"
    n = x.numel()
    m = int(replaced.sum())
    assert _within_binomial(m, n, amount), (m, n * amount)
    if m:
        assert _within_binomial(int(salt.sum()), m, 0.5)


def test_channels_are_corrupted_independently() -> None:
    a = 0.5
    y = salt_and_pepper(_image(), a, generator=torch.Generator().manual_seed(2))
    replaced = (y == 0) | (y == 1)
    all_channels = replaced.all(dim=1)  # [B, H, W]
    n = all_channels.numel()
    # per-pixel replacement (all channels together) would give a, independence gives a^3
    assert _within_binomial(int(all_channels.sum()), n, a**3)
    # and the three channels of a fully replaced pixel are not all the same value in general
    same_value = (y[:, :1] == y).all(dim=1) & all_channels
    assert _within_binomial(int(same_value.sum()), int(all_channels.sum()), 0.25)


def test_amount_zero_is_identity() -> None:
    x = _image()
    y = salt_and_pepper(x, 0.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y, x)
    assert y is not x


def test_amount_one_replaces_everything() -> None:
    x = _image()
    y = salt_and_pepper(x, 1.0, generator=torch.Generator().manual_seed(4))
    assert bool(((y == 0) | (y == 1)).all())
    assert _within_binomial(int((y == 1).sum()), y.numel(), 0.5)


def test_generator_makes_it_reproducible() -> None:
    x = _image()
    a = salt_and_pepper(x, 0.25, generator=torch.Generator().manual_seed(7))
    b = salt_and_pepper(x, 0.25, generator=torch.Generator().manual_seed(7))
    c = salt_and_pepper(x, 0.25, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_input_is_not_modified_and_dtype_kept() -> None:
    x = _image().double()
    before = x.clone()
    y = salt_and_pepper(x, 0.5)
    assert torch.equal(x, before)
    assert y.dtype == torch.float64


@pytest.mark.parametrize("amount", [-0.01, 1.01, float("nan"), float("inf"), "a lot"])
def test_invalid_amount_raises(amount: object) -> None:
    with pytest.raises(ValueError, match="amount"):
        salt_and_pepper(_image(), amount)  # type: ignore[arg-type]


def test_integer_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        salt_and_pepper(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 0.1)


def test_statistics_match_scikit_image() -> None:
    """Same replaced fraction and balance as skimage.util.random_noise(mode="s&p")."""
    import numpy as np
    from skimage.util import random_noise

    x = _image()
    a = 0.1
    ours = salt_and_pepper(x, a, generator=torch.Generator().manual_seed(5)).numpy()
    ref = random_noise(x.numpy(), mode="s&p", amount=a, salt_vs_pepper=0.5, rng=0)
    for y in (ours, ref):
        replaced = (y == 0) | (y == 1)
        assert _within_binomial(int(replaced.sum()), y.size, a)
        assert _within_binomial(int((y == 1).sum()), int(replaced.sum()), 0.5)
        assert np.array_equal(y[~replaced], x.numpy()[~replaced])
