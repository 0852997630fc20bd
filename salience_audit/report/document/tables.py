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
            row.append(ci_cell(rec))
            row.append(Cell(fmt_int(rec["n"]) if rec else MISSING, "num muted"))
        rows.append(row)
    if not rows:
        return None
    header = ["Dataset"]
    for g in groups:
        header += [f"{g}: mean [95% CI]", "n images"]
    minfo = info(measure)
    title = minfo.title + (f" ({variant})" if variant else "")
    return Table(header, rows, f"{title} in {minfo.unit}: mean over images [bootstrap 95% CI]; "
                               f"{direction_text(minfo.direction(variant))}.")


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
    """Plain-language verdict of one comparison."""
    if not verdict or verdict.get("separates") is None:
        return Cell("undefined (no test possible)", "muted")
    direction = verdict.get("direction") or ""
    if verdict["separates"]:
        better = verdict.get("better_group")
        tail = f"; better: {better}" if better else ""
        return Cell(f"separated: {direction}{tail}", "good")
    if verdict.get("p_below_alpha") is False:
        reason = "p >= 0.05"
    elif verdict.get("ci_overlap"):
        reason = "p < 0.05 but the CIs overlap"
    else:
        reason = "CIs undefined"
    return Cell(f"not separated ({reason}); {direction}" if direction else f"not separated ({reason})", "muted")


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


def tests_table(
    summary: Summary, measure: str, variant: str = "", datasets: Sequence[str] | None = None
) -> Table | None:
    """Group comparisons (per dataset and pair of groups): difference, effect size, p-values, verdict."""
    datasets = list(datasets) if datasets is not None else datasets_with_pooled(summary)
    study = info(measure).study
    rows = []
    for ds in datasets:
        for c in comparisons_for(summary, measure, variant, ds):
            rows.append([
                Cell(dataset_label(summary, ds)),
                Cell(f"{c['group_a']} vs {c['group_b']}"),
                Cell(fmt_num(c.get("mean_diff")), "num"),
                Cell(fmt_num(c.get("cliffs_delta")), "num"),
                Cell(fmt_p(c.get("mannwhitney_p")), "num"),
                Cell(fmt_p(c.get("welch_p")), "num"),
                verdict_cell(c.get("verdict")),
                study_cell(c.get("verdict"), study),
            ])
    if not rows:
        return None
    return Table(
        ["Dataset", "Groups (A vs B)", "Mean diff (A - B)", "Cliff's delta", "Mann-Whitney", "Welch t",
         "Verdict", "Original study"],
        rows,
        "Tests on the per-image values (each image averaged over the group's runs). Cliff's delta > 0: A tends "
        "to be larger.",
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
        row += [ci_cell(f["per_group"].get(g)) for g in groups]
        cmps = f.get("comparisons") or []
        if len(groups) > 2:
            row.append(Cell("\n".join(f"{c['group_a']} vs {c['group_b']}: {fmt_p(c['mannwhitney_p'])}" for c in cmps)
                            or MISSING, "num"))
        else:
            row.append(Cell(fmt_p(cmps[0]["mannwhitney_p"]) if cmps else MISSING, "num"))
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
    header = ["Measure", "Question", "Better"] + [f"{g}: mean [95% CI]" for g in groups] + [
        "Mann-Whitney", "Verdict", "Original study (guided vs plain)"]
    return Table(header, rows, f"On {dataset_label(summary, summary.get('headline_dataset') or '')}.")
