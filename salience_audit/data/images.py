"""Decode images and human maps into float tensors, and a Dataset over samples.

Conventions (see docs/architecture.md): images are ``[3, size, size]`` float
tensors in [0, 1] (RGB, before any mean/std normalisation); maps are
``[size, size]`` float tensors in [0, 1].

Decoding rules:

- 8-bit data is divided by 255, 16-bit data (PIL modes ``I;16*`` and ``I``,
  e.g. 16-bit PNGs) by 65535 - the full 16-bit precision is kept, nothing is
  clipped at 255. 32-bit float images (mode ``F``, e.g. float TIFFs) must
  already lie in [0, 1]: values outside it, NaN or infinity are refused with a
  message naming the file (the image is blamed, never the model that would read it).
- Grayscale becomes RGB by repeating the channel; palette images are expanded
  through their palette; bilevel images become 0/1.
- Transparency (RGBA, LA, palette with a transparent colour) is composited over
  black, i.e. each colour channel is multiplied by alpha. The colour stored
  under fully transparent pixels is therefore ignored.
- The EXIF orientation tag is applied (as ``PIL.ImageOps.exif_transpose``), so
  an image is audited the way viewers show it, for images and human maps alike.
- Multi-frame files (animated GIF / PNG / WebP, multi-page TIFF) are refused:
  which frame is meant is the user's choice. A camera MPO JPEG is read as its
  first frame, its primary image by definition of the format.
- Every image is resized to a square ``size x size`` with bilinear
  interpolation and antialiasing (torch); non-square images are **stretched,
  not cropped**.

Every problem with a file (missing, empty, not an image, truncated or corrupt,
larger than PIL's decompression-bomb limit) raises
:class:`~salience_audit.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from salience_audit.data.sample import Sample
from salience_audit.errors import InputError

__all__ = ["ImageDataset", "decode_image", "decode_map", "load_image", "load_map", "resize_square"]

PathLike = str | os.PathLike[str]

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def _open(path: PathLike) -> Image.Image:
    """Open and fully decode an image file, turning every failure into an InputError."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("image file not found", name)
    if not os.path.isfile(name):
        raise InputError("not a file (a directory?)", name)
    if os.path.getsize(name) == 0:
        raise InputError("empty image file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(name)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(
            f"image is larger than PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels "
            f"({err}); if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS",
            name,
        ) from err
    except UnidentifiedImageError as err:
        raise InputError("not an image file, or an unsupported image format", name) from err
    except _DECODE_ERRORS as err:
        detail = str(err) or type(err).__name__
        hint = "truncated or corrupt image" if "truncat" in detail.lower() else "cannot decode image"
        raise InputError(f"{hint}: {detail}", name) from err
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1 and image.format != "MPO":
        image.close()
        raise InputError(
            f"multi-frame image ({frames} frames: an animated {image.format} or a multi-page file); only "
            "single images are audited - save the frame you mean as its own file",
            name,
        )
    try:
        upright = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as err:
        raise InputError(f"cannot apply the EXIF orientation: {err}", name) from err
    if upright is not image:
        image.close()
    return upright


def _float_pixels(image: Image.Image) -> np.ndarray:
    """The pixels of a 32-bit float image (mode ``F``); NaN, infinity or values outside [0, 1] are refused."""
    arr = np.asarray(image, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"float image holds {bad} NaN or infinite pixel value(s); the image is unusable")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"float image with values in [{lo:.6g}, {hi:.6g}], outside [0, 1]; rescale it to [0, 1] "
            "or save it as an 8- or 16-bit image"
        )
    return arr


def _over_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite float colour channels ``[H, W, C]`` over black with alpha ``[H, W]`` in [0, 1]."""
    return color * alpha[..., None]


def decode_image(image: Image.Image) -> np.ndarray:
    """An opened PIL image as a float32 ``[H, W, 3]`` RGB array in [0, 1] (rules in the module doc)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float64) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        gray = _float_pixels(image)
        return np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "L"):
        image = image.convert("L")
    elif mode not in ("RGB", "RGBA", "LA", "La", "RGBa"):
        image = image.convert("RGB")
    if image.mode in ("La", "RGBa"):  # premultiplied alpha: colours are already over black
        image = image.convert(image.mode[:-1])
    arr = np.asarray(image).astype(np.float32) / 255.0
    if image.mode == "L":
        return np.repeat(arr[..., None], 3, axis=2)
    if image.mode == "LA":
        gray = _over_black(arr[..., :1], arr[..., 1])
        return np.repeat(gray, 3, axis=2)
    if image.mode == "RGBA":
        return _over_black(arr[..., :3], arr[..., 3])
    return arr


def decode_map(image: Image.Image) -> np.ndarray:
    """An opened PIL image as a float32 ``[H, W]`` grayscale map in [0, 1].

    Values are divided by the maximum of their type (255 for 8-bit, 65535 for
    16-bit). Colour maps are reduced to luma (PIL's ``L`` conversion); an alpha
    channel is ignored.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.clip(np.asarray(image).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        return _float_pixels(image).astype(np.float32)
    if mode == "LA":
        image = image.getchannel("L")
    elif mode != "L":
        image = image.convert("L")
    return np.asarray(image).astype(np.float32) / 255.0


def resize_square(t: Tensor, size: int) -> Tensor:
    """Resize ``[C, H, W]`` to ``[C, size, size]`` (bilinear, antialiased, clamped to [0, 1])."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if t.shape[-2:] == (size, size):
        return t
    out = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def _named(decode: Callable[[Image.Image], np.ndarray], image: Image.Image, path: PathLike) -> np.ndarray:
    """``decode(image)``, with a problem found in the pixels raised as an InputError naming ``path``."""
    try:
        return decode(image)
    except InputError as err:
        if err.path is not None:
            raise
        raise InputError(err.problem, os.fspath(path)) from err


def load_image(path: PathLike, size: int) -> Tensor:
    """Load an image file as a float ``[3, size, size]`` RGB tensor in [0, 1].

    Non-square images are resized (stretched) to the square, not cropped.
    Raises InputError naming the file for anything that is not a readable image.
    """
    with _open(path) as image:
        arr = _named(decode_image, image, path)
    return resize_square(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), size)


def load_map(path: PathLike, size: int) -> Tensor:
    """Load a grayscale map (e.g. a human annotation) as a float ``[size, size]`` tensor in [0, 1]."""
    with _open(path) as image:
        arr = _named(decode_map, image, path)
    return resize_square(torch.from_numpy(np.ascontiguousarray(arr))[None], size)[0]


class ImageDataset(Dataset):
    """Samples as tensors, for a DataLoader (picklable: holds only samples and sizes).

    Each item is a dict:
        ``image``: float ``[3, size, size]`` in [0, 1];
        ``label``: int64 scalar tensor (0 Real, 1 Synthetic, -1 unknown);
        ``index``: position of the sample in ``samples``;
        ``human_map``: float ``[m, m]`` in [0, 1] with ``m = map_size or size``
        (zeros when the sample has none);
        ``has_human_map``: whether ``human_map`` came from a file.
    """

    def __init__(self, samples: Sequence[Sample], size: int, map_size: int | None = None) -> None:
        if size <= 0 or (map_size is not None and map_size <= 0):
            raise ValueError("size and map_size must be positive")
        self.samples = list(samples)
        self.size = int(size)
        self.map_size = int(map_size) if map_size is not None else int(size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, object]:
        if index < 0:
            index += len(self.samples)
        sample = self.samples[index]
        has_map = sample.human_map is not None
        human_map = (
            load_map(sample.human_map, self.map_size)
            if has_map
            else torch.zeros(self.map_size, self.map_size)
        )
        return {
            "image": load_image(sample.path, self.size),
            "label": torch.tensor(sample.label, dtype=torch.int64),
            "index": index,
            "human_map": human_map,
            "has_human_map": has_map,
        }
