"""Shared look of the report figures: colours, PNG export, safe text, grouped bars with CIs.

Figures are built with :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot
state), so rendering is safe in threads and never opens a window.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

DPI = 110
MAX_WIDTH_IN = 10.15
"""Widest figure, in inches: 1,116 px at :data:`DPI`, inside the report page's 1,124 px content width, so every
figure is shown at its natural size (never scaled down) and its fonts keep their size."""
MIN_FONT_KEY = "min-font-px"
"""PNG text chunk holding the smallest font of the figure in pixels at natural size (checked by the browser test)."""
_SEPARATORS = "-_/.:= |"
#: Okabe-Ito colour-blind safe palette (then matplotlib's tab10 for many groups).
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def colors(groups: Sequence[str]) -> dict[str, str]:
    """A stable colour per group (in the given order)."""
    palette = PALETTE + _TAB10
    return {g: palette[i % len(palette)] for i, g in enumerate(groups)}


def text(value: Any, limit: int | None = None, keep_end: bool = False) -> str:
    """Data text safe for matplotlib: ``$`` escaped (no mathtext), optionally shortened with an ellipsis.

    ``keep_end`` shortens from the left (``\u2026seed12``), for names whose end tells them apart.
    """
    s = str(value)
    if limit is not None and len(s) > limit:
        s = "\u2026" + s[-max(1, limit - 1):] if keep_end else s[: max(1, limit - 1)] + "\u2026"
    return s.replace("$", r"\$")


def run_labels(runs: Sequence[str], limit: int = 18) -> dict[str, str]:
    """Short, distinct display labels of run names: the common prefix goes, the end (the seed) stays.

    The prefix shared by all names is cut back to its last separator (``-_/.:= |``), so
    ``densenet121-xent-seed0`` / ``densenet121-xent-seed1`` become ``seed0`` / ``seed1``; a
    label still longer than ``limit`` keeps its last ``limit - 1`` characters after an
    ellipsis. Labels that would collide keep more of the name. Returns ``{run: label}``.
    """
    names = list(dict.fromkeys(str(r) for r in runs))
    cut = 0
    if len(names) > 1:
        prefix = os.path.commonprefix(names)
        cut = max((i + 1 for i, ch in enumerate(prefix) if ch in _SEPARATORS), default=0)
        if any(len(n) <= cut for n in names):
            cut = 0
    labels = {n: n[cut:] for n in names}
    short = {n: (lab if len(lab) <= limit else "\u2026" + lab[-(limit - 1):]) for n, lab in labels.items()}
    if len(set(short.values())) < len(short):
        short = labels
    return short


def new_figure(width: float, height: float) -> Figure:
    """A figure with an Agg canvas and the report's defaults, at most :data:`MAX_WIDTH_IN` wide."""
    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def min_font_px(fig: Figure) -> float:
    """The smallest font size (pixels at :data:`DPI`) of the figure's visible, non-empty texts."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * DPI / 72.0 if sizes else float("nan")


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes; its smallest font size is written in the ``min-font-px`` text chunk."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={MIN_FONT_KEY: f"{min_font_px(fig):.2f}"})
    return buf.getvalue()


def style_axes(ax: Axes) -> None:
    """Light grid behind the data, no top/right spines."""
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and x is not None and np.isfinite(x) else np.nan


def grouped_bars(
    ax: Axes,
    categories: Sequence[str],
    groups: Sequence[str],
    cells: Mapping[tuple[str, str], Mapping[str, Any]],
    palette: Mapping[str, str],
    scale: float = 1.0,
) -> bool:
    """Bars of ``cells[(category, group)]["mean"]`` with 95% CI error bars; returns False when nothing was drawn.

    Missing cells leave a gap. Values are multiplied by ``scale`` (e.g. 100 for percent).
    """
    n = max(1, len(groups))
    width = 0.8 / n
    x = np.arange(len(categories))
    drawn = False
    for k, group in enumerate(groups):
        means, lows, highs = [], [], []
        for cat in categories:
            cell = cells.get((cat, group), {})
            means.append(_num(cell.get("mean")) * scale)
            lows.append(_num(cell.get("ci_low")) * scale)
            highs.append(_num(cell.get("ci_high")) * scale)
        m, lo, hi = np.array(means), np.array(lows), np.array(highs)
        if np.all(np.isnan(m)):
            continue
        drawn = True
        err = np.vstack([np.where(np.isnan(lo), 0, np.clip(m - lo, 0, None)),
                         np.where(np.isnan(hi), 0, np.clip(hi - m, 0, None))])
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, m, width=width * 0.92, color=palette[group], label=text(group, 40),
               yerr=err, capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
    ax.set_xticks(x)
    ax.set_xticklabels([text(c, 28) for c in categories])
    ax.axhline(0, color="#888888", linewidth=0.8)
    style_axes(ax)
    return drawn


def legend_outside(fig: Figure, ax: Axes, title: str = "model group") -> None:
    """One figure legend right of the panels (from ``ax``'s labelled artists), never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title=title, loc="outside right center", fontsize=8, title_fontsize=9)


def rotate_labels(ax: Axes, angle: float = 30) -> None:
    """Tilt the x tick labels so long names do not overlap."""
    for label in ax.get_xticklabels():
        label.set_rotation(angle)
        label.set_horizontalalignment("right")
