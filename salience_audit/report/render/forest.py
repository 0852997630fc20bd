"""The report's first figure: a forest plot of every headline measure, read in ten seconds.

One row per measure (the headline variants on the headline dataset, primary measures
first): each group's mean of run means as a point with its run x image 95% CI as a bar,
on the row's own scale (measures have different units); the better direction is marked
at the row's end; the family verdict (run level, BH-adjusted) is written beside it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from salience_audit.report.document.blocks import FigureOut
from salience_audit.report.render.plotstyle import MAX_WIDTH_IN, colors, new_figure, text, to_png

Summary = Mapping[str, Any]

_BETTER = {"lower": "\u2190 lower is better", "higher": "higher is better \u2192", "zero": "closer to 0 is better"}


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) else np.nan


def _point(rec: Mapping[str, Any] | None) -> tuple[float, float, float]:
    fam = (rec or {}).get("family") or {}
    mean = _num(fam.get("mean", (rec or {}).get("mean")))
    return mean, _num(fam.get("ci_low")), _num(fam.get("ci_high"))


def _verdict_text(comparisons: Sequence[Mapping[str, Any]], n_groups: int) -> tuple[str, str]:
    """(text, colour) of the row's verdict(s)."""
    lines, colour = [], "#5f6b76"
    for cmp in comparisons:
        v = cmp.get("verdict") or {}
        label = v.get("label") or "no test"
        if n_groups > 2:
            label = f"{cmp['group_a']} vs {cmp['group_b']}: {label}"
        if v.get("study_check") in ("confirmed", "contradicted"):
            label += f"; study {v['study_check']}"
        lines.append(label)
        if v.get("separates"):
            colour = "#8a1c1c" if v.get("driven_by_one_run") or v.get("study_check") == "contradicted" else "#0f5c2a"
    wrapped = "\n".join(textwrap.fill(line, 44) for line in lines[:3])
    return wrapped or "no comparison", colour


def forest_plot(summary: Summary) -> FigureOut | None:
    """Forest plot of the findings (see the module docstring); None without findings."""
    findings = sorted(summary.get("findings") or [], key=lambda f: not f.get("primary", True))
    groups = [g for g in summary.get("groups") or []]
    rows = [f for f in findings if any(np.isfinite(_point(f["per_group"].get(g))[0]) for g in groups)]
    if not rows or not groups:
        return None
    palette = colors(groups)
    n = len(rows)
    height = 0.62 * n + 1.1
    fig = new_figure(MAX_WIDTH_IN, height)
    grid = fig.add_gridspec(n, 3, width_ratios=[2.5, 4.1, 3.4])
    offsets = np.linspace(0.25, -0.25, len(groups)) if len(groups) > 1 else np.zeros(1)
    for i, f in enumerate(rows):
        label_ax = fig.add_subplot(grid[i, 0])
        label_ax.axis("off")
        title = f["title"] + (f" ({f['variant']})" if f.get("variant") else "")
        label_ax.text(1.0, 0.5, textwrap.fill(text(title), 30), ha="right", va="center", fontsize=9,
                      fontweight="bold" if f.get("primary", True) else "normal", transform=label_ax.transAxes)
        ax = fig.add_subplot(grid[i, 1])
        lows, highs = [], []
        for k, group in enumerate(groups):
            mean, low, high = _point(f["per_group"].get(group))
            if not np.isfinite(mean):
                continue
            if np.isfinite(low) and np.isfinite(high):
                ax.errorbar([mean], [offsets[k]], xerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]], fmt="o",
                            color=palette[group], markersize=5, capsize=3, elinewidth=1.6,
                            label=text(group, 30))
                lows.append(low)
                highs.append(high)
            else:  # no run x image CI (fewer than 2 runs): hollow point
                ax.plot([mean], [offsets[k]], "o", markerfacecolor="white", markeredgecolor=palette[group],
                        markersize=5, label=text(group, 30))
            lows.append(mean)
            highs.append(mean)
        lo, hi = min(lows), max(highs)
        pad = (hi - lo) * 0.12 or abs(hi) * 0.05 or 0.05
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-0.6, 0.6)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=8, length=2, pad=1)
        ax.locator_params(axis="x", nbins=4)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.grid(True, axis="x", color="#e5e5e5", linewidth=0.7)
        better = _BETTER.get(f.get("better") or "", "")
        if f.get("better") == "zero" and lo - pad < 0 < hi + pad:
            ax.axvline(0.0, color="#888888", linewidth=0.8, linestyle="--")
        if better:
            ax.text(1.0 if f.get("better") != "lower" else 0.0, 1.0, better, transform=ax.transAxes, fontsize=7.5,
                    color="#5f6b76", ha="right" if f.get("better") != "lower" else "left", va="bottom")
        verdict_ax = fig.add_subplot(grid[i, 2])
        verdict_ax.axis("off")
        words, colour = _verdict_text(f.get("comparisons") or [], len([g for g in groups if g != "human"]))
        verdict_ax.text(0.0, 0.5, text(words), ha="left", va="center", fontsize=8, color=colour,
                        transform=verdict_ax.transAxes)
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    order = [text(g, 30) for g in groups if text(g, 30) in seen]
    handles, labels = [seen[lab] for lab in order], order
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 5), fontsize=9,
                   title="model group: mean of run means, bar = 95% CI over runs and images", title_fontsize=9)
    dataset = summary.get("headline_dataset") or ""
    caption = (f"Every headline measure on {dataset}: each group's mean of run means with its 95% CI over training "
               "runs and images (hollow point: one run, no CI). Each row has its own scale; the grey note marks the "
               "better direction. Right: the verdict about the model families (run-level test, Benjamini-Hochberg "
               "adjusted over the report). Bold rows are the primary measures.")
    return FigureOut("forest", "overview", "All measures at a glance", caption, to_png(fig))


__all__ = ["forest_plot"]
