"""Side-by-side comparison of the headline numbers of two audits (e.g. two architectures).

Each audit is labelled by its folder name (with the parent folder added when both
folders have the same name). Rows: every primary headline measure (see ``findings``) and
the detection accuracy / ROC-AUC, per group name found in either audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from salience_audit.report.document.blocks import Cell, Table
from salience_audit.report.document.tables import dataset_label
from salience_audit.report.formatting import MISSING, fmt_ci, fmt_int, fmt_num, is_number

Summary = Mapping[str, Any]


def audit_labels(path_a: str | Path, path_b: str | Path) -> tuple[str, str]:
    """Folder names of the two audits, made distinct when they are equal."""
    a, b = Path(path_a).resolve(), Path(path_b).resolve()
    if a.name != b.name:
        return a.name, b.name
    la, lb = f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    return (la, lb) if la != lb else (str(a), str(b))


def _headline(summary: Summary) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """``{(label, variant, group): {"mean", "ci_low", "ci_high", "n"}}`` of the headline rows."""
    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for f in summary.get("findings") or []:
        if not f.get("primary", True):
            continue
        for group, rec in f["per_group"].items():
            out[(f["title"], f["variant"], group)] = rec
    dataset = summary.get("headline_dataset")
    for rec in (summary.get("detection") or {}).get("per_group", []):
        if rec["dataset"] != dataset:
            continue
        for metric, title in (("accuracy", "Detection accuracy (over runs)"), ("roc_auc", "ROC-AUC (over runs)")):
            m = rec.get(metric) or {}
            out[(title, "", rec["group"])] = {**m, "n": rec.get("n_runs")}
    return out


def _cell(rec: Mapping[str, Any] | None) -> Cell:
    if not rec or not is_number(rec.get("mean")):
        return Cell(MISSING, "num muted")
    n = f" (n = {fmt_int(rec['n'])})" if is_number(rec.get("n")) else ""
    return Cell(fmt_ci(rec["mean"], rec.get("ci_low"), rec.get("ci_high")) + n, "num")


def comparison_table(summary_a: Summary, summary_b: Summary, label_a: str, label_b: str) -> Table | None:
    """Mean [95% CI] of every headline measure and group in audit A and audit B, and B - A."""
    ha, hb = _headline(summary_a), _headline(summary_b)
    keys = list(dict.fromkeys([*ha, *hb]))
    groups = list(dict.fromkeys([*summary_a.get("groups", []), *summary_b.get("groups", [])]))
    measure_order = {m: i for i, m in enumerate(dict.fromkeys(k[:2] for k in keys))}
    group_order = {g: i for i, g in enumerate(groups)}
    keys.sort(key=lambda k: (measure_order[k[:2]], group_order.get(k[2], len(groups))))
    rows = []
    for key in keys:
        title, variant, group = key
        a, b = ha.get(key), hb.get(key)
        diff = b["mean"] - a["mean"] if a and b and is_number(a.get("mean")) and is_number(b.get("mean")) else None
        rows.append([
            Cell(title + (f" ({variant})" if variant else "")),
            Cell(group),
            _cell(a),
            _cell(b),
            Cell(fmt_num(diff), "num"),
        ])
    if not rows:
        return None
    da = dataset_label(summary_a, summary_a.get("headline_dataset") or "")
    db = dataset_label(summary_b, summary_b.get("headline_dataset") or "")
    where = f"on {da} in both audits" if da == db else f"on {da} in {label_a} and on {db} in {label_b}"
    return Table(
        ["Measure", "Group", f"{label_a}: mean [95% CI]", f"{label_b}: mean [95% CI]", f"{label_b} - {label_a}"],
        rows,
        f"Headline numbers {where}. CIs are over images (detection: over runs); the difference is not tested "
        "because the two audits may use different images.",
    )
