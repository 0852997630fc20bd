"""A small, deterministic audit whose Parquet rows are pinned in ``tests/golden/rows.parquet``.

Everything the audit reads is generated here from numpy's PCG64 generator (stable across
numpy versions and platforms), so no training and no torch random numbers are involved:

- 12 in-set images of 64 x 64 px (6 Real, 6 Synthetic: smooth blobs plus texture), 8 of
  them with a human annotation map, and 4 out-of-set images;
- 2 groups (``alpha``, ``beta``) x 2 runs of ``small_cnn``, whose weights (convolutions,
  batch-norm statistics and the linear head) are drawn from the generator and saved as run
  folders (``run.json`` + ``model.pt``), read back through ``load_run``.

The audit computes every measure (deletion / insertion and human maps included) on the CPU
with one torch thread. ``python tests/golden_audit.py`` rewrites the pinned rows: do that
only for a change that is meant to change the numbers, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN_ROWS = Path(__file__).parent / "golden" / "rows.parquet"
"""The pinned rows (``path`` relative to the generated folder, sorted by :data:`SORT_KEYS`)."""

SORT_KEYS = ["dataset", "path", "group", "run", "run_a", "run_b", "measure", "variant"]
"""Row keys; the pinned rows use row layout 2 (``run_a`` / ``run_b``, typed variant columns; null text as "")."""
IMAGE_SIZE = 64
N_IN_SET = 12
N_OUT_OF_SET = 4
GROUPS = {"alpha": (11, 12), "beta": (21, 22)}
"""Group name -> generator seeds of its two runs."""


def _image(rng: np.random.Generator, synthetic: bool) -> np.ndarray:
    """A 64 x 64 RGB uint8 image: two Gaussian blobs on a gradient, plus (Synthetic) a checker texture."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) / IMAGE_SIZE
    img = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3))
    for c in range(3):
        img[..., c] = 0.3 + 0.2 * rng.uniform() * xx + 0.2 * rng.uniform() * yy
    for _ in range(2):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        sigma = rng.uniform(0.06, 0.15)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        img += blob[..., None] * rng.uniform(0.2, 0.6, size=3)
    if synthetic:
        period = int(rng.integers(3, 7))
        checker = ((np.arange(IMAGE_SIZE)[:, None] // period + np.arange(IMAGE_SIZE)[None, :] // period) % 2)
        img += 0.12 * checker[..., None]
    img += rng.normal(0.0, 0.03, size=img.shape)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def _human_map(rng: np.random.Generator) -> np.ndarray:
    """A 64 x 64 grey uint8 annotation: one or two filled ellipses."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) / IMAGE_SIZE
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    for _ in range(int(rng.integers(1, 3))):
        cy, cx = rng.uniform(0.25, 0.75, size=2)
        ry, rx = rng.uniform(0.08, 0.25, size=2)
        out = np.maximum(out, (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0) * rng.uniform(0.5, 1.0))
    return (out * 255).round().astype(np.uint8)


def _state_dict(seed: int) -> dict:
    """Weights of ``small_cnn`` drawn from PCG64(seed), batch-norm running statistics included."""
    import torch

    from salience_audit.models.registry import build_model

    rng = np.random.default_rng(seed)
    reference = build_model("small_cnn", num_classes=2, weights=None).state_dict()
    out = {}
    for name, tensor in reference.items():
        shape = tuple(tensor.shape)
        if name.endswith("num_batches_tracked"):
            value = np.array(100)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, size=shape)
        elif name.endswith("running_mean"):
            value = rng.normal(0.0, 0.2, size=shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.1, size=shape)
        elif len(shape) == 1:  # batch-norm weight
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        out[name] = torch.as_tensor(value).to(tensor.dtype)
    return out


def _fit_head(state: dict, images: list[np.ndarray], labels: list[int], seed: int) -> None:
    """Replace the linear head of ``state`` by a noisy linear probe of the random features.

    Random weights alone give nearly the same logits for every image (pooled ReLU features
    share a large common part), so every run would call all images one class. The head is
    set to ``logit_1 - logit_0 = s * (f - mean(f)) . w`` with ``w`` half the class-mean
    difference direction and half a random direction, ``s`` making the logit difference's
    standard deviation 3: both classes are predicted, with some errors.
    """
    import torch

    from salience_audit.models.registry import build_model, get_spec

    spec = get_spec("small_cnn")
    module = build_model("small_cnn", num_classes=2, weights=None)
    module.load_state_dict(state)
    module.eval()
    x = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = module.pool(module.features(module.stem(x))).flatten(1).double().numpy()
    centred = feats - feats.mean(axis=0)
    y = np.asarray(labels, dtype=np.float64)
    direction = centred[y == 1].mean(axis=0) - centred[y == 0].mean(axis=0)
    noise = np.random.default_rng(seed + 1000).normal(size=direction.shape)
    w = direction / np.linalg.norm(direction) + noise / np.linalg.norm(noise)
    scale = 3.0 / max(float((centred @ w).std()), 1e-12)
    w = scale * w
    b = -float(feats.mean(axis=0) @ w)
    state["classifier.weight"] = torch.as_tensor(np.stack([-w / 2, w / 2])).float()
    state["classifier.bias"] = torch.as_tensor(np.array([-b / 2, b / 2])).float()


def build_inputs(root: Path) -> tuple[dict[str, list[Path]], dict[str, list]]:
    """Write images, human maps and run folders under ``root``; return (groups, datasets)."""
    import torch
    from PIL import Image

    from salience_audit.data.sample import Sample

    rng = np.random.default_rng(2024)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "human").mkdir(parents=True, exist_ok=True)
    faces: list[Sample] = []
    pixels: list[np.ndarray] = []
    for k in range(N_IN_SET):
        label = k % 2
        path = root / "images" / f"face{k:02d}.png"
        pixels.append(_image(rng, synthetic=bool(label)))
        Image.fromarray(pixels[-1]).save(path)
        human = None
        if k < 8:
            human = root / "human" / f"face{k:02d}.png"
            Image.fromarray(_human_map(rng)).save(human)
        faces.append(Sample(path=str(path), label=label, dataset="faces", human_map=None if human is None else str(human)))
    others: list[Sample] = []
    for k in range(N_OUT_OF_SET):
        path = root / "images" / f"other{k:02d}.png"
        Image.fromarray(rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(path)
        others.append(Sample(path=str(path), label=-1, dataset="others"))

    groups: dict[str, list[Path]] = {}
    for group, seeds in GROUPS.items():
        runs = []
        for seed in seeds:
            run_dir = root / "runs" / f"{group}-seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            state = _state_dict(seed)
            _fit_head(state, pixels, [s.label for s in faces], seed)
            torch.save(state, run_dir / "model.pt")
            meta = {"arch": "small_cnn", "num_classes": 2, "input_size": IMAGE_SIZE, "name": run_dir.name,
                    "seed": seed, "finished": True}
            (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
            runs.append(run_dir)
        groups[group] = runs
    return groups, {"faces": faces, "others": others}


def run_golden_audit(root: Path, salience_path: str = "auto") -> pd.DataFrame:
    """Build the inputs under ``root``, audit them (every measure), return the sorted rows.

    The pinned rows were computed with autograd Grad-CAM; ``salience_path`` ("auto", the
    default: forward-only after the first-batch check, "forward", "autograd") must not change them.
    """
    import torch

    from salience_audit.audit.config import MEASURES, AuditConfig
    from salience_audit.audit.pipeline import run_audit

    groups, datasets = build_inputs(root)
    config = AuditConfig(measures=MEASURES, device="cpu", batch_size=5, shard_size=8, seed=3,
                         noise_levels=(0.0, 0.05, 0.25, 1.0), deletion_steps=4, gallery_size=1,
                         salience_path=salience_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_audit(groups, datasets, root / "audit", config=config, ood_datasets=["others"], progress=False,
                  report=False)
    finally:
        torch.set_num_threads(threads)
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in (root / "audit" / "results").glob("*.parquet") if not p.name.startswith("."))
    rows = pq.read_table(files).to_pandas()
    return normalise_rows(rows, root)


def normalise_rows(rows: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Paths relative to ``root``, categorical columns as plain strings, rows in a fixed order."""
    rows = rows.copy()
    for col in rows.columns:
        if isinstance(rows[col].dtype, pd.CategoricalDtype):
            rows[col] = rows[col].astype(str)
    for col in ("run", "run_a", "run_b", "transform"):
        if col in rows.columns:
            rows[col] = rows[col].fillna("").astype(str)
    prefix = str(root) + "/"
    rows["path"] = rows["path"].astype(str).map(lambda p: p[len(prefix):] if p.startswith(prefix) else p)
    return rows.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory() as tmp:
        frame = run_golden_audit(Path(tmp))
    GOLDEN_ROWS.parent.mkdir(exist_ok=True)
    frame.to_parquet(GOLDEN_ROWS, index=False, compression="zstd")
    print(f"{len(frame)} rows -> {GOLDEN_ROWS}")
    print(frame.groupby("measure").size().to_string())
