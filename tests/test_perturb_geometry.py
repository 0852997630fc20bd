"""The 13 geometric variants (measure (c)) against straightforward numpy implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from salience_audit.perturb.geometry import (
    GeometricVariant,
    geometric_variants,
    shift_pixels,
)
from salience_audit.salience.normalize import upscale

EXPECTED_NAMES_224 = [
    "identity",
    "flip_lr",
    "flip_tb",
    "shift(-16,-16)",
    "shift(-16,0)",
    "shift(-16,+16)",
    "shift(0,-16)",
    "shift(0,+16)",
    "shift(+16,-16)",
    "shift(+16,0)",
    "shift(+16,+16)",
    "rot90_cw",
    "rot90_ccw",
]


def _numpy_variant(img: np.ndarray, variant: GeometricVariant) -> np.ndarray:
    """Reference on one 2-D array, written independently of the torch code."""
    if variant.name == "identity":
        return img
    if variant.name == "flip_lr":
        return np.fliplr(img)
    if variant.name == "flip_tb":
        return np.flipud(img)
    if variant.name == "rot90_cw":
        return np.rot90(img, k=-1)
    if variant.name == "rot90_ccw":
        return np.rot90(img, k=1)
    dx, dy = variant.params["dx"], variant.params["dy"]
    h, w = img.shape
    p = max(abs(dx), abs(dy))
    padded = np.pad(img, p, mode="edge")
    # content moves right by dx and down by dy: out[i, j] = img[i - dy, j - dx]
    return padded[p - dy : p - dy + h, p - dx : p - dx + w]


def _apply_numpy(t: np.ndarray, variant: GeometricVariant) -> np.ndarray:
    lead = t.shape[:-2]
    flat = t.reshape(-1, *t.shape[-2:])
    out = np.stack([_numpy_variant(a, variant) for a in flat])
    return out.reshape(*lead, *out.shape[-2:])


@pytest.mark.parametrize(("size", "t"), [(64, 5), (224, 16), (299, 21), (7, 1), (1, 1)])
def test_shift_scales_with_input_size(size: int, t: int) -> None:
    assert shift_pixels(size) == t


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_input_size(size: object) -> None:
    with pytest.raises(ValueError):
        geometric_variants(size)  # type: ignore[arg-type]


def test_names_and_order() -> None:
    variants = geometric_variants(224)
    assert [v.name for v in variants] == EXPECTED_NAMES_224
    assert len({v.name for v in variants}) == 13
    shifts = {(v.params["dx"], v.params["dy"]) for v in variants if v.kind == "shift"}
    assert shifts == {(dx, dy) for dx in (-16, 0, 16) for dy in (-16, 0, 16)} - {(0, 0)}


@pytest.mark.parametrize("size", [64, 224])
def test_variants_equal_numpy_on_images_and_maps(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    images = torch.rand(2, 3, size, size, generator=g)
    maps = torch.rand(2, size, size, generator=g)
    for variant in geometric_variants(size):
        for t in (images, maps):
            got = variant.apply(t)
            assert got.shape == t.shape
            np.testing.assert_array_equal(got.numpy(), _apply_numpy(t.numpy(), variant), err_msg=variant.name)


def test_direction_conventions() -> None:
    """A single bright pixel moves where the names say."""
    x = torch.zeros(1, 9, 9)
    x[0, 2, 3] = 1.0  # row 2, column 3
    by_name = {v.name: v for v in geometric_variants(9)}
    right_down = GeometricVariant("shift(+2,+1)", "shift", {"dx": 2, "dy": 1})
    assert right_down.apply(x)[0, 3, 5] == 1.0
    assert by_name["flip_lr"].apply(x)[0, 2, 5] == 1.0
    assert by_name["flip_tb"].apply(x)[0, 6, 3] == 1.0
    # clockwise: the top-left corner goes to the top-right corner
    corner = torch.zeros(1, 9, 9)
    corner[0, 0, 0] = 1.0
    assert by_name["rot90_cw"].apply(corner)[0, 0, 8] == 1.0
    assert by_name["rot90_ccw"].apply(corner)[0, 8, 0] == 1.0


def test_shift_border_replicates_edges() -> None:
    x = torch.arange(25, dtype=torch.float32).view(1, 5, 5)
    v = GeometricVariant("shift(+2,0)", "shift", {"dx": 2, "dy": 0})
    out = v.apply(x)
    # the two leftmost columns repeat the original first column
    assert torch.equal(out[0, :, 0], x[0, :, 0]) and torch.equal(out[0, :, 1], x[0, :, 0])
    assert torch.equal(out[0, :, 2:], x[0, :, :3])


def test_shift_larger_than_image_is_constant_edge() -> None:
    x = torch.rand(2, 3, 4, 4)
    v = GeometricVariant("shift(+10,+10)", "shift", {"dx": 10, "dy": 10})
    out = v.apply(x)
    assert torch.equal(out, x[..., :1, :1].expand_as(x))


def test_equivariant_map_gives_identical_pair() -> None:
    """S(x) = channel mean (no re-normalisation) commutes with every T: U(S(Tx)) == T(U(S(x)))."""
    from skimage import data, transform

    size = 224
    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().unsqueeze(0)

    def salience(images: torch.Tensor) -> torch.Tensor:
        return upscale(images.mean(dim=1), size)

    clean = salience(x)
    for variant in geometric_variants(size):
        a, b = salience(variant.apply(x)), variant.apply(clean)
        assert torch.equal(a, b), variant.name
        ssim = structural_similarity(a[0].numpy(), b[0].numpy(), data_range=1.0)
        assert ssim == pytest.approx(1.0), variant.name


def test_pooled_upscaled_map_is_equivariant_under_flips_and_rotations() -> None:
    """With a real U (7x7 native map, bicubic upscale), flips and rotations still commute."""
    size = 224
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))

    def salience(images: torch.Tensor) -> torch.Tensor:
        return upscale(torch.nn.functional.avg_pool2d(images.mean(dim=1, keepdim=True), 32)[:, 0], size)

    clean = salience(x)
    for variant in geometric_variants(size):
        if variant.kind in ("identity", "flip", "rot90"):
            a, b = salience(variant.apply(x)), variant.apply(clean)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=variant.name)


def test_non_equivariant_map_differs() -> None:
    """A map that ignores the image (fixed centre blob) is not equivariant under a shift."""
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((yy - 20.0) ** 2 + (xx - 40.0) ** 2) / 50.0).unsqueeze(0)
    shift = geometric_variants(size)[3]
    a, b = blob, shift.apply(blob)
    assert not torch.equal(a, b)


def test_variants_are_frozen_and_hashable() -> None:
    v = geometric_variants(224)[0]
    with pytest.raises(AttributeError):
        v.name = "other"  # type: ignore[misc]
    assert len(set(geometric_variants(224))) == 13


def test_works_on_other_leading_dims_and_keeps_dtype() -> None:
    x = torch.rand(2, 5, 3, 6, 6, dtype=torch.float64)
    for variant in geometric_variants(84):
        out = variant.apply(x)
        assert out.dtype == torch.float64
        np.testing.assert_array_equal(out.numpy(), _apply_numpy(x.numpy(), variant))


@pytest.mark.parametrize("size", [5, 64, 224])
def test_apply_all_equals_each_variant(size: int) -> None:
    """The pad-once shifts of apply_all equal the clamped gather of apply, images and int maps alike."""
    from salience_audit.perturb.geometry import apply_all

    g = torch.Generator().manual_seed(size)
    images = torch.rand(2, 3, size, size, generator=g)
    levels = torch.randint(0, 256, (3, size, size), generator=g)
    variants = geometric_variants(size)
    for t in (images, levels):
        for variant, got in zip(variants, apply_all(variants, t)):
            assert got.dtype == t.dtype
            assert torch.equal(got, variant.apply(t)), variant.name


def test_window_means_commute_with_flips_and_quarter_turns_only() -> None:
    """T(window means of m) == window means of T(m) exactly for flips / rot90, not for shifts."""
    from salience_audit.measures.similarity import ssim_window_moments

    m = torch.randint(0, 256, (4, 64, 64), generator=torch.Generator().manual_seed(1))
    moments = ssim_window_moments(m)
    for variant in geometric_variants(64):
        direct = ssim_window_moments(variant.apply(m))
        if variant.commutes_with_window_means():
            assert torch.equal(variant.apply(moments), direct), variant.name
        else:
            assert not torch.equal(variant.apply(moments), direct), variant.name


@pytest.mark.parametrize("h, w, size", [(7, 7, 224), (8, 8, 64), (8, 5, 64), (3, 3, 10)])
def test_upscale_matches_torch_bicubic(h: int, w: int, size: int) -> None:
    """The matrix form of the bicubic resize equals F.interpolate(bicubic) up to float rounding."""
    maps = torch.rand(6, h, w, generator=torch.Generator().manual_seed(h * w))
    expected = torch.nn.functional.interpolate(
        maps[:, None], size=(size, size), mode="bicubic", align_corners=False
    )[:, 0].clamp(0, 1)
    got = upscale(maps, size)
    assert got.shape == (6, size, size)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
