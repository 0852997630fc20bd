"""What training and audits send to the trackers, read back from the files they wrote.

The numbers come from the run folder (``run.json``, ``log.csv``) and the audit folder
(``audit.json``, ``summary.json``) - the same files the report is made of - so a tracker shows
exactly what the report says. A run folder is logged whole after its training finished (or was
found finished), every epoch with ``step = epoch``.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from salience_audit.tracking.backends import Tracker

__all__ = ["audit_run_metrics", "comparison_metrics", "epoch_metrics", "log_audit", "log_training_runs"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def epoch_metrics(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """``[(epoch, {column: value})]`` from ``log.csv`` (every numeric, finite column except ``epoch``)."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return []
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            epoch = _number(row.get("epoch"))
            if epoch is None:
                continue
            values = {k: v for k, v in ((k, _number(v)) for k, v in row.items() if k != "epoch") if v is not None}
            out.append((int(epoch), values))
    return out


def log_training_runs(trackers: Sequence[Tracker], run_dirs: Iterable[Path]) -> None:
    """Log each run folder: config as params, per-epoch metrics, best epoch/accuracy, the folder as artifact."""
    for run_dir in map(Path, run_dirs):
        info = _read_json(run_dir / "run.json")
        config = dict(info.get("config") or {})
        group = str(info.get("group") or config.get("group") or "")
        name = str(info.get("name") or run_dir.name)
        tags = {"kind": "train", **{k: str(config[k]) for k in ("arch", "loss", "seed") if k in config}}
        epochs = epoch_metrics(run_dir)
        for tracker in trackers:
            run = tracker.start_run(name, group, tags)
            try:
                run.log_params(config)
                for epoch, values in epochs:
                    run.log_metrics(values, step=epoch)
                best = {k: v for k, v in (("best_val_acc", _number(info.get("best_val_acc"))),
                                          ("best_epoch", _number(info.get("best_epoch")))) if v is not None}
                if best:
                    run.log_metrics(best, step=epochs[-1][0] if epochs else 0)
                run.log_artifacts(run_dir, "run")
            finally:
                run.close()


def _metric_name(*parts: Any) -> str:
    return "/".join(str(p) for p in parts if p not in (None, ""))


def audit_run_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """run -> ``{"<measure>[.<variant>]/<dataset>": mean}`` from the summary's per-run records."""
    out: dict[str, dict[str, float]] = {}
    for rec in summary.get("per_run") or []:
        mean = _number(rec.get("mean"))
        if mean is None or not rec.get("run"):
            continue
        measure = f"{rec['measure']}.{rec['variant']}" if rec.get("variant") else str(rec["measure"])
        out.setdefault(str(rec["run"]), {})[_metric_name(measure, rec.get("dataset"))] = mean
    return out


def comparison_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``"compare/<measure>[.<variant>]/<dataset>/<A> vs <B>/<statistic>"`` -> value, for every numeric statistic."""
    out: dict[str, float] = {}
    for cmp in summary.get("comparisons") or []:
        measure = f"{cmp['measure']}.{cmp['variant']}" if cmp.get("variant") else str(cmp.get("measure"))
        pair = f"{cmp.get('group_a')} vs {cmp.get('group_b')}"
        for key, value in cmp.items():
            number = None if isinstance(value, bool) else _number(value)
            if number is not None and key not in ("measure", "variant", "dataset"):
                out[_metric_name("compare", measure, cmp.get("dataset"), pair, key)] = number
    return out


def log_audit(trackers: Sequence[Tracker], out_dir: str | Path) -> None:
    """Log an audit: one tracker run per audited run (per-measure means, tagged by group) and one for the audit.

    The audit's own run holds the group comparisons, the settings and the report folder as an
    artifact. Without ``summary.json`` (``--no-report``) only the settings are logged, with a warning.
    """
    out = Path(out_dir)
    meta = _read_json(out / "audit.json")
    summary = _read_json(out / "summary.json")
    if not summary:
        warnings.warn(f"{out}: no summary.json (audit run with --no-report?): the trackers get the settings but no "
                      f"measures; run 'salience-audit report {out}' and log again", stacklevel=2)
    per_run = audit_run_metrics(summary)
    groups = meta.get("groups") or {}
    audit_name = f"audit {out.resolve().name}"
    for tracker in trackers:
        for group, runs in groups.items():
            for run_name in runs:
                info = (meta.get("runs") or {}).get(run_name) or {}
                tags = {"kind": "audit", "audit": str(out.resolve()),
                        **{k: str(info[k]) for k in ("arch", "loss", "seed") if k in info}}
                run = tracker.start_run(run_name, str(group), tags)
                try:
                    run.log_params({"method": meta.get("method"), "measures": meta.get("measures"),
                                    "datasets": sorted(meta.get("datasets") or {})})
                    if per_run.get(run_name):
                        run.log_metrics(per_run[run_name])
                finally:
                    run.close()
        run = tracker.start_run(audit_name, "audit", {"kind": "audit-comparisons", "audit": str(out.resolve()),
                                                       "groups": ",".join(groups)})
        try:
            run.log_params({"method": meta.get("method"), "measures": meta.get("measures"),
                            "config": meta.get("config"), "groups": groups, "command": meta.get("command")})
            comparisons = comparison_metrics(summary)
            if comparisons:
                run.log_metrics(comparisons)
            if (out / "report").is_dir():
                run.log_artifacts(out / "report", "report")
        finally:
            run.close()
