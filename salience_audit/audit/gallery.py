"""Example images with every run's map, for the report gallery.

Chosen after the pass: the first ``gallery_size`` images of each dataset, and the
most and least stable images (mean cross-run SSIM, first group that has stability
rows). Their maps are recomputed (a handful of images), so nothing proportional to
the dataset is kept during the audit.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.store import ResultStore, atomic_save_npz
from salience_audit.audit.worker import RunRef
from salience_audit.device import resolve_device
from salience_audit.data.images import load_image
from salience_audit.data.sample import Sample
from salience_audit.salience.extract import SalienceExtractor


def _rejected_keys(out: Path) -> set[tuple[str, int]]:
    """(path as in the manifest, line) of the images in ``rejected.csv`` (left out during the pass)."""
    path = out / "rejected.csv"
    if not path.exists():
        return set()
    with path.open(newline="", encoding="utf-8") as fh:
        return {(row["path"], int(row["line"] or 0)) for row in csv.DictReader(fh)}


def _pick(out: Path, datasets: dict[str, list[Sample]], config: AuditConfig) -> list[tuple[str, int, str]]:
    """(dataset, index, reason) of the gallery images, without duplicates or rejected images."""
    rejected = _rejected_keys(out)

    def usable(ds: str, i: int) -> bool:
        s = datasets[ds][i]
        return (s.key or s.path, s.line) not in rejected

    picks: list[tuple[str, int, str]] = []
    for name, samples in datasets.items():
        good = (i for i in range(len(samples)) if usable(name, i))
        for i in itertools.islice(good, max(config.gallery_size, 0)):
            picks.append((name, i, "example"))
    if "stability" in config.measures:
        rows = ResultStore(out).read_rows(
            columns=["dataset", "index", "group", "measure", "value"],
            filters=pc.field("measure") == "stability_ssim",
        )
        if len(rows):
            first_group = rows["group"].iloc[0]
            per_image = (
                rows[rows["group"] == first_group].groupby(["dataset", "index"])["value"].mean().sort_values()
            )
            k = max(1, config.gallery_size)
            for (ds, idx), _ in per_image.iloc[::-1].head(k).items():
                picks.append((str(ds), int(idx), f"most stable ({first_group})"))
            for (ds, idx), _ in per_image.head(k).items():
                picks.append((str(ds), int(idx), f"least stable ({first_group})"))
    seen: set[tuple[str, int]] = set()
    unique = []
    for ds, idx, reason in picks:
        if (ds, idx) not in seen and ds in datasets and usable(ds, idx):
            seen.add((ds, idx))
            unique.append((ds, idx, reason))
    return unique


def write_gallery(out: Path, refs: dict[str, list[RunRef]], datasets: dict[str, list[Sample]], config: AuditConfig) -> Path | None:
    """Write ``gallery.npz`` (images, maps of every run, reasons); ``None`` when nothing to show."""
    picks = _pick(out, datasets, config)
    if not picks:
        return None
    device = resolve_device(config.device)
    runs: list[str] = []
    run_groups: list[str] = []
    maps_per_run: list[np.ndarray] = []
    images_u8: np.ndarray | None = None
    for group, members in refs.items():
        for ref in members:
            model = ref.load(device)
            size = model.input_size
            x = torch.stack([load_image(datasets[ds][idx].path, size) for ds, idx, _ in picks]).to(device)
            if images_u8 is None:
                images_u8 = (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
            extractor = SalienceExtractor(model, config.method)
            try:
                maps = extractor(x).maps.detach().cpu().numpy().astype(np.float32)
            finally:
                extractor.close()
            runs.append(ref.name)
            run_groups.append(group)
            maps_per_run.append(maps)
    if images_u8 is None:
        return None
    shapes = {m.shape for m in maps_per_run}
    if len(shapes) != 1:  # groups of different architectures: resize maps to the largest
        h = max(s[1] for s in shapes)
        w = max(s[2] for s in shapes)
        maps_per_run = [
            torch.nn.functional.interpolate(torch.from_numpy(m).unsqueeze(1), size=(h, w), mode="bilinear")
            .squeeze(1)
            .numpy()
            for m in maps_per_run
        ]
    path = out / "gallery.npz"
    atomic_save_npz(
        path,
        images=images_u8,
        paths=np.asarray([datasets[ds][idx].key or datasets[ds][idx].path for ds, idx, _ in picks], dtype=str),
        datasets=np.asarray([ds for ds, _, _ in picks], dtype=str),
        labels=np.asarray([datasets[ds][idx].label for ds, idx, _ in picks], dtype=np.int64),
        reasons=np.asarray([r for _, _, r in picks], dtype=str),
        maps=np.stack(maps_per_run).astype(np.float32),
        runs=np.asarray(runs, dtype=str),
        run_groups=np.asarray(run_groups, dtype=str),
    )
    return path

