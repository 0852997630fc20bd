"""Small, fast building blocks for the hardening tests: images, manifests, run folders, the CLI.

Everything is tiny (32 px images, the 64 px ``small_cnn`` with random weights saved as a
run folder, no training) so a whole audit through ``salience_audit.cli.main`` takes about
a second on one CPU thread.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from salience_audit.cli import main
from salience_audit.models.audit_model import MODEL_FILE, RUN_FILE, AuditModel

#: Fast audit flags: CPU, no progress bars, no report, cheap measures.
FAST = ["--device", "cpu", "--quiet", "--no-report", "--batch-size", "8", "--measures", "entropy"]


def rgb_image(path: Path, seed: int = 0, size: int = 32, fmt: str | None = None) -> Path:
    """A random-content RGB image file (PNG by default, the suffix decides)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def png16_rgb(path: Path, seed: int = 0, size: int = 16) -> Path:
    """A 16-bit-per-channel RGB PNG (colour type 2, bit depth 16), written by hand."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 65536, (size, size, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] | None = ("split", "label", "path"),
              newline: str = "\n", bom: bool = False) -> Path:
    """A manifest CSV written byte by byte (so tests control line endings and the BOM)."""
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    data = newline.join(lines) + newline
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + data.encode("utf-8"))
    return path


def dataset(folder: Path, n: int = 6, size: int = 32, start_seed: int = 0) -> tuple[Path, list[str]]:
    """``n`` random RGB images ``img00.png ...`` in ``folder/images`` and a header manifest listing them.

    Labels alternate Real / Synthetic. Returns the manifest path and the written paths (as in the CSV).
    """
    keys = []
    for k in range(n):
        key = f"images/img{k:02d}.png"
        rgb_image(folder / key, seed=start_seed + k, size=size)
        keys.append(key)
    rows = [("test", "Real" if k % 2 == 0 else "Synthetic", key) for k, key in enumerate(keys)]
    return write_csv(folder / "test.csv", rows), keys


def make_run(folder: Path, seed: int = 0, arch: str = "small_cnn", num_classes: int = 2,
             group: str = "g", module: torch.nn.Module | None = None) -> Path:
    """A run folder (``model.pt`` state dict + ``run.json``) of a randomly initialised model."""
    torch.manual_seed(seed)
    model = AuditModel.from_arch(arch, num_classes=num_classes, name=folder.name)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.module.state_dict() if module is None else module, folder / MODEL_FILE)
    meta = model.metadata()
    meta.update({"seed": seed, "group": group, "loss": "xent", "alpha": 1.0, "finished": True})
    (folder / RUN_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return folder


def runs(folder: Path, n: int = 2, prefix: str = "run") -> str:
    """``n`` run folders ``folder/<prefix>-<k>``; returns the glob pattern matching them."""
    for k in range(n):
        make_run(folder / f"{prefix}-{k}", seed=k)
    return str(folder / f"{prefix}-*")


def audit(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``salience-audit audit ARGS`` in process; returns (exit code, stdout, stderr)."""
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(out: Path) -> pd.DataFrame:
    """All per-sample rows of an audit folder, in a stable order."""
    df = pd.read_parquet(out / "results")
    return df.sort_values(["dataset", "group", "run", "measure", "variant", "index"]).reset_index(drop=True)


def rejected(out: Path) -> pd.DataFrame:
    """The ``rejected.csv`` of an audit folder."""
    return pd.read_csv(out / "rejected.csv", keep_default_na=False)


class NaNOnBright(torch.nn.Module):
    """A small CNN whose logits are NaN for bright images (mean normalised input > ``level``).

    Saved whole (``torch.save(model)``) into a run folder it needs ``--trust-pickle``; it
    stands for a model that overflows on some inputs.
    """

    def __init__(self, level: float = 0.5, value: float = float("nan")) -> None:
        super().__init__()
        from salience_audit.models.small_cnn import SmallCNN

        torch.manual_seed(0)
        inner = SmallCNN()
        self.stem, self.features, self.pool, self.classifier = inner.stem, inner.features, inner.pool, inner.classifier
        self.level = level
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.pool(self.features(self.stem(x))).flatten(1))
        bright = (x.mean(dim=(1, 2, 3)) > self.level).unsqueeze(1)
        return torch.where(bright, torch.full_like(logits, self.value), logits)


class MLP(torch.nn.Module):
    """A classifier without any convolutional layer (no spatial layer for CAM)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 16), torch.nn.ReLU())
        self.classifier = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def flat_image(path: Path, value: int, size: int = 32) -> Path:
    """A constant-colour RGB PNG (all channels ``value``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)
    return path
