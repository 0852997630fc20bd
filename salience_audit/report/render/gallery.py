"""Picture figures: example images with their salience overlaid, and mean maps per dataset.

``gallery.npz`` holds images uint8 [K, H, W, 3], paths / datasets / labels / reasons [K],
maps float32 [R, K, h, w] in [0, 1], runs [R] and run_groups [R]. The gallery shows one
row per image and, per group, one column for each of its first :data:`RUNS_PER_GROUP`
runs (so an unstable image shows its instability side by side), the map stretched over
the image with the 'jet' colormap at alpha 0.5. Columns are labelled with the run name
shortened at the front (the seed stays, :func:`~salience_audit.report.render.plotstyle.run_labels`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from salience_audit.report.document.blocks import FigureOut
from salience_audit.report.render.plotstyle import MAX_WIDTH_IN, new_figure, run_labels, text, to_png
from salience_audit.salience.normalize import upscale

ROWS_PER_FIGURE = 6
RUNS_PER_GROUP = 2
"""Runs shown per group (their maps side by side)."""
_LABELS = {0: "real", 1: "synthetic"}


def _strings(array: Any, k: int) -> list[str]:
    if array is None:
        return [""] * k
    return [str(x) for x in np.asarray(array).reshape(-1).tolist()]


def upscale_map(salience: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map resized to the image size as the measures resize it (:func:`salience_audit.salience.normalize.upscale`:
    bicubic, clamped to [0, 1]); NaN cells (a missing map) count as 0."""
    salience = np.nan_to_num(np.asarray(salience, dtype=np.float32), nan=0.0)
    return upscale(torch.from_numpy(salience)[None], (height, width))[0].numpy()


def gallery_columns(
    summary: Mapping[str, Any], gallery: Mapping[str, np.ndarray], runs_per_group: int = RUNS_PER_GROUP
) -> list[tuple[str, str, int]]:
    """``(group, run, index into maps)`` of the first ``runs_per_group`` runs of each group, in group order."""
    runs = _strings(gallery.get("runs"), 0)
    run_groups = _strings(gallery.get("run_groups"), len(runs))
    order = list(summary.get("groups", [])) + [g for g in run_groups if g not in summary.get("groups", [])]
    columns = []
    for group in dict.fromkeys(order):
        found = [i for i, g in enumerate(run_groups) if g == group][:runs_per_group]
        columns += [(group, runs[i], i) for i in found]
    return columns


def gallery_items(gallery: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One dict per gallery image: path, file name, dataset, label, reason (for captions and tables)."""
    images = gallery.get("images")
    k = 0 if images is None else int(np.asarray(images).shape[0])
    paths = _strings(gallery.get("paths"), k)
    datasets = _strings(gallery.get("datasets"), k)
    reasons = _strings(gallery.get("reasons"), k)
    labels = np.asarray(gallery.get("labels", np.full(k, -1))).reshape(-1).tolist()
    return [
        {
            "path": paths[i] if i < len(paths) else "",
            "name": posixpath.basename(paths[i].replace("\\", "/")) if i < len(paths) else "",
            "dataset": datasets[i] if i < len(datasets) else "",
            "label": _LABELS.get(int(labels[i]) if i < len(labels) else -1, "unknown"),
            "reason": reasons[i] if i < len(reasons) else "",
        }
        for i in range(k)
    ]


def gallery_figures(summary: Mapping[str, Any], gallery: Mapping[str, np.ndarray] | None) -> list[FigureOut] | None:
    """The gallery, in figures of at most :data:`ROWS_PER_FIGURE` images."""
    if not gallery or "images" not in gallery or "maps" not in gallery:
        return None
    images = np.asarray(gallery["images"])
    maps = np.asarray(gallery["maps"], dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0 or maps.ndim != 4:
        return None
    columns = gallery_columns(summary, gallery)
    items = gallery_items(gallery)
    out = []
    n_cols = 1 + len(columns)
    for part, start in enumerate(range(0, images.shape[0], ROWS_PER_FIGURE)):
        stop = min(start + ROWS_PER_FIGURE, images.shape[0])
        cell = min(2.2, (MAX_WIDTH_IN - 1.9) / n_cols)
        fig = new_figure(cell * n_cols + 1.9, (cell + 0.1) * (stop - start) + 1.0)
        axes = fig.subplots(stop - start, n_cols, squeeze=False)
        for r, k in enumerate(range(start, stop)):
            image = images[k]
            h, w = image.shape[:2]
            item = items[k]
            axes[r, 0].imshow(image)
            axes[r, 0].set_ylabel(
                f"{text(item['reason'], 24)}\n{text(item['name'], 24)}\n{text(item['dataset'], 18)}, {item['label']}",
                                  fontsize=8, rotation=0, ha="right", va="center")
            for c, (group, run, idx) in enumerate(columns, start=1):
                ax = axes[r, c]
                ax.imshow(image)
                ax.imshow(upscale_map(maps[idx, k], h, w), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0, 0].set_title("image", fontsize=9)
        short = run_labels([run for _, run, _ in columns], limit=14)
        for c, (group, run, _) in enumerate(columns, start=1):
            axes[0, c].set_title(f"{text(group, 14)}\n{text(short[run])}", fontsize=9)
        if columns:
            scale = ScalarMappable(norm=Normalize(0, 1), cmap="jet")
            fig.colorbar(scale, ax=axes[:, -1].tolist(), label="salience (0 = none, 1 = strongest)", shrink=0.6)
        title = f"Gallery: salience of {RUNS_PER_GROUP} runs of each group"
        n_parts = -(-images.shape[0] // ROWS_PER_FIGURE)
        if n_parts > 1:
            title += f" (part {part + 1} of {n_parts})"
        fig.suptitle(title)
        out.append(FigureOut(f"gallery_{part + 1}", "gallery", title,
                             "Rows: images (why they were chosen, file name, true class); columns: two runs of each "
                             "model group (run names without their common prefix), so differences between runs of "
                             "one group show the instability of its maps.",
                             to_png(fig)))
    return out


def mean_map_figure(summary: Mapping[str, Any], mean_maps: Mapping[str, np.ndarray] | None) -> FigureOut | None:
    """Mean salience map per group (averaged over its runs) and dataset."""
    if not mean_maps:
        return None
    run_groups = {r["run"]: r["group"] for r in summary.get("selection", {}).get("rows", [])}
    for rec in summary.get("per_run", []):
        run_groups.setdefault(rec["run"], rec["group"])
    grid: dict[tuple[str, str], list[np.ndarray]] = {}
    for key, value in mean_maps.items():
        run, sep, dataset = key.partition("::")
        if not sep or run not in run_groups or np.ndim(value) != 2:
            continue
        grid.setdefault((run_groups[run], dataset), []).append(np.asarray(value, dtype=np.float64))
    groups = [g for g in summary["groups"] if any(k[0] == g for k in grid)]
    datasets = [d for d in summary["datasets"] if any(k[1] == d for k in grid)]
    if not groups or not datasets:
        return None
    fig = new_figure(2.2 * len(datasets) + 1.8, 2.2 * len(groups) + 0.8)
    axes = fig.subplots(len(groups), len(datasets), squeeze=False)
    image = None
    for i, group in enumerate(groups):
        for j, dataset in enumerate(datasets):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            maps = grid.get((group, dataset))
            if maps and len({m.shape for m in maps}) == 1:
                image = ax.imshow(np.mean(maps, axis=0), cmap="inferno", vmin=0, vmax=1)
            if i == 0:
                role = " (out-of-set)" if dataset in summary.get("out_of_set", []) else ""
                ax.set_title(text(dataset + role, 24), fontsize=9)
            if j == 0:
                ax.set_ylabel(text(group, 20), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="mean salience (0-1)", shrink=0.7)
    fig.suptitle("Mean salience map per model group (rows) and dataset (columns)")
    return FigureOut("mean_maps", "noise", "Mean maps per dataset",
                     "Average of the normalised maps over all images of a dataset and all runs of a group.",
                     to_png(fig))
