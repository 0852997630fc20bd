"""Precomputed salience maps (human annotations, maps saved by other tools) read from image files.

A grayscale file with integer values ``v`` becomes the map ``S = v / v_max`` where ``v_max``
is the largest value of the file's sample type (255 for 8-bit, 65535 for 16-bit). This keeps
the intensities of human annotations (a faint annotation stays faint); pass
``normalize=True`` for per-map min-max normalisation instead (constant map -> zeros).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from salience_audit.errors import InputError
from salience_audit.salience.normalize import minmax_normalize, resize_bilinear

__all__ = ["MAP_FILE_EXTENSIONS", "MapRun", "OpenMapRun", "load_map_array", "read_map", "read_maps"]

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
    return resize_bilinear(m[None], size, antialias=True)[0].clamp(0.0, 1.0)


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


# ---------------------------------------------------------------------- runs of precomputed maps

MAP_FILE_EXTENSIONS: tuple[str, ...] = (".npy", ".pt", ".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
"""File types of a folder of precomputed maps, in order of preference for one image."""


def load_map_array(path: str | Path) -> np.ndarray:
    """One precomputed map file as float64 ``[h, w]`` (raw values, not yet normalised).

    ``.npy`` (``np.load(allow_pickle=False)``) and ``.pt`` (``torch.load(weights_only=True)``,
    a tensor) hold the values as saved; leading axes of size 1 are dropped. Image files
    are read as by :func:`read_maps`: ``v / full scale`` of their sample type (8-bit /255,
    16-bit /65535, float as is), colour converted to luminance L (warning given by the caller).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, Tensor):
                raise InputError(f"a .pt map must hold one tensor, got {type(obj).__name__}", path)
            arr = obj.detach().to(torch.float64).numpy()
        else:
            arr = _load_gray(path)[0]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise InputError(f"cannot read map file ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    return _as_map(arr, str(path))


def _as_map(arr: Any, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"a map must be 2-D [h, w], got shape {tuple(arr.shape)}", where)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"a map must hold real numbers, got dtype {arr.dtype}", where)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError("map holds non-finite values (NaN or infinity)", where)
    return arr


@dataclass(frozen=True)
class MapRun:
    """The precomputed maps of one run: a folder of files, or one ``.npz`` / ``.parquet`` file.

    - **folder**: one file per image (``.npy``, ``.pt``, PNG/TIFF/BMP/JPEG of any bit depth),
      matched to the images by :class:`~salience_audit.data.mapmatch.MapFolder`
      (relative path first, stem only when unambiguous).
    - **.npz**: one array per image, named by the image's relative path (or its stem).
    - **.parquet**: columns ``path`` (relative image path or stem), ``height``, ``width``
      and ``map`` (the ``height * width`` values, row-major).

    Every map is min-max normalised per map, ``S = (v - min v) / (max v - min v)`` (constant
    map -> zeros), the convention of the tool's own maps, so a file's scale (0-255, 0-65535,
    raw CAM values) does not matter and an 8-bit map that spans 0-255 keeps its levels.
    """

    where: str
    match: str = "auto"

    @property
    def kind(self) -> str:
        """``folder``, ``npz`` or ``parquet``."""
        suffix = Path(self.where).suffix.lower()
        return {".npz": "npz", ".parquet": "parquet"}.get(suffix, "folder")

    def open(self) -> OpenMapRun:
        """Scan the folder (or read the file) once; the result reads maps for many batches."""
        return OpenMapRun(self, *_map_source(self.where, self.kind))

    def read(self, images: Sequence[tuple[str | None, str]]) -> Tensor:
        """Maps of ``images`` (see :meth:`OpenMapRun.read`), scanning the source first."""
        return self.open().read(images)


@dataclass(frozen=True)
class OpenMapRun:
    """A :class:`MapRun` whose folder was scanned (or whose file was read)."""

    run: MapRun
    index: Any
    source: Any

    @property
    def where(self) -> str:
        return self.run.where

    @property
    def kind(self) -> str:
        return self.run.kind

    def read(self, images: Sequence[tuple[str | None, str]]) -> Tensor:
        """Maps ``[B, h, w]`` (float32, [0, 1]) of images given as ``(relative key, path)``.

        Raises ``InputError`` naming the image and where its map was looked for when one is
        missing, ambiguous, unreadable or of another size than the others.
        """
        index, source = self.index, self.source
        found, problems = index.match(list(images), mode=self.run.match)
        if problems:
            raise InputError(problems[0][1], self.where)
        arrays = []
        for (rel, path), hit in zip(images, found):
            if hit is None:
                how = f"relative path {rel!r} or " if rel else ""
                raise InputError(f"no precomputed map for image {path} (looked for its {how}stem in {self.where})",
                                 self.where)
            arr = source(hit)
            if arrays and arr.shape != arrays[0].shape:
                raise InputError(f"map of {path} is {arr.shape[0]}x{arr.shape[1]}, others are "
                                 f"{arrays[0].shape[0]}x{arrays[0].shape[1]}; a run's maps must share one size",
                                 hit if self.kind == "folder" else self.where)
            arrays.append(arr)
        if not arrays:
            return torch.zeros((0, 1, 1))
        return minmax_normalize(torch.from_numpy(np.stack(arrays)).to(torch.float64)).float()


def _map_source(where: str, kind: str) -> tuple[Any, Any]:
    """(index, reader) of a map run: the folder is scanned, or the whole file read, once per call."""
    from salience_audit.data.mapmatch import MapFolder

    path = Path(where)
    if kind == "folder":
        if not path.is_dir():
            raise InputError("folder of precomputed maps not found", path)
        index = MapFolder(path, MAP_FILE_EXTENSIONS)
        if not len(index):
            raise InputError(f"no map files ({', '.join(MAP_FILE_EXTENSIONS)}) in this folder", path)
        result: tuple[Any, Any] = (index, load_map_array)
    elif kind == "npz":
        try:
            data = np.load(path, allow_pickle=False)
            arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read .npz maps ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
        result = (MapFolder.from_keys(where, list(arrays)), lambda k: _as_map(arrays[k], f"{where}[{k}]"))
    else:
        import pandas as pd

        try:
            table = pd.read_parquet(path, columns=["path", "height", "width", "map"])
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read Parquet maps; columns path, height, width, map are needed "
                             f"({type(exc).__name__}: {str(exc)[:200]})", path) from exc
        rows = {str(r.path): (int(r.height), int(r.width), r.map) for r in table.itertuples(index=False)}

        def read_row(k: str) -> np.ndarray:
            h, w, values = rows[k]
            flat = np.asarray(values, dtype=np.float64)
            if flat.size != h * w:
                raise InputError(f"row {k!r}: {flat.size} values for a {h}x{w} map", path)
            return _as_map(flat.reshape(h, w), f"{where}[{k}]")

        result = (MapFolder.from_keys(where, list(rows)), read_row)
    return result
