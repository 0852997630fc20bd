"""Offline demo data: real LFW faces vs DCGAN faces, brought to one look.

Everything comes from installed packages; nothing is downloaded.

Sources
    *Real*: the 100 face crops of ``skimage.data.lfw_subset()`` (its first 100
    images; the last 100 are non-face background patches). 25 x 25 grayscale,
    stored as float64 in [0, 1] (scikit-image's docstring says uint8; both are
    handled).
    *Synthetic*: faces from the DCGAN of the ``gan_face_generate`` package
    (``Generator(ngpu=0, nc=3, nz=100, ngf=64)``, weights ``weights.tar`` key
    ``netG_state_dict``, loaded with ``torch.load(weights_only=True)``), one
    latent vector per face drawn from ``torch.Generator().manual_seed(seed)``.
    64 x 64 RGB, tanh output mapped from [-1, 1] to [0, 1].
    *Out-of-set*: the 100 non-face patches of ``lfw_subset()`` (label -1).

One look (so that a classifier cannot separate the classes by colour, framing,
resolution or exposure alone), in this order:

1. grayscale: DCGAN RGB -> ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B);
2. framing: the DCGAN face is cropped to the box ``GAN_CROP_BOX`` =
   (left 10, top 10, right 64, bottom 64) of the 64 x 64 frame. The box was
   chosen by maximising the correlation of the cropped mean DCGAN face with the
   mean LFW face over square boxes inside the frame (best: 54 px at (10, 10),
   r = 0.42 on 400 DCGAN faces, against -0.06 for the uncropped frame);
   eyes then sit at 0.33-0.34 of the height in both sources and the mouth
   at 0.72 (LFW) / 0.78 (DCGAN);
3. resolution: the DCGAN crop is downsampled to 25 x 25 (bilinear,
   antialiased) like the LFW crops, then every image (LFW, DCGAN, non-face) is
   upsampled from 25 x 25 to ``size`` x ``size`` with the same filter
   (bilinear, torch, ``align_corners=False``);
4. exposure: each image is standardised to mean ``TARGET_MEAN`` = 0.45 and
   standard deviation ``TARGET_STD`` = 0.18 (a standard deviation below
   ``STD_FLOOR`` = 0.02 is treated as 0.02, so flat non-face patches are not
   blown up into noise) and clipped to [0, 1], repeated
   ``STANDARDISE_ROUNDS`` = 8 times because clipping lowers the contrast of
   high-contrast images; then quantised to 8 bits (per image afterwards:
   mean 0.4500, std 0.1800 +/- 0.0005 for both classes);
5. saved as PNG with three equal channels (grayscale as RGB).

Proxy annotations (not human data: a stand-in for human salience maps) are
small Gaussian blobs over the eyes, the nose and the mouth, at fixed positions
per source measured on the aligned mean face (``PROXY_LANDMARKS``), scaled
to a peak of 1; values below ``PROXY_FLOOR`` are set to zero so most of the
map (about 63 %) is zero. They are 8-bit grayscale PNGs named like their
image, in ``annotations/``.

The split is a fixed stratified 70/30 train/test split per class (seeded).
The build is cached: ``recipe.json`` in ``cache_dir`` records the recipe (all
the settings above plus fingerprints of the source data) and a later call with
the same recipe returns the existing files without writing anything.
See docs/demo-data.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from salience_audit.atomic import atomic_write_text
from salience_audit.data.manifest import write_manifest
from salience_audit.data.sample import Sample
from salience_audit.errors import require_extra

__all__ = [
    "DemoData",
    "GAN_CROP_BOX",
    "LOW_RES",
    "PROXY_LANDMARKS",
    "TARGET_MEAN",
    "TARGET_STD",
    "build_demo_data",
    "demo_recipe",
    "gan_to_low_res",
    "harmonise",
    "proxy_annotation",
]

RECIPE_VERSION = 1
LOW_RES = 25
"""Common low resolution every image goes through (that of the LFW crops)."""
GAN_CROP_BOX: tuple[int, int, int, int] = (10, 10, 64, 64)
"""(left, top, right, bottom) of the DCGAN face crop in its 64 x 64 frame."""
TARGET_MEAN = 0.45
TARGET_STD = 0.18
STD_FLOOR = 0.02
STANDARDISE_ROUNDS = 8
TRAIN_FRACTION = 0.7
N_REAL = 100
GAN_NZ = 100
GAN_NGF = 64

PROXY_LANDMARKS: dict[str, dict[str, tuple[float, float]]] = {
    # (x, y) as fractions of the frame width / height (pixel centres), read off
    # the aligned 25 x 25 mean face of each source (mean of per-image
    # standardised faces; 100 LFW faces, 400 DCGAN faces of seed 0): the
    # darkest cells of the eye and mouth regions, the nose between the eye line
    # and the nostril shadow.
    "real": {"left_eye": (0.25, 0.33), "right_eye": (0.62, 0.33), "nose": (0.43, 0.55), "mouth": (0.43, 0.72)},
    "synthetic": {"left_eye": (0.28, 0.34), "right_eye": (0.55, 0.34), "nose": (0.42, 0.58), "mouth": (0.42, 0.78)},
}
PROXY_SIGMA: dict[str, tuple[float, float]] = {
    # (sigma_x, sigma_y) as fractions of the frame size. Wide enough that each region
    # spans about two cells of an 8 x 8 CAM (the small CNN's map) instead of a single
    # cell, as hand-drawn annotations of a region do; still about 63 % of a map is zero.
    "left_eye": (0.09, 0.0675),
    "right_eye": (0.09, 0.0675),
    "nose": (0.0675, 0.09),
    "mouth": (0.15, 0.075),
}
PROXY_FLOOR = 0.1

MANIFEST_NAME = "demo.csv"
OUT_OF_SET_NAME = "demo-out-of-set.csv"
RECIPE_NAME = "recipe.json"
_OWNED = ("images", "annotations", MANIFEST_NAME, OUT_OF_SET_NAME)


@dataclass(frozen=True)
class DemoData:
    """Where a demo build lies.

    Attributes:
        root: the cache folder holding everything below.
        manifest: train/test manifest (header CSV with ``human_map`` and ``dataset``
            columns): 100 real LFW faces and ``n_synthetic`` DCGAN faces.
        out_of_set_manifest: the 100 non-face patches (label -1, split ``test``).
        annotations_dir: folder of proxy annotations, named like the images.
        recipe: the settings and source fingerprints the build was made with.
        recipe_hash: SHA-256 of ``recipe`` (as stored in ``recipe.json``).
    """

    root: Path
    manifest: Path
    out_of_set_manifest: Path
    annotations_dir: Path
    recipe: dict[str, Any] = field(compare=False)
    recipe_hash: str = ""


# --------------------------------------------------------------------------- sources


GENERATOR_HINT = (
    "; on Python 3.13, where its wheel declares <3.13 but its generator code runs: "
    "pip install --no-deps --ignore-requires-python \"gan-face-generate>=1.1\""
)
"""Second install route for the DCGAN generator (see docs/install.md)."""


def require_demo_packages() -> None:
    """Refuse early, in one line naming the ``demo`` extra, when scikit-image or the generator is missing."""
    require_extra("skimage", "demo", "the demo data (LFW faces)")
    require_extra("gan_face_generate", "demo", "the demo data (DCGAN faces)", GENERATOR_HINT)


def _lfw_subset() -> np.ndarray:
    """All 200 images of ``skimage.data.lfw_subset()`` as float64 in [0, 1]."""
    lfw_subset = require_extra("skimage.data", "demo", "the demo data (LFW faces)").lfw_subset

    images = np.asarray(lfw_subset())
    if np.issubdtype(images.dtype, np.integer):
        return images.astype(np.float64) / 255.0
    return images.astype(np.float64)


def _gan_weights_path() -> Path:
    generator_package = require_extra("gan_face_generate", "demo", "the demo data (DCGAN faces)", GENERATOR_HINT)
    return Path(generator_package.__file__).parent / "weights.tar"


def _generate_gan_faces(n: int, seed: int) -> torch.Tensor:
    """``n`` DCGAN faces as float ``[n, 3, 64, 64]`` in [0, 1], from a seeded latent draw."""
    Generator = require_extra(  # noqa: N806 - a class
        "gan_face_generate.models", "demo", "the demo data (DCGAN faces)", GENERATOR_HINT
    ).Generator

    checkpoint = torch.load(_gan_weights_path(), map_location="cpu", weights_only=True)
    generator = Generator(ngpu=0, nc=3, nz=GAN_NZ, ngf=GAN_NGF)
    generator.load_state_dict(checkpoint["netG_state_dict"])
    generator.eval()
    latent = torch.randn(n, GAN_NZ, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        faces = generator(latent)
    return ((faces + 1.0) / 2.0).clamp(0.0, 1.0)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- one look


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of ``[N, 3, H, W]`` -> ``[N, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1)


def _resize(gray: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of ``[N, H, W]`` to ``[N, size, size]``."""
    if gray.shape[-2:] == (size, size):
        return gray
    return F.interpolate(gray[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0]


def gan_to_low_res(faces_rgb: torch.Tensor) -> torch.Tensor:
    """DCGAN faces ``[N, 3, 64, 64]`` -> grayscale, cropped (``GAN_CROP_BOX``), ``[N, 25, 25]``."""
    left, top, right, bottom = GAN_CROP_BOX
    gray = _luma(faces_rgb.to(torch.float64))[:, top:bottom, left:right]
    return _resize(gray, LOW_RES)


def _image_std(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).std(dim=1, unbiased=False)


def _standardise(images: torch.Tensor, target_std: torch.Tensor) -> torch.Tensor:
    """Per-image affine map of ``[N, H, W]`` to mean ``TARGET_MEAN`` and standard deviation ``target_std``."""
    flat = images.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1)
    std = _image_std(images).clamp_min(1e-12).view(-1, 1, 1)
    return (images - mean) / std * target_std.view(-1, 1, 1) + TARGET_MEAN


def harmonise(low_res: torch.Tensor, size: int) -> np.ndarray:
    """Low-resolution grayscale ``[N, 25, 25]`` in [0, 1] -> uint8 ``[N, size, size]`` of one look.

    Upsamples with the common filter, then maps each image to mean
    ``TARGET_MEAN`` and standard deviation ``TARGET_STD`` and clips to [0, 1].
    An image whose standard deviation is below ``STD_FLOOR`` is scaled as if it
    were ``STD_FLOOR`` (so its contrast grows by at most ``TARGET_STD /
    STD_FLOOR``, and flat patches are not blown up into noise). Clipping lowers
    the standard deviation of high-contrast images, so standardise-and-clip is
    repeated ``STANDARDISE_ROUNDS`` times, which brings the clipped image to the
    target statistics; finally rounds to 8 bits.
    """
    out = _resize(low_res.to(torch.float64), size)
    target_std = TARGET_STD * (_image_std(out) / STD_FLOOR).clamp(max=1.0)
    for _ in range(STANDARDISE_ROUNDS):
        out = _standardise(out, target_std).clamp(0.0, 1.0)
    return torch.round(out * 255.0).to(torch.uint8).numpy()


def proxy_annotation(source: str, size: int) -> np.ndarray:
    """The proxy annotation (uint8 ``[size, size]``) of every face of ``source`` ("real" or "synthetic")."""
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    heat = np.zeros((size, size))
    for part, (cx, cy) in PROXY_LANDMARKS[source].items():
        sx, sy = PROXY_SIGMA[part]
        heat = np.maximum(heat, np.exp(-0.5 * (((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2)))
    heat /= heat.max()  # blob centres fall between pixel centres: make the peak exactly 1
    heat[heat < PROXY_FLOOR] = 0.0
    return np.round(heat * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- recipe and cache


def demo_recipe(size: int = 64, n_synthetic: int = 100, seed: int = 0) -> dict[str, Any]:
    """Everything that determines a demo build (its hash decides whether to rebuild)."""
    lfw = _lfw_subset()
    return {
        "version": RECIPE_VERSION,
        "size": int(size),
        "n_real": N_REAL,
        "n_synthetic": int(n_synthetic),
        "n_out_of_set": int(lfw.shape[0] - N_REAL),
        "seed": int(seed),
        "real_source": "skimage.data.lfw_subset()[:100] (faces)",
        "out_of_set_source": "skimage.data.lfw_subset()[100:] (non-faces)",
        "lfw_sha256": hashlib.sha256(np.ascontiguousarray(lfw).tobytes()).hexdigest(),
        "synthetic_source": f"gan_face_generate DCGAN Generator(nc=3, nz={GAN_NZ}, ngf={GAN_NGF})",
        "gan_weights_sha256": _sha256_file(_gan_weights_path()),
        "grayscale": "ITU-R 601 luma, saved as 3 equal channels",
        "gan_crop_box": list(GAN_CROP_BOX),
        "low_res": LOW_RES,
        "resample": "bilinear, antialiased (torch.nn.functional.interpolate)",
        "target_mean": TARGET_MEAN,
        "target_std": TARGET_STD,
        "std_floor": STD_FLOOR,
        "standardise_rounds": STANDARDISE_ROUNDS,
        "train_fraction": TRAIN_FRACTION,
        "proxy_landmarks": {k: {p: list(v) for p, v in d.items()} for k, d in PROXY_LANDMARKS.items()},
        "proxy_sigma": {k: list(v) for k, v in PROXY_SIGMA.items()},
        "proxy_floor": PROXY_FLOOR,
    }


def _recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _result(root: Path, recipe: dict[str, Any], digest: str) -> DemoData:
    return DemoData(
        root=root,
        manifest=root / MANIFEST_NAME,
        out_of_set_manifest=root / OUT_OF_SET_NAME,
        annotations_dir=root / "annotations",
        recipe=recipe,
        recipe_hash=digest,
    )


def _cached(root: Path, digest: str) -> bool:
    try:
        stored = json.loads((root / RECIPE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(stored, dict)
        and stored.get("recipe_hash") == digest
        and all((root / name).exists() for name in _OWNED)
    )


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """Serialise concurrent builds into the same folder (POSIX advisory lock; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- build


def _split(n: int, rng: np.random.Generator) -> list[str]:
    """A seeded ``TRAIN_FRACTION`` train / rest test assignment of ``n`` items."""
    n_train = int(round(TRAIN_FRACTION * n))
    order = rng.permutation(n)
    splits = ["test"] * n
    for i in order[:n_train]:
        splits[i] = "train"
    return splits


def _save_gray_rgb(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels, mode="L").convert("RGB").save(path)


def _write_faces(
    root: Path, images: np.ndarray, prefix: str, source: str, label: int, splits: list[str], size: int
) -> list[Sample]:
    folder = root / "images" / source
    folder.mkdir(parents=True, exist_ok=True)
    annotation = Image.fromarray(proxy_annotation(source, size), mode="L")
    samples = []
    for i, pixels in enumerate(images):
        name = f"{prefix}_{i:04d}.png"
        _save_gray_rgb(pixels, folder / name)
        annotation.save(root / "annotations" / name)
        samples.append(Sample(
            path=str(folder / name), label=label, split=splits[i], dataset="demo",
            human_map=str(root / "annotations" / name), source=str(root / MANIFEST_NAME),
            key=f"images/{source}/{name}",
        ))
    return samples


def _build(root: Path, recipe: dict[str, Any], digest: str) -> None:
    size, seed = recipe["size"], recipe["seed"]
    (root / RECIPE_NAME).unlink(missing_ok=True)
    for name in _OWNED:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (root / "annotations").mkdir(parents=True)

    lfw = torch.from_numpy(_lfw_subset())
    real = harmonise(lfw[:N_REAL], size)
    nonface = harmonise(lfw[N_REAL:], size)
    synthetic = harmonise(gan_to_low_res(_generate_gan_faces(recipe["n_synthetic"], seed)), size)

    rng = np.random.default_rng(seed)
    samples = _write_faces(root, real, "lfw", "real", 0, _split(len(real), rng), size)
    samples += _write_faces(root, synthetic, "dcgan", "synthetic", 1, _split(len(synthetic), rng), size)
    write_manifest(samples, root / MANIFEST_NAME)

    folder = root / "images" / "out-of-set"
    folder.mkdir(parents=True)
    out_of_set = []
    for i, pixels in enumerate(nonface):
        path = folder / f"nonface_{i:04d}.png"
        _save_gray_rgb(pixels, path)
        out_of_set.append(Sample(path=str(path), label=-1, split="test", dataset="demo-out-of-set"))
    write_manifest(out_of_set, root / OUT_OF_SET_NAME)

    stored = {"recipe_hash": digest, "recipe": recipe}
    atomic_write_text(root / RECIPE_NAME, json.dumps(stored, indent=2, sort_keys=True) + "\n")


def build_demo_data(
    cache_dir: str | os.PathLike[str], size: int = 64, n_synthetic: int = 100, seed: int = 0
) -> DemoData:
    """Build (or reuse) the offline demo data set in ``cache_dir``.

    Args:
        cache_dir: folder for the PNG files, manifests and ``recipe.json``;
            created if needed. Only the entries this function owns
            (``images/``, ``annotations/``, ``demo.csv``,
            ``demo-out-of-set.csv``, ``recipe.json``) are ever replaced.
        size: side of the square images and proxy annotations, in pixels.
        n_synthetic: number of DCGAN faces (the real class has 100).
        seed: seeds the DCGAN latent vectors and the train/test split.

    Returns:
        The paths of the build. When ``cache_dir`` already holds a complete build
        with the same recipe, nothing is written.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if n_synthetic < 2:
        raise ValueError(f"n_synthetic must be at least 2, got {n_synthetic}")
    require_demo_packages()
    root = Path(cache_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    recipe = demo_recipe(size=size, n_synthetic=n_synthetic, seed=seed)
    digest = _recipe_hash(recipe)
    with _build_lock(root):
        if not _cached(root, digest):
            _build(root, recipe, digest)
    return _result(root, recipe, digest)
