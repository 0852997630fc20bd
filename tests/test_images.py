"""Image and map decoding: mode conversions against numpy, resizing, file errors, the Dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salience_audit.data.images import ImageDataset, decode_image, load_image, load_map
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError

RNG = np.random.default_rng(0)


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_grayscale(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    t = load_image(_save(Image.fromarray(gray), tmp_path / "g.png"), size=6)
    assert t.shape == (3, 6, 6) and t.dtype == torch.float32
    same = load_image(_save(Image.fromarray(gray[:5]), tmp_path / "sq.png"), size=5)
    expected = np.repeat((gray[:5] / 255.0)[..., None], 3, axis=2)
    torch.testing.assert_close(same, _chw(expected))


def test_rgb_kept(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    t = load_image(_save(Image.fromarray(rgb), tmp_path / "c.png"), size=4)
    torch.testing.assert_close(t, _chw(rgb / 255.0))


def test_palette(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, (4, 4), dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.flatten().tolist())
    t = load_image(_save(image, tmp_path / "p.png"), size=4)
    torch.testing.assert_close(t, _chw(palette[indices] / 255.0))


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = np.array([[200, 100, 50], [10, 20, 30]] + [[0, 0, 0]] * 254, dtype=np.uint8)
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.flatten().tolist())
    t = load_image(_save(image, tmp_path / "pt.png", transparency=0), size=2)
    expected = palette[indices] / 255.0 * (indices != 0)[..., None]  # index 0 is transparent -> black
    torch.testing.assert_close(t, _chw(expected))


def test_rgba_composited_over_black(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0
    rgba[0, 1, 3] = 255
    t = load_image(_save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "a.png"), size=4)
    expected = rgba[..., :3] / 255.0 * (rgba[..., 3:] / 255.0)
    torch.testing.assert_close(t, _chw(expected))
    assert t[:, 0, 0].abs().max() == 0


def test_gray_alpha(tmp_path: Path) -> None:
    la = RNG.integers(0, 256, (3, 3, 2), dtype=np.uint8)
    t = load_image(_save(Image.fromarray(la, mode="LA"), tmp_path / "la.png"), size=3)
    gray = la[..., 0] / 255.0 * la[..., 1] / 255.0
    torch.testing.assert_close(t, _chw(np.repeat(gray[..., None], 3, axis=2)))


def test_16_bit_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "16.png")
    assert Image.open(path).mode.startswith("I")
    t = load_image(path, size=2)
    expected = np.repeat((values / 65535.0)[..., None], 3, axis=2)
    torch.testing.assert_close(t, _chw(expected))
    assert 0.6 < t[0, 1, 0] < 0.62  # 40000 / 65535, not clipped to 1 as an 8-bit conversion would
    torch.testing.assert_close(load_map(path, 2), torch.from_numpy(values / 65535.0).float())


def test_32_bit_integer_and_float_modes() -> None:
    as_int = Image.fromarray(np.array([[0, 32768], [65535, 70000]], dtype=np.int32))
    assert as_int.mode == "I"
    np.testing.assert_allclose(decode_image(as_int)[..., 0], [[0, 32768 / 65535], [1, 1]], rtol=1e-6)
    as_float = Image.fromarray(np.array([[0.0, 0.25], [0.75, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(decode_image(as_float)[..., 1], [[0, 0.25], [0.75, 1]])
    # Float pixels outside [0, 1] are refused, not clipped (clipping would audit another image).
    outside = Image.fromarray(np.array([[-0.5, 0.25], [0.75, 2.0]], dtype=np.float32))
    with pytest.raises(InputError, match=r"values in \[-0.5, 2\], outside \[0, 1\]"):
        decode_image(outside)


def test_bilevel(tmp_path: Path) -> None:
    bits = np.array([[True, False], [False, True]])
    t = load_image(_save(Image.fromarray(bits), tmp_path / "b.png"), size=2)
    torch.testing.assert_close(t[0], torch.from_numpy(bits.astype(np.float32)))


def test_resize_to_square(tmp_path: Path) -> None:
    flat = np.full((10, 30, 3), 77, dtype=np.uint8)
    t = load_image(_save(Image.fromarray(flat), tmp_path / "wide.png"), size=8)
    assert t.shape == (3, 8, 8)
    torch.testing.assert_close(t, torch.full((3, 8, 8), 77 / 255.0))
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    small = load_image(_save(Image.fromarray(ramp), tmp_path / "ramp.png"), size=16)
    assert 0.0 <= small.min() and small.max() <= 1.0
    assert torch.all(small[0, :, 1:] >= small[0, :, :-1])  # still a left-to-right ramp


def test_load_map(tmp_path: Path) -> None:
    values = RNG.integers(0, 256, (5, 5), dtype=np.uint8)
    m = load_map(_save(Image.fromarray(values), tmp_path / "m.png"), size=5)
    assert m.shape == (5, 5)
    torch.testing.assert_close(m, torch.from_numpy(values / 255.0).float())
    rgb = np.stack([values] * 3, axis=-1)
    torch.testing.assert_close(load_map(_save(Image.fromarray(rgb), tmp_path / "rgb.png"), 5), m)
    assert load_map(tmp_path / "m.png", size=3).shape == (3, 3)


# ----------------------------------------------------------------------------- bad files


def _expect_error(path: Path, fragment: str) -> None:
    for loader in (load_image, load_map):
        with pytest.raises(InputError) as err:
            loader(path, 4)
        assert err.value.path == str(path)
        assert str(err.value).startswith(f"{path}: ")
        assert fragment in err.value.problem


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.png", "not found")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _expect_error(path, "empty")


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "text.png"
    path.write_text("split,label,path\n")
    _expect_error(path, "not an image")


def test_directory(tmp_path: Path) -> None:
    _expect_error(tmp_path, "not a file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full, format=fmt)
    data = full.read_bytes()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "truncated")


def test_corrupt_body(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    Image.fromarray(RNG.integers(0, 256, (32, 32), dtype=np.uint8)).save(full)
    data = bytearray(full.read_bytes())
    data[60:200] = bytes(140)  # clobber the compressed pixel data (and its CRC)
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_image(path, 4)
    assert err.value.path == str(path)


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.fromarray(np.zeros((40, 40), dtype=np.uint8)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: PIL warns (> limit)
    _expect_error(path, "decompression-bomb limit")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # > 2x limit: PIL raises
    _expect_error(path, "decompression-bomb limit")


# ----------------------------------------------------------------------------- dataset


def test_image_dataset(tmp_path: Path) -> None:
    img = _save(Image.fromarray(RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8)), tmp_path / "i.png")
    hmap = _save(Image.fromarray(np.full((12, 12), 255, dtype=np.uint8)), tmp_path / "h.png")
    samples = [
        Sample(path=str(img), label=1, human_map=str(hmap)),
        Sample(path=str(img), label=0),
    ]
    ds = ImageDataset(samples, size=8, map_size=4)
    assert len(ds) == 2
    first, second = ds[0], ds[1]
    assert first["image"].shape == (3, 8, 8)
    assert first["label"].dtype == torch.int64 and int(first["label"]) == 1
    assert first["index"] == 0 and second["index"] == 1
    assert first["has_human_map"] is True and second["has_human_map"] is False
    torch.testing.assert_close(first["human_map"], torch.ones(4, 4))
    torch.testing.assert_close(second["human_map"], torch.zeros(4, 4))
    assert ImageDataset(samples, size=8)[0]["human_map"].shape == (8, 8)

    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[0]["image"], first["image"])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 8, 8)
    assert batch["has_human_map"].tolist() == [True, False]
    assert batch["label"].tolist() == [1, 0]
