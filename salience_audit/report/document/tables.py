"""Tables of the report, built from the summary dict (plain-text cells, see :mod:`document`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from salience_audit.report.document.blocks import Cell, Table
from salience_audit.report.formatting import MISSING, direction_text, fmt_ci, fmt_int, fmt_num, fmt_p, is_number
from salience_audit.report.summary.aggregate import POOLED
from salience_audit.report.summary.describe import info

Summary = Mapping[str, Any]


def dataset_label(summary: Summary, dataset: str) -> str:
    """Display name of a dataset (pooled and out-of-set marked)."""
    if dataset == POOLED:
        return "all in-set datasets (pooled)"
    return f"{dataset} (out-of-set)" if dataset in summary.get("out_of_set", []) else dataset


def variant_label(variant: str) -> str:
    """Display name of a variant ('' -> '-')."""
    return variant if variant else MISSING


def datasets_with_pooled(summary: Summary) -> list[str]:
    """Datasets in report order: each audited dataset, then the pooled in-set data when present."""
    present = {r["dataset"] for r in summary["stats"]}
    return [d for d in summary["datasets"] if d in present] + ([POOLED] if POOLED in present else [])


def stats_index(summary: Summary) -> dict[tuple, Mapping[str, Any]]:
    """``{(measure, variant, group, dataset): stats record}``."""
    return {(r["measure"], r["variant"], r["group"], r["dataset"]): r for r in summary["stats"]}


def has_measure(summary: Summary, measure: str, variant: str | None = None) -> bool:
    """Whether the summary holds values of ``measure`` (and ``variant``)."""
    return any(r["measure"] == measure and (variant is None or r["variant"] == variant) and r["n"]
               for r in summary["stats"])


def ci_cell(rec: Mapping[str, Any] | None, scale: float = 1.0) -> Cell:
    """``mean [low, high]`` of a stats record."""
    if not rec or not is_number(rec.get("mean")):
        return Cell(MISSING, "num muted")
    def s(x: Any) -> Any:
        return x * scale if is_number(x) else x
    return Cell(fmt_ci(s(rec["mean"]), s(rec.get("ci_low")), s(rec.get("ci_high"))), "num")


def family_cell(rec: Mapping[str, Any] | None) -> Cell:
    """``mean [low, high]`` of a record's run x image (family) statistics; a dash with fewer than 2 runs."""
    fam = (rec or {}).get("family") or {}
    if not is_number(fam.get("mean")):
        return Cell(MISSING, "num muted")
    if not is_number(fam.get("ci_low")):
        return Cell(f"{fmt_num(fam['mean'])} [no CI: {fmt_int(fam.get('n_runs'))} run(s)]", "num muted")
    return Cell(fmt_ci(fam["mean"], fam.get("ci_low"), fam.get("ci_high")), "num")


def images_cell(rec: Mapping[str, Any] | None) -> Cell:
    """``[low, high]`` of a record's image-level CI (for these trained runs)."""
    if not rec or not is_number(rec.get("ci_low")):
        return Cell(MISSING, "num muted")
    return Cell(f"[{fmt_num(rec['ci_low'])}, {fmt_num(rec.get('ci_high'))}]", "num muted")


def stats_table(
    summary: Summary, measure: str, variant: str = "", datasets: Sequence[str] | None = None
) -> Table | None:
    """Mean [95% CI] and n per dataset (rows) and group (columns) for one measure/variant."""
    index = stats_index(summary)
    groups = summary["groups"]
    datasets = list(datasets) if datasets is not None else datasets_with_pooled(summary)
    rows = []
    for ds in datasets:
        recs = [index.get((measure, variant, g, ds)) for g in groups]
        if not any(r and r.get("n") for r in recs):
            continue
        row = [Cell(dataset_label(summary, ds))]
        for rec in recs:
            row.append(family_cell(rec))
            row.append(images_cell(rec))
            runs = ((rec or {}).get("family") or {}).get("n_runs")
            row.append(Cell(f"{fmt_int(runs)} / {fmt_int(rec['n'])}" if rec else MISSING, "num muted"))
        rows.append(row)
    if not rows:
        return None
    header = ["Dataset"]
    for g in groups:
        header += [f"{g}: mean [95% CI, runs x images]", f"{g}: [95% CI, images only]", "runs / images"]
    minfo = info(measure)
    title = minfo.title + (f" ({variant})" if variant else "")
    return Table(header, rows, f"{title} in {minfo.unit}; {direction_text(minfo.direction(variant))}. "
                               "Runs x images: mean of the run means with a CI over runs and images (the family); "
                               "images only: mean over images with a bootstrap CI over images, for these trained "
                               "runs (docs/statistics.md).")


def variant_table(summary: Summary, measure: str, variants: Sequence[str], dataset: str | None) -> Table | None:
    """Mean [95% CI] per variant (rows) and group (columns) on one dataset."""
    index = stats_index(summary)
    groups = summary["groups"]
    rows = []
    for v in variants:
        recs = [index.get((measure, v, g, dataset)) for g in groups]
        if not any(r and r.get("n") for r in recs):
            continue
        rows.append([Cell(variant_label(v))] + [ci_cell(r) for r in recs])
    if not rows:
        return None
    minfo = info(measure)
    n = max((index.get((measure, v, g, dataset)) or {}).get("n") or 0 for v in variants for g in groups)
    return Table(
        ["Variant"] + [f"{g}: mean [95% CI]" for g in groups],
        rows,
        f"{minfo.title} per variant on {dataset_label(summary, dataset or '')}, {minfo.unit} "
        f"(up to {fmt_int(n)} images per cell).",
    )


def verdict_cell(verdict: Mapping[str, Any] | None) -> Cell:
    """Plain-language family verdict of one comparison (run level, BH-adjusted)."""
    if not verdict or not verdict.get("label"):
        return Cell("undefined (no test possible)", "muted")
    if verdict.get("separates"):
        return Cell(verdict["label"], "bad" if verdict.get("driven_by_one_run") else "good")
    return Cell(verdict["label"], "muted")


def images_verdict_text(verdict: Mapping[str, Any] | None) -> str:
    """The image-level reading, 'for these trained runs'."""
    img = (verdict or {}).get("images") or {}
    if img.get("separates") is None:
        return MISSING
    if img["separates"]:
        better = f": {img['better_group']} better" if img.get("better_group") else ""
        return f"differ{better} (adjusted {fmt_p(img.get('p_adjusted'))})"
    return f"no difference (adjusted {fmt_p(img.get('p_adjusted'))})"


def study_cell(verdict: Mapping[str, Any] | None, study: str | None) -> Cell:
    """What the original study found and whether this audit agrees."""
    if not verdict:
        return Cell(MISSING, "muted")
    expected = verdict.get("expected")
    if expected is None:
        text = f"guided {study} than plain (groups not recognised)" if study else "not stated"
        return Cell(text, "muted")
    check = verdict.get("study_check")
    cls = {"confirmed": "good", "contradicted": "bad"}.get(check or "", "muted")
    return Cell(f"{expected}: {check}", cls)


def comparisons_for(summary: Summary, measure: str, variant: str, dataset: str) -> list[Mapping[str, Any]]:
    """The group comparisons of one measure/variant on one dataset."""
    return [c for c in summary["comparisons"]
            if c["measure"] == measure and c["variant"] == variant and c["dataset"] == dataset]


def _diff_cell(runs: Mapping[str, Any] | None) -> Cell:
    runs = runs or {}
    if not is_number(runs.get("diff")):
        return Cell(MISSING, "num muted")
    return Cell(fmt_ci(runs["diff"], runs.get("diff_ci_low"), runs.get("diff_ci_high")), "num")


def _g_cell(runs: Mapping[str, Any] | None) -> Cell:
    runs = runs or {}
    if not is_number(runs.get("hedges_g")):
        return Cell(MISSING, "num muted")
    return Cell(fmt_ci(runs["hedges_g"], runs.get("g_ci_low"), runs.get("g_ci_high")), "num")


def _run_p_cell(runs: Mapping[str, Any] | None) -> Cell:
    runs = runs or {}
    if not is_number(runs.get("p")):
        return Cell(MISSING, "num muted")
    text = f"{fmt_p(runs.get('p_adjusted'))} adj.\n({fmt_p(runs['p'])} raw)"
    if is_number(runs.get("min_p")) and runs["min_p"] >= 0.05:
        text += f"\nsmallest possible: {runs['min_p']:.3f}"
    return Cell(text, "num")


def tests_table(
    summary: Summary, measure: str, variant: str = "", datasets: Sequence[str] | None = None
) -> Table | None:
    """Group comparisons (per dataset and pair of groups): run level first, then the image-level view."""
    datasets = list(datasets) if datasets is not None else datasets_with_pooled(summary)
    study = info(measure).study
    rows = []
    for ds in datasets:
        for c in comparisons_for(summary, measure, variant, ds):
            runs = c.get("runs") or {}
            rows.append([
                Cell(dataset_label(summary, ds)),
                Cell(f"{c['group_a']} vs {c['group_b']}\n(runs: {fmt_int(runs.get('n_runs_a'))} and "
                     f"{fmt_int(runs.get('n_runs_b'))})"),
                _diff_cell(runs),
                _g_cell(runs),
                _run_p_cell(runs),
                verdict_cell(c.get("verdict")),
                study_cell(c.get("verdict"), study),
                Cell(f"{fmt_p(c.get('mannwhitney_p_adjusted'))} adj.; Cliff's delta {fmt_num(c.get('cliffs_delta'))}"
                     f"\n{images_verdict_text(c.get('verdict'))}", "muted"),
            ])
    if not rows:
        return None
    return Table(
        ["Dataset", "Groups (A vs B)", "Difference A - B [95% CI, runs x images]", "Hedges' g of run means [95% CI]",
         "Run-level p (BH-adjusted)", "Verdict (families)", "Original study",
         "For these trained runs: Mann-Whitney on images"],
        rows,
        "Run level: permutation test of run labels on the mean run values (stability: jackknife t over runs and "
        "images); p-values Benjamini-Hochberg adjusted over all comparisons of this report. The last column tests "
        "the per-image values: it says whether these particular runs differ, not whether the families do.",
    )


def findings_table(summary: Summary, primary: bool | None = None) -> Table | None:
    """One row per headline measure: question, better direction, per-group mean [CI], test, verdict, study.

    ``primary`` True / False keeps only the primary / secondary measures (None: all).
    """
    findings = [f for f in summary.get("findings") or [] if primary is None or bool(f.get("primary")) == primary]
    if not findings:
        return None
    groups = summary["groups"]
    rows = []
    for f in findings:
        title = f["title"] + (f" ({f['variant']})" if f["variant"] else "")
        row = [Cell(title), Cell(f["question"], "muted"), Cell(direction_text(f["better"]))]
        row += [family_cell(f["per_group"].get(g)) for g in groups]
        cmps = f.get("comparisons") or []
        def run_p(c: Mapping[str, Any]) -> str:
            return fmt_p((c.get("runs") or {}).get("p_adjusted"))
        if len(groups) > 2:
            row.append(Cell("\n".join(f"{c['group_a']} vs {c['group_b']}: {run_p(c)}" for c in cmps)
                            or MISSING, "num"))
        else:
            row.append(Cell(run_p(cmps[0]) if cmps else MISSING, "num"))
        verdicts = [verdict_cell(c.get("verdict")) for c in cmps]
        if len(verdicts) == 1:
            row.append(verdicts[0])
        else:
            row.append(Cell("\n".join(f"{c['group_a']} vs {c['group_b']}: {v.text}" for c, v in zip(cmps, verdicts))
                            or MISSING, "good" if any(v.cls == "good" for v in verdicts) else "muted"))
        studies = [study_cell(c.get("verdict"), f.get("study_guided_vs_plain")) for c in cmps]
        informative = [s for s in studies if s.cls in ("good", "bad")]
        if informative:
            row.append(Cell("\n".join(s.text for s in informative),
                            "bad" if any(s.cls == "bad" for s in informative) else "good"))
        elif f.get("study_guided_vs_plain"):
            row.append(Cell(f"guided {f['study_guided_vs_plain']} than plain", "muted"))
        else:
            row.append(Cell("not stated", "muted"))
        rows.append(row)
    header = ["Measure", "Question", "Better"] + [f"{g}: mean [95% CI, runs x images]" for g in groups] + [
        "Run-level p (BH-adjusted)", "Verdict (families)", "Original study (guided vs plain)"]
    return Table(header, rows, f"On {dataset_label(summary, summary.get('headline_dataset') or '')}. Means of the run "
                               "means; CIs and tests count training runs (docs/statistics.md).")
