"""The report files: ``OUT/report/index.html`` (self-contained) and ``OUT/report/report.md``.

``index.html`` embeds every figure as a base64 PNG data URI and carries its CSS inline: no
script, no external resource, it opens from disk. It is rendered with jinja2 and
``autoescape=True``, so every name and path from the data is shown as text.
``report.md`` holds the same tables, with the figures written to ``OUT/report/figures/``.
``OUT/summary.json`` is (re)written as well.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from salience_audit.errors import InputError
from salience_audit.profiles import require_same_profile
from salience_audit.report.document.blocks import Document, FigureOut, kind
from salience_audit.report.document.compare import audit_labels, comparison_table
from salience_audit.report.document.content import build_document
from salience_audit.report.render.figures import VALUE_MEASURES, all_figures
from salience_audit.report.render.gallery import gallery_items
from salience_audit.report.render.markdown import FIGURE_DIR, render_markdown
from salience_audit.report.summary.build import (
    DEFAULT_CAPACITY,
    folder_accumulator,
    load_fresh_summary,
    min_runs_of,
    save_summary,
    summarize_folder,
    summary_from_accumulator,
)
from salience_audit.results.reader import load_audit_meta, load_gallery, load_mean_maps

CSS = """
:root { --ink: #1f2328; --muted: #5f6b76; --line: #d8dee4; --head: #f3f5f8; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
header h1 { margin: 0 0 4px; font-size: 1.9rem; }
header p { margin: 0; color: var(--muted); }
nav { margin: 18px 0 8px; padding: 10px 14px; background: var(--head); border-radius: 6px;
  display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
section { border-top: 2px solid var(--line); margin-top: 34px; padding-top: 6px; }
h2 { font-size: 1.5rem; margin: 10px 0 6px; }
h3 { font-size: 1.18rem; margin: 26px 0 4px; }
h4 { font-size: 1.0rem; margin: 18px 0 4px; }
p { margin: 6px 0 10px; max-width: 75em; }
p.question { font-style: italic; color: #333; }
p.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 0.86rem; min-width: 40%; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 0.82rem; padding-top: 4px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; white-space: pre-line; }
th { background: var(--head); text-align: left; font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: pre; }
td.muted { color: var(--muted); }
td.good { color: #0f5c2a; background: #e7f4ea !important; }
td.bad { color: #8a1c1c; background: #fbeaea !important; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 4px; }
details { margin: 10px 0 16px; padding: 4px 10px; border: 1px solid var(--line); border-radius: 6px; }
summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; font-size: 0.9rem; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; word-break: break-all; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.8rem; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ doc.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
{%- macro render(block) -%}
{%- set k = kind(block) -%}
{%- if k == "paragraph" -%}
<p{% if block.cls %} class="{{ block.cls }}"{% endif %}>{{ block.text }}</p>
{%- elif k == "heading" -%}
<h{{ block.level }}{% if block.anchor %} id="{{ block.anchor }}"{% endif %}>{{ block.text }}</h{{ block.level }}>
{%- elif k == "table" -%}
<div class="table-wrap"><table>
{%- if block.caption %}<caption>{{ block.caption }}</caption>{% endif %}
<thead><tr>{% for h in block.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{%- for row in block.rows %}
<tr>{% for c in row %}<td{% if c.cls %} class="{{ c.cls }}"{% endif %}>{{ c.text }}</td>{% endfor %}</tr>
{%- endfor %}
</tbody></table></div>
{%- elif k == "figureblock" -%}
<figure id="fig-{{ block.figure.name }}"><img src="{{ data_uri(block.figure) }}" alt="{{ block.figure.title }}">
<figcaption>{{ block.figure.caption }}</figcaption></figure>
{%- elif k == "keyvalues" -%}
<dl class="kv">{% for key, value in block.items %}<dt>{{ key }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
{%- elif k == "details" -%}
<details><summary>{{ block.summary }}</summary>
{% for b in block.blocks %}{{ render(b) }}
{% endfor %}</details>
{%- endif -%}
{%- endmacro %}
<header>
<h1>{{ doc.title }}</h1>
{% if doc.subtitle %}<p>{{ doc.subtitle }}</p>{% endif %}
</header>
<nav>{% for s in doc.sections %}<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in doc.sections %}
<section id="{{ s.anchor }}">
<h2>{{ s.title }}</h2>
{% for b in s.blocks %}{{ render(b) }}
{% endfor %}
</section>
{% endfor %}
<footer>Generated by salience-audit. Self-contained page: figures are embedded,
nothing is loaded from elsewhere.</footer>
</main>
</body>
</html>
"""


def data_uri(figure: FigureOut) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(figure.png).decode("ascii")


def render_html(doc: Document) -> str:
    """The document as one self-contained HTML page (all data escaped)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    template = env.from_string(TEMPLATE)
    return template.render(doc=doc, css=Markup(CSS), kind=kind, data_uri=data_uri)


def _resolve_compare(out_dir: Path, compare_with: str | Path | None, meta: Mapping[str, Any]) -> Path | None:
    candidate = compare_with if compare_with is not None else meta.get("compare_with")
    if not candidate:
        return None
    path = Path(candidate)
    for option in (path, out_dir / path):
        if (option / "results").is_dir() or (option / "summary.json").is_file():
            return option
    if compare_with is not None:
        raise InputError("the audit to compare with has neither results/ nor summary.json", path)
    return None


def _summary_of(other: Path, n_boot: int, seed: int, capacity: int | None) -> dict[str, Any]:
    """The other audit's summary: its summary.json when up to date, else recomputed (not written there)."""
    fresh = load_fresh_summary(other)
    if fresh is not None:
        return fresh
    return summarize_folder(other, n_boot=n_boot, seed=seed, capacity=capacity)


def write_report(
    out_dir: str | Path,
    compare_with: str | Path | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    capacity: int | None = DEFAULT_CAPACITY,
    min_runs: int | None = None,
) -> Path:
    """Write ``OUT/summary.json``, ``OUT/report/index.html`` and ``OUT/report/report.md``; returns the HTML path.

    An up-to-date ``OUT/summary.json`` made with the same ``n_boot``, ``seed`` and
    ``capacity`` (e.g. by :func:`~salience_audit.report.summary.build.write_summary` just before)
    is reused, not recomputed; the figures' per-image values (entropy, stability) are then
    read again, those measures only. Either way the result shards are read one at a time
    (bounded memory); distributions with more than ``capacity`` images are drawn from a
    uniform sample of ``capacity`` of them.

    ``compare_with`` (default: ``compare_with`` of ``audit.json``, when that folder exists)
    is another audit folder whose headline numbers are shown side by side.
    """
    out_dir = Path(out_dir)
    meta = load_audit_meta(out_dir)
    mean_maps, gallery = load_mean_maps(out_dir), load_gallery(out_dir)
    summary = load_fresh_summary(out_dir, n_boot=n_boot, seed=seed, capacity=capacity,
                                 min_runs=min_runs_of(meta, min_runs))
    if summary is None:
        acc = folder_accumulator(out_dir, meta, seed=seed, capacity=capacity)
        summary = summary_from_accumulator(acc, meta, n_boot=n_boot, seed=seed, mean_maps=mean_maps,
                                           min_runs=min_runs)
        save_summary(summary, out_dir / "summary.json")
    else:
        acc = folder_accumulator(out_dir, meta, seed=seed, capacity=capacity, measures=VALUE_MEASURES)
    values = acc.image_values(summary.get("in_set") or [], VALUE_MEASURES)
    del acc

    figures = all_figures(summary, values, gallery, mean_maps)
    comparison = None
    other = _resolve_compare(out_dir, compare_with, meta)
    if other is not None:
        require_same_profile(meta, load_audit_meta(other), out_dir, other)
        label_a, label_b = audit_labels(out_dir, other)
        comparison = (comparison_table(summary, _summary_of(other, n_boot, seed, capacity), label_a, label_b),
                      label_a, label_b)
    doc = build_document(summary, figures, gallery_items(gallery) if gallery else [], comparison,
                         title=f"Salience audit report: {out_dir.resolve().name}")

    report_dir = out_dir / "report"
    fig_dir = report_dir / FIGURE_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    for fig in doc.figures():
        (fig_dir / f"{fig.name}.png").write_bytes(fig.png)
    (report_dir / "report.md").write_text(render_markdown(doc), encoding="utf-8")
    html_path = report_dir / "index.html"
    html_path.write_text(render_html(doc), encoding="utf-8")
    return html_path
