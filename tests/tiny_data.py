"""A tiny two-class image set (random 32x32 images, the classes differ in brightness) as a header CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_TINY = ["--arch", "small_cnn", "--weights", "none", "--loss", "xent", "--epochs", "1", "--batch-size", "4",
              "--device", "cpu"]
"""``salience-audit train`` flags for a one-epoch small CNN on the CPU."""


def tiny_dataset(folder: Path, n: int = 6, seed: int = 1) -> Path:
    """``n`` images per class (Real darker, Synthetic brighter), the last third of each class in ``test``."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, base in (("Real", 80), ("Synthetic", 170)):
        for i in range(n):
            path = folder / f"{label}_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(rng.normal(base, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(path)
            rows.append(("train" if i < n - max(2, n // 3) else "test", label, str(path)))
    manifest = folder / "data.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([("split", "label", "path"), *rows])
    return manifest
