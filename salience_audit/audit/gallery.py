"""Example images with every run's map, for the report gallery.

Chosen after the pass: the first ``gallery_size`` images of each dataset, and the
most and least stable images (mean cross-run SSIM, first group that has stability
rows, found shard by shard). Their maps are recomputed (a handful of images), so
nothing proportional to the dataset is kept during the audit: only the images shown,
only with the runs shown (the first :data:`RUNS_SHOWN_PER_GROUP` of each group), each
group's runs loaded while it is explained and the model cache emptied afterwards.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.worker import RunRef, _keep_only_cached, build_extractor, clear_model_cache
from salience_audit.data.images import load_image
from salience_audit.data.sample import Sample
from salience_audit.device import resolve_device
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.results.store import ResultStore, atomic_save_npz
from salience_audit.salience.normalize import resize_bilinear


RUNS_SHOWN_PER_GROUP = 2
"""Runs per group whose maps the gallery stores: what the report's gallery shows
(``report.render.gallery.RUNS_PER_GROUP``, the first two runs of each group; a test keeps them equal)."""


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
        extremes = stability_extremes(out, max(1, config.gallery_size))
        if extremes is not None:
            first_group, most, least = extremes
            picks += [(ds, idx, f"most stable ({first_group})") for ds, idx in most]
            picks += [(ds, idx, f"least stable ({first_group})") for ds, idx in least]
    seen: set[tuple[str, int]] = set()
    unique = []
    for ds, idx, reason in picks:
        if (ds, idx) not in seen and ds in datasets and usable(ds, idx):
            seen.add((ds, idx))
            unique.append((ds, idx, reason))
    return unique


def stability_extremes(out: Path, k: int) -> tuple[str, list[tuple[str, int]], list[tuple[str, int]]] | None:
    """The ``k`` most and ``k`` least stable images of the first group with stability rows.

    An image's stability is its mean ``stability_ssim`` over the group's run pairs. The
    result shards are read one at a time (a shard holds every pair of its group for its
    images, so per-image means are complete within it) and only the running top-k and
    bottom-k are kept: memory does not grow with the dataset. Returns
    ``(group, most stable first, least stable first)`` or None without stability rows.
    """
    first_group: str | None = None
    best: list[tuple[float, str, int]] = []
    worst: list[tuple[float, str, int]] = []
    for path in ResultStore(out).shard_files():
        table = pq.read_table(
            path, columns=["dataset", "index", "group", "value"], filters=pc.field("measure") == STABILITY_SSIM
        )
        if table.num_rows == 0:
            continue
        rows = table.to_pandas()
        if first_group is None:
            first_group = str(rows["group"].iloc[0])
        rows = rows[rows["group"] == first_group]
        per_image = rows.groupby(["dataset", "index"], sort=True)["value"].mean()
        best += [(float(v), str(ds), int(i)) for (ds, i), v in per_image.nlargest(k).items()]
        worst += [(float(v), str(ds), int(i)) for (ds, i), v in per_image.nsmallest(k).items()]
        best = sorted(best, key=lambda t: (-t[0], t[1], t[2]))[:k]
        worst = sorted(worst, key=lambda t: (t[0], t[1], t[2]))[:k]
    if first_group is None:
        return None
    return first_group, [(ds, i) for _, ds, i in best], [(ds, i) for _, ds, i in worst]


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
    loaded: dict[int, torch.Tensor] = {}  # input size -> the picked images, decoded once
    try:
        for group, members in refs.items():
            # precomputed maps: nothing to re-explain
            shown = [ref for ref in members if ref.maps is None][:RUNS_SHOWN_PER_GROUP]
            _keep_only_cached(shown, device)
            for ref in shown:
                model = ref.load(device)
                size = model.input_size
                if size not in loaded:
                    loaded[size] = torch.stack([load_image(datasets[ds][idx].path, size) for ds, idx, _ in picks])
                x = loaded[size].to(device)
                if images_u8 is None:
                    images_u8 = (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
                extractor = build_extractor(model, config, device)  # the audit's own settings
                try:
                    maps = extractor(x).maps.detach().cpu().numpy().astype(np.float32)
                finally:
                    extractor.close()
                runs.append(ref.name)
                run_groups.append(group)
                maps_per_run.append(maps)
    finally:
        clear_model_cache()  # the audit is done: no run stays loaded
    if images_u8 is None:
        return None
    shapes = {m.shape for m in maps_per_run}
    if len(shapes) != 1:  # groups of different architectures: resize maps to the largest
        h = max(s[1] for s in shapes)
        w = max(s[2] for s in shapes)
        maps_per_run = [resize_bilinear(torch.from_numpy(m), (h, w)).numpy() for m in maps_per_run]
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

