"""Salience-guided degradation (measure (e)) and deletion / insertion curves.

The guided blur is checked against a slow reference written here with scipy: for every
distinct level of an image, blur the whole image per channel and pick that level's pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from salience_audit.measures.deletion import deletion_insertion_curves
from salience_audit.perturb.blur import blur_levels, gaussian_blur, guided_blur, level_to_sigma
from salience_audit.salience.normalize import upscale

SIZE = 224

# ---------------------------------------------------------------------------------------
# fixtures: real images and realistic maps
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    """astronaut (resized to 224) and two LFW faces (25 px, upsampled), [3, 3, 224, 224]."""
    from skimage import data, transform

    astronaut = transform.resize(data.astronaut(), (SIZE, SIZE), anti_aliasing=True)
    faces = [
        np.repeat(transform.resize(face, (SIZE, SIZE), order=3).clip(0, 1)[..., None], 3, axis=2)
        for face in data.lfw_subset()[[0, 7]]
    ]
    stack = np.stack([astronaut, *faces]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stack)).float()


@pytest.fixture(scope="module")
def blob_maps() -> torch.Tensor:
    """Smooth 7x7 CAM-like maps (one or two bumps) bicubically upscaled to 224, [3, 224, 224]."""
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")

    def bump(cy: float, cx: float, width: float) -> torch.Tensor:
        return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / width)

    small = torch.stack(
        [bump(3.0, 3.2, 3.0), bump(2.0, 2.5, 2.0) + 0.6 * bump(5.0, 5.0, 1.5), bump(4.5, 1.5, 6.0)]
    )
    lo = small.amin(dim=(1, 2), keepdim=True)
    hi = small.amax(dim=(1, 2), keepdim=True)
    small = (small - lo) / (hi - lo)
    return upscale(small, SIZE)


def _reference_levels(m: np.ndarray) -> np.ndarray:
    smooth = gaussian_filter(m.astype(np.float64), sigma=5.0, mode="reflect", truncate=4.0)
    if smooth.max() <= 0:
        return np.zeros_like(smooth)
    return np.round(10.0 * smooth / smooth.max(), 1)


def _reference_guided_blur(image: np.ndarray, m: np.ndarray, mode: str) -> np.ndarray:
    """Slow reference on one image [C, H, W] (float64) and one map [H, W]."""
    levels = _reference_levels(m)
    if mode == "object":
        levels = np.round(10.0 - levels, 1)
    out = np.empty_like(image)
    for level in np.unique(levels):
        sigma = (10.0 - level) ** 4 / 1000.0
        blurred = gaussian_filter(image, sigma=(0.0, sigma, sigma), mode="reflect", truncate=4.0)
        pick = levels == level
        out[:, pick] = blurred[:, pick]
    return out


# ---------------------------------------------------------------------------------------
# Gaussian filter and levels
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "sigma"),
    [
        ((2, 3, 40, 31), 2.0),
        ((1, 224, 224), 5.0),
        ((2, 10, 7), 10.0),  # kernel radius 40 > image size: repeated reflections
        ((1, 9, 12), 0.3),
        ((1, 6, 6), 0.1),  # radius 0: identity
        ((3, 1, 5), 1.0),
    ],
)
def test_gaussian_blur_equals_scipy(shape: tuple[int, ...], sigma: float) -> None:
    x = np.random.default_rng(0).random(shape)
    ref = gaussian_filter(x, sigma=(0,) * (len(shape) - 2) + (sigma, sigma), mode="reflect", truncate=4.0)
    got = gaussian_blur(torch.from_numpy(x), sigma)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12, rtol=0)
    got32 = gaussian_blur(torch.from_numpy(x).float(), sigma)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, atol=1e-5, rtol=0)


def test_gaussian_blur_sigma_zero_and_validation() -> None:
    x = torch.rand(2, 5, 5)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match="2 dims"):
        gaussian_blur(torch.rand(5), 1.0)


def test_level_to_sigma() -> None:
    assert level_to_sigma(0.0) == pytest.approx(10.0)
    assert level_to_sigma(10.0) == 0.0
    assert level_to_sigma(5.0) == pytest.approx(0.625)
    torch.testing.assert_close(level_to_sigma(torch.tensor([0.0, 9.0])), torch.tensor([10.0, 0.001]))


def test_blur_levels_equal_scipy(blob_maps: torch.Tensor) -> None:
    ref = np.stack([_reference_levels(m) for m in blob_maps.double().numpy()])
    got64 = blur_levels(blob_maps.double()).numpy()
    np.testing.assert_array_equal(got64, ref)
    got32 = blur_levels(blob_maps).numpy()
    diff = np.abs(got32 - ref)
    assert diff.max() <= 0.1 + 1e-6 and (diff > 1e-6).mean() < 1e-3  # rounding ties only
    assert set(np.unique(np.round(got64 * 10))) <= set(range(101))
    assert np.allclose(got64.reshape(len(got64), -1).max(axis=1), 10.0)


def test_blur_levels_of_zero_and_constant_maps() -> None:
    maps = torch.stack([torch.zeros(16, 16), torch.full((16, 16), 0.3)])
    levels = blur_levels(maps)
    assert torch.equal(levels[0], torch.zeros(16, 16))
    torch.testing.assert_close(levels[1], torch.full((16, 16), 10.0))


# ---------------------------------------------------------------------------------------
# guided blur
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["background", "object"])
def test_guided_blur_matches_slow_reference(
    real_images: torch.Tensor, blob_maps: torch.Tensor, mode: str
) -> None:
    got = guided_blur(real_images, blob_maps, mode=mode)
    assert got.shape == real_images.shape and got.dtype == torch.float32
    for i in range(len(real_images)):
        ref = _reference_guided_blur(real_images[i].double().numpy(), blob_maps[i].double().numpy(), mode)
        mad = np.abs(got[i].double().numpy() - ref).mean()
        assert mad < 1.0 / 255.0, (i, mad * 255)
        # and the degradation is real: far from the clean image
        assert np.abs(ref - real_images[i].numpy()).mean() > 5 * mad


def test_guided_blur_extremes_are_exact(real_images: torch.Tensor) -> None:
    x = real_images[:2].double()
    zero = torch.zeros(2, SIZE, SIZE, dtype=torch.float64)
    ones = torch.ones(2, SIZE, SIZE, dtype=torch.float64)
    strongest = gaussian_blur(x, 10.0)
    # no salience: background is blurred with sigma 10 everywhere, object is untouched
    assert torch.equal(guided_blur(x, zero, "object"), x)
    assert (guided_blur(x, zero, "background") - strongest).abs().max() < 1e-3
    # salience everywhere (constant map -> level 10): the reverse
    assert torch.equal(guided_blur(x, ones, "background"), x)
    assert (guided_blur(x, ones, "object") - strongest).abs().max() < 1e-3


def test_guided_blur_is_per_image(real_images: torch.Tensor, blob_maps: torch.Tensor) -> None:
    both = guided_blur(real_images[:2], blob_maps[:2])
    one = guided_blur(real_images[1:2], blob_maps[1:2])
    torch.testing.assert_close(both[1:2], one, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(20, 33), (5, 3), (1, 1), (2, 64)])
def test_guided_blur_small_and_non_square_images(size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64)
    m = upscale(torch.rand(2, 4, 4, generator=g), size).double()
    for mode in ("background", "object"):
        got = guided_blur(x, m, mode)
        assert torch.isfinite(got).all()
        for i in range(2):
            ref = _reference_guided_blur(x[i].numpy(), m[i].numpy(), mode)
            assert np.abs(got[i].numpy() - ref).mean() < 1.0 / 255.0, (size, mode, i)


def test_guided_blur_validation(real_images: torch.Tensor, blob_maps: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="mode"):
        guided_blur(real_images, blob_maps, mode="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upscale"):
        guided_blur(real_images, torch.rand(3, 7, 7))
    with pytest.raises(ValueError, match="B, C, H, W"):
        guided_blur(real_images[0], blob_maps)


# ---------------------------------------------------------------------------------------
# deletion / insertion
# ---------------------------------------------------------------------------------------

N = 32  # image side for the curve tests
REGION = (slice(8, 24), slice(8, 24))  # 16 x 16 = a quarter of the pixels


def _region_brightness(images: torch.Tensor) -> torch.Tensor:
    return images[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))


def _curve_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.8 * torch.rand(3, 3, N, N, generator=g)
    maps = torch.zeros(3, N, N)
    maps[:, REGION[0], REGION[1]] = 1.0  # the map points exactly at the region the score reads
    maps += 0.01 * torch.rand(3, N, N, generator=g)
    return x, maps


def test_deletion_insertion_monotone_with_region_score() -> None:
    x, maps = _curve_inputs()
    out = deletion_insertion_curves(_region_brightness, x, maps, steps=8, baseline="zero")
    deletion, insertion = out["deletion"], out["insertion"]
    assert deletion.shape == insertion.shape == (3, 9)
    torch.testing.assert_close(out["fractions"], torch.linspace(0, 1, 9, dtype=torch.float64))
    clean = _region_brightness(x).double()
    torch.testing.assert_close(deletion[:, 0], clean)
    torch.testing.assert_close(insertion[:, -1], clean)
    assert torch.all(deletion[:, 1:] <= deletion[:, :-1] + 1e-12)
    assert torch.all(insertion[:, 1:] >= insertion[:, :-1] - 1e-12)
    # the region is a quarter of the image and ranked first: gone at f = 0.25, restored likewise
    assert torch.all(deletion[:, 2:] == 0) and torch.all(insertion[:, :1] == 0)
    torch.testing.assert_close(insertion[:, 2], clean)
    for key in ("deletion_auc", "insertion_auc"):
        assert out[key].shape == (3,) and bool(((out[key] >= 0) & (out[key] <= 1)).all())
    torch.testing.assert_close(out["deletion_auc"], torch.trapezoid(deletion, out["fractions"], dim=-1))


def test_random_control_differs_and_is_reproducible() -> None:
    x, maps = _curve_inputs()
    ranked = deletion_insertion_curves(_region_brightness, x, maps, steps=8, baseline="zero")
    def control(seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return deletion_insertion_curves(
            _region_brightness, x, maps, steps=8, baseline="zero", random_order=True, generator=generator
        )

    rand_a, rand_b = control(1), control(1)
    torch.testing.assert_close(rand_a["deletion"], rand_b["deletion"])
    # same start and end points (the areas removed are the same), different paths
    torch.testing.assert_close(rand_a["deletion"][:, [0, -1]], ranked["deletion"][:, [0, -1]])
    assert torch.all(rand_a["deletion_auc"] > ranked["deletion_auc"] + 0.1)
    assert torch.all(rand_a["insertion_auc"] < ranked["insertion_auc"] - 0.1)
    # a random region removes the region's brightness roughly in proportion to its area
    assert torch.all(rand_a["deletion"][:, 1:] <= rand_a["deletion"][:, :-1] + 1e-12)
    torch.testing.assert_close(rand_a["deletion_auc"], 0.5 * ranked["deletion"][:, 0], atol=0.05, rtol=0)


def test_ties_are_broken_by_index() -> None:
    x = torch.ones(1, 1, 4, 4)
    flat_constant = torch.zeros(1, 4, 4)

    def top_half(images: torch.Tensor) -> torch.Tensor:
        return images[:, :, :2].mean(dim=(1, 2, 3))

    out = deletion_insertion_curves(top_half, x, flat_constant, steps=2, baseline="zero")
    # a constant map ranks pixels in raster order: f = 0.5 deletes exactly the two top rows
    torch.testing.assert_close(out["deletion"][0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_blur_baseline_and_batched_calls() -> None:
    x, maps = _curve_inputs()
    calls: list[int] = []

    def score(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return _region_brightness(images)

    out = deletion_insertion_curves(score, x, maps, steps=5, baseline="blur")
    assert calls == [6] * 6  # one call per fraction, deletion and insertion together
    blurred = _region_brightness(gaussian_blur(x, 10.0)).double()
    torch.testing.assert_close(out["deletion"][:, -1], blurred)
    torch.testing.assert_close(out["insertion"][:, 0], blurred)


def test_curves_validation() -> None:
    x, maps = _curve_inputs()
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion_curves(_region_brightness, x, maps, baseline="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion_curves(_region_brightness, x, maps, steps=0)
    with pytest.raises(ValueError, match="maps_up"):
        deletion_insertion_curves(_region_brightness, x, maps[:, :8, :8])
    with pytest.raises(ValueError, match="one score per image"):
        deletion_insertion_curves(lambda im: im.mean(dim=(2, 3)), x, maps)


def test_audit_areas_share_the_order_free_passes_and_equal_two_separate_curves() -> None:
    """The audit's salience-order + random-order areas (`_areas`) equal two independent calls of the
    public curves bit for bit, while scoring the f = 0 and f = 1 batches once for both orders."""
    from salience_audit.measures.deletion import (
        DELETION_AUC,
        DELETION_AUC_RANDOM,
        INSERTION_AUC,
        INSERTION_AUC_RANDOM,
        _areas,
    )
    from salience_audit.models.scores import class_probability

    torch.manual_seed(0)
    x, maps = _curve_inputs()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    target = torch.tensor([0, 1, 1])[: x.shape[0]]
    seen: list[torch.Tensor] = []

    def forward(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return net(images)

    steps = 4
    areas = _areas(forward, x, maps, target, steps, torch.Generator().manual_seed(5))
    assert len(seen) == 2 * (steps + 1) - 2
    assert len({tuple(im.flatten()[:: 97].tolist()) for im in seen}) == len(seen)  # no batch scored twice

    def score(images: torch.Tensor) -> torch.Tensor:
        return class_probability(net(images), target.repeat(images.shape[0] // target.shape[0]))

    ordered = deletion_insertion_curves(score, x, maps, steps=steps)
    control = deletion_insertion_curves(score, x, maps, steps=steps, random_order=True,
                                        generator=torch.Generator().manual_seed(5))
    assert torch.equal(areas[DELETION_AUC], ordered[DELETION_AUC])
    assert torch.equal(areas[INSERTION_AUC], ordered[INSERTION_AUC])
    assert torch.equal(areas[DELETION_AUC_RANDOM], control[DELETION_AUC])
    assert torch.equal(areas[INSERTION_AUC_RANDOM], control[INSERTION_AUC])
    assert not torch.equal(ordered[DELETION_AUC], control[DELETION_AUC])  # the two orders do differ
