"""Precomputed salience maps (human annotations, maps saved by other tools) read from image files.

A grayscale file with integer values ``v`` becomes the map ``S = v / v_max`` where ``v_max``
is the largest value of the file's sample type (255 for 8-bit, 65535 for 16-bit). This keeps
the intensities of human annotations (a faint annotation stays faint); pass
``normalize=True`` for per-map min-max normalisation instead (constant map -> zeros).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from salience_audit.errors import InputError
from salience_audit.salience.normalize import minmax_normalize

__all__ = ["read_map", "read_maps"]

Size = int | tuple[int, int]

# Pillow modes that hold one grayscale channel, and the full-scale value of each.
_GRAY_FULL_SCALE: dict[str, float] = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}


def _as_hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return (int(size[0]), int(size[1]))


def _load_gray(path: Path) -> tuple[np.ndarray, bool]:
    """Grayscale pixels in [0, 1] as float32 ``[h, w]``, and whether colour was converted."""
    if not path.is_file():
        raise InputError("map file not found", path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            converted = False
            if mode in _GRAY_FULL_SCALE:
                arr = np.asarray(img).astype(np.float32) / _GRAY_FULL_SCALE[mode]
            elif mode == "I":  # 32-bit integer container, used by some readers for 16-bit files
                raw = np.asarray(img).astype(np.float64)
                full = 65535.0 if raw.max(initial=0) <= 65535 else 2.0**32 - 1
                arr = (raw / full).astype(np.float32)
            elif mode == "F":
                arr = np.asarray(img).astype(np.float32)
            else:  # "1", "P", "LA", "RGB", "RGBA", "CMYK", ...
                converted = mode not in ("1", "LA", "La")
                arr = np.asarray(img.convert("L")).astype(np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read map image ({type(exc).__name__}: {exc})", path) from exc
    if not np.isfinite(arr).all():
        raise InputError("map image holds non-finite values", path)
    return np.clip(arr, 0.0, 1.0), converted


def _resize(m: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(m.shape) == size:
        return m
    # Bilinear with antialiasing (like PIL's BILINEAR), so that a large annotation
    # shrunk to a 7x7 map averages its area instead of sampling a few pixels.
    out = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0.0, 1.0)


def read_maps(
    paths: Sequence[str | Path],
    size: Size | None = None,
    normalize: bool = False,
) -> Tensor:
    """Read grayscale images as maps ``[B, h, w]`` (float32, [0, 1], CPU).

    Args:
        paths: image files (PNG, JPEG, ... 8- or 16-bit; colour images are converted to
            luminance L = 0.299 R + 0.587 G + 0.114 B with a warning).
        size: resize every map to ``size`` (int: square; bilinear, antialiased); None keeps
            the file size, which must then be the same for all files.
        normalize: min-max normalise each map (constant -> zeros) instead of dividing by the
            full-scale value of the file type.

    Raises:
        InputError: naming the file that is missing, corrupt or of a different size.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if len(paths) == 0:
        if size is None:
            raise InputError("no map files given")
        return torch.zeros((0, *_as_hw(size)))
    target = None if size is None else _as_hw(size)
    maps: list[Tensor] = []
    colour: list[str] = []
    for p in paths:
        path = Path(p)
        arr, converted = _load_gray(path)
        if converted:
            colour.append(str(path))
        m = torch.from_numpy(arr)
        if target is not None:
            m = _resize(m, target)
        elif maps and m.shape != maps[0].shape:
            raise InputError(
                f"map size {tuple(m.shape)} differs from {tuple(maps[0].shape)} of {paths[0]}; pass size=...", path
            )
        maps.append(m)
    if colour:
        warnings.warn(
            f"{len(colour)} colour map image(s) converted to grayscale (L), e.g. {colour[0]}",
            stacklevel=2,
        )
    out = torch.stack(maps)
    return minmax_normalize(out) if normalize else out


def read_map(path: str | Path, size: Size | None = None, normalize: bool = False) -> Tensor:
    """One map ``[h, w]``; see :func:`read_maps`."""
    return read_maps([path], size=size, normalize=normalize)[0]
