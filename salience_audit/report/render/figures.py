"""Figures of the report (matplotlib, Agg, PNG at 110 dpi).

Every function takes the summary (and, where it needs per-image values, a table of them
with columns measure, variant, group, dataset, value: :func:`salience_audit.report.summary.build.image_table`
of rows in memory, or ``AuditAccumulator.image_values`` - every value, or a uniform sample
of ``capacity`` of them for larger cells) and returns a
:class:`~salience_audit.report.document.blocks.FigureOut` or None when there is nothing to draw:
figures without data are skipped, never drawn empty. :func:`all_figures` renders them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from salience_audit.measures.entropy import ENTROPY_NORM
from salience_audit.measures.stability import STABILITY_SSIM
from salience_audit.report.document.blocks import FigureOut
from salience_audit.report.render.forest import forest_plot
from salience_audit.report.render.gallery import gallery_figures, mean_map_figure
from salience_audit.report.render.plotstyle import (
    colors,
    grouped_bars,
    legend_outside,
    new_figure,
    rotate_labels,
    run_labels,
    style_axes,
    text,
    to_png,
)
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.describe import info

Summary = Mapping[str, Any]

VALUE_MEASURES: tuple[str, ...] = (ENTROPY_NORM, STABILITY_SSIM)
"""Measures whose per-image values the figures draw (the ``values`` table needs only these)."""


def _cells(summary: Summary, measure: str, dataset: str | None) -> dict[tuple[str, str], Mapping[str, Any]]:
    """``{(variant, group): stats record}`` of one measure on one dataset."""
    return {
        (r["variant"], r["group"]): r
        for r in summary["stats"]
        if r["measure"] == measure and (dataset is None or r["dataset"] == dataset)
    }


def _dataset_label(summary: Summary, dataset: str) -> str:
    if dataset == POOLED:
        return "all in-set datasets"
    return f"{dataset} (out-of-set)" if dataset in summary.get("out_of_set", []) else dataset


def _real_datasets(summary: Summary, values: pd.DataFrame | None = None) -> list[str]:
    present = set(values["dataset"].unique()) if values is not None else {r["dataset"] for r in summary["stats"]}
    return [d for d in summary["datasets"] if d in present]


def entropy_distribution(summary: Summary, values: pd.DataFrame) -> FigureOut | None:
    """Violins of per-image normalised entropy, per dataset (x) and group (colour), with mean and 95% CI."""
    sel = values[(values["measure"] == ENTROPY_NORM) & (values["variant"] == "") & (values["dataset"] != POOLED)]
    sel = sel[np.isfinite(sel["value"].to_numpy())]
    if sel.empty:
        return None
    found = set(sel["group"].unique())
    groups = [g for g in summary["groups"] if g in found]
    datasets = _real_datasets(summary, sel)
    palette = colors(summary["groups"])
    fig = new_figure(max(6.5, 1.6 * len(datasets) * max(1, len(groups)) / 2 + 2.5), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(groups)
    means = {(r["group"], r["dataset"]): r for r in summary["stats"]
             if r["measure"] == ENTROPY_NORM and r["variant"] == ""}
    for k, group in enumerate(groups):
        for j, ds in enumerate(datasets):
            vals = sel[(sel["group"] == group) & (sel["dataset"] == ds)]["value"].to_numpy()
            if vals.size == 0:
                continue
            pos = j - 0.4 + width * (k + 0.5)
            if vals.size > 1 and np.ptp(vals) > 0:
                parts = ax.violinplot([vals], positions=[pos], widths=width * 0.9, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(palette[group])
                    body.set_edgecolor(palette[group])
                    body.set_alpha(0.45)
            rec = means.get((group, ds), {})
            mean, lo, hi = rec.get("mean"), rec.get("ci_low"), rec.get("ci_high")
            if mean is not None:
                ax.errorbar([pos], [mean], yerr=[[mean - (lo if lo is not None else mean)],
                                                 [(hi if hi is not None else mean) - mean]],
                            fmt="o", color="black", markersize=4, capsize=3, linewidth=1)
    ax.set_xticks(np.arange(len(datasets)))
    ax.set_xticklabels([text(_dataset_label(summary, d), 30) for d in datasets])
    if len(datasets) > 4:
        rotate_labels(ax)
    ax.set_xlabel("dataset")
    ax.set_ylabel("normalised salience entropy (0-1)")
    fig.suptitle("Salience entropy per image (lower = more focused); dot = mean with 95% CI")
    handles = [_patch(palette[g], g) for g in groups]
    fig.legend(handles=handles, title="model group", loc="outside right center", fontsize=8, title_fontsize=9)
    style_axes(ax)
    return FigureOut("entropy_distribution", "entropy", "Salience entropy per image",
                     "Distribution of the per-image normalised entropy (each image averaged over the group's runs).",
                     to_png(fig))


def _patch(color: str, label: str) -> Patch:
    return Patch(facecolor=color, alpha=0.6, label=text(label, 40))


_NOISE_PANELS = (
    ("noise_score", "synthetic score (probability)"),
    ("noise_correct", "accuracy (fraction correct)"),
    ("noise_ssim", "SSIM of noisy map to clean map"),
    ("noise_entropy", "normalised entropy of noisy map"),
)


def noise_curves(summary: Summary) -> FigureOut | None:
    """Score, accuracy, map SSIM and map entropy against the noise amount, one line per group with a 95% CI band."""
    dataset = summary.get("headline_dataset")
    curves = [c for c in summary.get("noise_curves", []) if c["dataset"] == dataset]
    panels = [(m, lab) for m, lab in _NOISE_PANELS if any(c["measure"] == m for c in curves)]
    if not panels:
        return None
    palette = colors(summary["groups"])
    n_cols = 2 if len(panels) > 2 else len(panels)
    n_rows = -(-len(panels) // n_cols)
    fig = new_figure(4.3 * n_cols + 1.6, 3.3 * n_rows + 0.6)
    grid = fig.subplots(n_rows, n_cols, squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (measure, label) in zip(axes, panels):
        for group in summary["groups"]:
            curve = next((c for c in curves if c["measure"] == measure and c["group"] == group), None)
            if curve is None:
                continue
            x = np.array(curve["amount"], dtype=float)
            y = np.array([np.nan if v is None else v for v in curve["mean"]], dtype=float)
            lo = np.array([np.nan if v is None else v for v in curve["ci_low"]], dtype=float)
            hi = np.array([np.nan if v is None else v for v in curve["ci_high"]], dtype=float)
            ax.plot(x, y, marker="o", markersize=3, color=palette[group], label=text(group, 30))
            ax.fill_between(x, lo, hi, color=palette[group], alpha=0.2, linewidth=0)
        ax.set_xlabel("noise amount a (fraction of pixel values replaced)")
        ax.set_ylabel(label)
        ax.set_title(text(info(measure).title, 40), fontsize=10)
        style_axes(ax)
    legend_outside(fig, axes[0])
    fig.suptitle(f"Reaction to salt-and-pepper noise ({text(_dataset_label(summary, dataset))}; band = 95% CI)")
    return FigureOut("noise_curves", "noise", "Reaction to noise",
                     "Mean over images (each averaged over the group's runs) at each noise amount, with 95% CI bands.",
                     to_png(fig))


def transforms(summary: Summary) -> FigureOut | None:
    """Grouped bars of equivariance and invariance per transformation (and 'all'), with 95% CIs."""
    dataset = summary.get("headline_dataset")
    panels = []
    for measure in ("equivariance", "invariance"):
        cells = _cells(summary, measure, dataset)
        if cells:
            panels.append((measure, cells))
    if not panels:
        return None
    order = list((summary.get("audit") or {}).get("transform_variants") or [])
    variants = [v for v in order if any(k[0] == v for _, c in panels for k in c)]
    variants += sorted({k[0] for _, c in panels for k in c} - set(variants) - {"all"})
    if any(k[0] == "all" for _, c in panels for k in c):
        variants.append("all")
    palette = colors(summary["groups"])
    fig = new_figure(max(8.0, 0.55 * len(variants) * max(1, len(summary["groups"])) + 2), 3.6 * len(panels) + 0.8)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (measure, cells) in zip(axes, panels):
        grouped_bars(ax, variants, summary["groups"], cells, palette)
        ax.set_ylabel(f"{info(measure).title} (SSIM)")
        ax.set_xlabel("transformation ('all' = mean over the 12 non-identity ones)")
        ax.set_title(text(info(measure).question), fontsize=10)
        rotate_labels(ax, 35)
    legend_outside(fig, axes[0])
    fig.suptitle(f"Following geometric transformations ({text(_dataset_label(summary, dataset))}; bars = 95% CI)")
    return FigureOut("transforms", "transforms", "Equivariance and invariance per transformation",
                     "Mean SSIM per transformation; error bars are bootstrap 95% CIs over images.", to_png(fig))


def stability_matrix(summary: Summary) -> FigureOut | None:
    """Heatmap of the mean SSIM between every pair of runs, one panel per group."""
    dataset = summary.get("headline_dataset")
    mats = [m for m in summary.get("stability_matrices", []) if m["dataset"] == dataset and len(m["runs"]) >= 2]
    if not mats:
        return None
    n_cols = min(2, len(mats))
    n_rows = -(-len(mats) // n_cols)
    fig = new_figure(max(4.4, 4.6 * n_cols + 0.8), 4.3 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[len(mats):]:
        ax.axis("off")
    axes = axes[: len(mats)]
    values = np.array([v for m in mats for row in m["matrix"] for v in row if v is not None], dtype=float)
    vmin = min(0.0, float(np.nanmin(values))) if values.size else 0.0
    image = None
    for ax, mat in zip(axes, mats):
        grid = np.array([[np.nan if v is None else v for v in row] for row in mat["matrix"]], dtype=float)
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=1.0)
        n = len(mat["runs"])
        short = run_labels(mat["runs"], limit=14)
        labels = [text(short[str(r)]) for r in mat["runs"]]
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_yticklabels(labels, fontsize=7)
        rotate_labels(ax, 45)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if grid[i, j] < (vmin + 1.0) / 2 else "black")
        ax.set_title(f"{text(mat['group'], 30)} (mean {mat['mean_off_diagonal']:.3f})"
                     if mat.get("mean_off_diagonal") is not None else text(mat["group"], 30), fontsize=10)
        ax.set_xlabel("run")
        ax.set_ylabel("run")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="mean SSIM over images", shrink=0.85)
    fig.suptitle(f"Cross-run stability: mean SSIM of each pair of runs ({text(_dataset_label(summary, dataset))})")
    return FigureOut("stability_matrix", "stability", "Run-by-run stability matrix",
                     "Mean over images of the SSIM between the maps of two runs; the diagonal is 1 by definition.",
                     to_png(fig))


def stability_distribution(summary: Summary, values: pd.DataFrame) -> FigureOut | None:
    """Histogram of the per-image mean SSIM over run pairs, one colour per group."""
    dataset = summary.get("headline_dataset")
    sel = values[(values["measure"] == STABILITY_SSIM) & (values["variant"] == "") & (values["dataset"] == dataset)]
    sel = sel[np.isfinite(sel["value"].to_numpy())]
    if sel.empty:
        return None
    palette = colors(summary["groups"])
    fig = new_figure(8.0, 3.9)
    ax = fig.add_subplot()
    lo, hi = float(sel["value"].min()), float(sel["value"].max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 31)
    for group in summary["groups"]:
        vals = sel[sel["group"] == group]["value"].to_numpy()
        if vals.size:
            ax.hist(vals, bins=bins, color=palette[group], alpha=0.5, label=f"{text(group, 30)} (n = {vals.size})")
    ax.set_xlabel("per-image mean SSIM between the group's runs")
    ax.set_ylabel("number of images")
    fig.suptitle(f"Per-image cross-run stability ({text(_dataset_label(summary, dataset))}; higher = more stable)")
    legend_outside(fig, ax)
    style_axes(ax)
    return FigureOut("stability_distribution", "stability", "Per-image stability",
                     "Each image's SSIM averaged over all pairs of runs of the group.", to_png(fig))


def degradation(summary: Summary) -> FigureOut | None:
    """Background vs object mode: true-class probability drop and accuracy change, grouped bars with 95% CIs."""
    dataset = summary.get("headline_dataset")
    panels = [
        ("degrade_true_score_drop", "drop of the true-class probability", 1.0),
        ("degrade_accuracy_change", "accuracy change (percentage points)", 100.0),
    ]
    panels = [(m, lab, s, _cells(summary, m, dataset)) for m, lab, s in panels]
    panels = [p for p in panels if p[3]]
    if not panels:
        return None
    modes = [m for m in ("background", "object") if any(k[0] == m for p in panels for k in p[3])]
    palette = colors(summary["groups"])
    fig = new_figure(4.2 * len(panels) + 0.6, 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (measure, label, scale, cells) in zip(axes, panels):
        grouped_bars(ax, modes, summary["groups"], cells, palette, scale=scale)
        ax.set_xlabel("degradation mode (what is blurred)")
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels([{"background": "background\n(not salient)", "object": "object\n(salient)"}[m]
                            for m in modes])
        ax.set_ylabel(label)
        ax.set_title(text(info(measure).title), fontsize=10)
    legend_outside(fig, axes[0])
    fig.suptitle(f"Salience-guided degradation ({text(_dataset_label(summary, dataset))}; bars = 95% CI)")
    return FigureOut("degradation", "degradation", "Background vs object degradation",
                     "A faithful model loses more in object mode than in background mode.", to_png(fig))


def deletion_insertion(summary: Summary) -> FigureOut | None:
    """Deletion and insertion AUC by salience order vs random order, grouped bars with 95% CIs."""
    dataset = summary.get("headline_dataset")
    cats = ["deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random"]
    cells = {}
    for measure in cats:
        for (variant, group), rec in _cells(summary, measure, dataset).items():
            if variant == "":
                cells[(measure, group)] = rec
    present = [c for c in cats if any(k[0] == c for k in cells)]
    if not present:
        return None
    palette = colors(summary["groups"])
    fig = new_figure(max(6.0, 1.6 * len(present) + 2), 3.8)
    ax = fig.add_subplot()
    grouped_bars(ax, present, summary["groups"], cells, palette)
    ax.set_xticklabels([c.replace("_auc", " AUC").replace("_random", "\n(random order)").replace("_", " ")
                        for c in present])
    ax.set_ylabel("area under the score curve (0-1)")
    ax.set_xlabel("curve")
    fig.suptitle("Deletion (lower = faithful) and insertion (higher = faithful) vs random order")
    legend_outside(fig, ax)
    return FigureOut("deletion_insertion", "degradation", "Deletion and insertion curves",
                     "Areas under the score curves when pixels are removed / restored in order of salience, "
                     "against a random order of the same pixels.", to_png(fig))


def detection(summary: Summary) -> FigureOut | None:
    """Accuracy and ROC-AUC per dataset and group (mean over runs with a bootstrap 95% CI over runs)."""
    per_group = summary.get("detection", {}).get("per_group", [])
    if not per_group:
        return None
    datasets = [d for d in [*summary["datasets"], POOLED] if any(r["dataset"] == d for r in per_group)]
    palette = colors(summary["groups"])
    fig = new_figure(max(7.0, 1.3 * len(datasets) * max(1, len(summary["groups"])) / 2 + 5), 3.9)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    drawn = False
    for ax, (metric, label) in zip(axes, (("accuracy", "accuracy (%)"), ("roc_auc", "ROC-AUC"))):
        scale = 100.0 if metric == "accuracy" else 1.0
        cells = {(r["dataset"], r["group"]): r[metric] for r in per_group}
        drawn |= grouped_bars(ax, datasets, summary["groups"], cells, palette, scale=scale)
        ax.set_xticklabels([text(_dataset_label(summary, d), 24) for d in datasets])
        rotate_labels(ax, 25)
        ax.set_xlabel("dataset")
        ax.set_ylabel(label)
        ax.set_ylim(0, 105 if metric == "accuracy" else 1.05)
        ax.set_title(f"{label.split(' ')[0].capitalize() if metric == 'accuracy' else 'ROC-AUC'} per dataset",
                     fontsize=10)
    if not drawn:
        return None
    legend_outside(fig, axes[0])
    fig.suptitle("Detection quality (mean over runs; bars = bootstrap 95% CI over runs)")
    return FigureOut("detection", "detection", "Detection quality per dataset",
                     f"Accuracy at the {float((summary.get('method') or {}).get('detection_threshold', 0.5)):g} threshold "
                     "and threshold-free ROC-AUC; datasets with one class have no AUC.",
                     to_png(fig))


def out_of_set_entropy(summary: Summary, values: pd.DataFrame) -> FigureOut | None:
    """Histograms of per-image entropy: all in-set images vs each out-of-set dataset, one panel per group."""
    out_sets = summary.get("out_of_set", [])
    if not out_sets:
        return None
    sel = values[(values["measure"] == ENTROPY_NORM) & (values["variant"] == "") & (values["dataset"] != POOLED)]
    sel = sel[np.isfinite(sel["value"].to_numpy())]
    groups = [g for g in summary["groups"] if not sel[(sel["group"] == g) & sel["dataset"].isin(out_sets)].empty]
    if not groups:
        return None
    fig = new_figure(4.2 * len(groups) + 0.6, 3.8)
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    bins = np.linspace(float(sel["value"].min()), float(sel["value"].max()) + 1e-9, 26)
    series_colors = ["#555555", "#D55E00", "#CC79A7", "#009E73", "#56B4E9", "#E69F00"]
    for ax, group in zip(axes, groups):
        sub = sel[sel["group"] == group]
        inset = sub[sub["dataset"].isin(summary["in_set"])]["value"].to_numpy()
        series = [("in-set (all)", inset)] + [(d, sub[sub["dataset"] == d]["value"].to_numpy()) for d in out_sets]
        for k, (name, vals) in enumerate(series):
            if vals.size:
                ax.hist(vals, bins=bins, density=True, histtype="stepfilled", alpha=0.4,
                        color=series_colors[k % len(series_colors)], label=f"{text(name, 24)} (n = {vals.size})")
        ax.set_title(f"model group {text(group, 30)}", fontsize=10)
        ax.set_xlabel("normalised salience entropy (0-1)")
        style_axes(ax)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density (images per unit entropy)")
    fig.suptitle("Salience entropy on in-set vs out-of-set data")
    return FigureOut("out_of_set_entropy", "noise", "In-set vs out-of-set entropy",
                     "Per-image normalised entropy (mean over the group's runs), as densities.", to_png(fig))


def human_agreement(summary: Summary) -> FigureOut | None:
    """Agreement with human maps per dataset and group (SSIM and Spearman), grouped bars with 95% CIs."""
    panels = []
    for measure in ("human_ssim", "human_spearman"):
        cells = {(r["dataset"], r["group"]): r for r in summary["stats"] if r["measure"] == measure
                 and r["variant"] == "" and r["dataset"] != POOLED}
        if cells:
            panels.append((measure, cells))
    if not panels:
        return None
    palette = colors(summary["groups"])
    datasets = [d for d in summary["datasets"] if any(k[0] == d for _, c in panels for k in c)]
    fig = new_figure(4.0 * len(panels) + 1.0, 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (measure, cells) in zip(axes, panels):
        grouped_bars(ax, datasets, summary["groups"], cells, palette)
        ax.set_ylabel(info(measure).unit)
        ax.set_xlabel("dataset (images with a human map)")
        ax.set_title(text(info(measure).title), fontsize=10)
    legend_outside(fig, axes[0])
    fig.suptitle("Agreement of model salience with human salience (bars = 95% CI)")
    return FigureOut("human_agreement", "human", "Agreement with human maps",
                     "Only images that have a human annotation.", to_png(fig))


def selection_scatter(summary: Summary) -> FigureOut | None:
    """Accuracy vs entropy and vs stability, one point per run coloured by group."""
    sel = summary.get("selection", {})
    rows = sel.get("rows", [])
    panels = [(c, lab) for c, lab in ((ENTROPY_NORM, "normalised salience entropy\n(lower = more focused)"),
                                      ("stability", "mean SSIM to the\ngroup's other runs"),
                                      ("equivariance", "equivariance\n(SSIM, all transformations)"))
              if sum(r.get(c) is not None and r.get("accuracy") is not None for r in rows) >= 2]
    if not panels:
        return None
    palette = colors(summary["groups"])
    source = "validation"
    short = run_labels([r["run"] for r in rows], limit=16)
    fig = new_figure(3.9 * len(panels) + 0.8, 3.9)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    accs = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
    cutoff = 100 * (max(accs) - sel.get("tolerance_pp", 1.0) / 100.0) if accs else None
    for ax, (col, label) in zip(axes, panels):
        for group in summary["groups"]:
            pts = [r for r in rows if r["group"] == group and r.get(col) is not None and r.get("accuracy") is not None]
            if not pts:
                continue
            x = [r[col] for r in pts]
            y = [100 * r["accuracy"] for r in pts]
            face = [palette[group] if r.get("equally_accurate") else "white" for r in pts]
            ax.scatter(x, y, c=face, edgecolors=palette[group], s=42, linewidths=1.5, label=text(group, 30), zorder=3)
            if len(rows) <= 12:
                for r, xi, yi in zip(pts, x, y):
                    ax.annotate(text(short[str(r["run"])]), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
        if cutoff is not None:
            ax.axhline(cutoff, color="#888888", linestyle="--", linewidth=1)
        ax.set_xlabel(label)
        style_axes(ax)
    axes[0].set_ylabel(f"{source} accuracy (%)")
    legend_outside(fig, axes[0])
    fig.suptitle("Model selection: filled = within the 'equally accurate' band (above the dashed line)")
    return FigureOut("selection_scatter", "selection", "Accuracy vs salience properties per run",
                     "One point per run. Filled points are the equally accurate runs ranked in the selection table.",
                     to_png(fig))


def all_figures(
    summary: Summary,
    values: pd.DataFrame,
    gallery: Mapping[str, np.ndarray] | None = None,
    mean_maps: Mapping[str, np.ndarray] | None = None,
) -> list[FigureOut]:
    """Every figure that has data, in report order."""
    makers: list[Callable[[], FigureOut | list[FigureOut] | None]] = [
        lambda: forest_plot(summary),
        lambda: detection(summary),
        lambda: entropy_distribution(summary, values),
        lambda: noise_curves(summary),
        lambda: out_of_set_entropy(summary, values),
        lambda: mean_map_figure(summary, mean_maps),
        lambda: transforms(summary),
        lambda: stability_matrix(summary),
        lambda: stability_distribution(summary, values),
        lambda: degradation(summary),
        lambda: deletion_insertion(summary),
        lambda: human_agreement(summary),
        lambda: gallery_figures(summary, gallery),
        lambda: selection_scatter(summary),
    ]
    out: list[FigureOut] = []
    for make in makers:
        result = make()
        if result is None:
            continue
        out.extend(result if isinstance(result, list) else [result])
    return out


__all__ = [
    "VALUE_MEASURES", "all_figures", "degradation", "forest_plot", "deletion_insertion", "detection", "entropy_distribution", "human_agreement",
    "noise_curves", "out_of_set_entropy", "selection_scatter", "stability_distribution", "stability_matrix",
    "transforms",
]
