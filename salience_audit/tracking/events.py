"""What training and audits send to the trackers, read back from the files they wrote.

The numbers come from the run folder (``run.json``, ``log.csv``) and the audit folder
(``audit.json``, ``summary.json``) - the same files the report is made of - so a tracker shows
exactly what the report says. While a group trains, :class:`TrainingLog` sends each epoch's
``log.csv`` row (step = epoch) as soon as the trainer has written it; a run found finished
is logged whole (:func:`log_training_runs`).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from salience_audit.jsonsafe import finite_number
from salience_audit.tracking.backends import Tracker, TrackerRun

__all__ = ["TrainingLog", "audit_run_metrics", "comparison_metrics", "epoch_metrics", "log_audit", "log_training_runs"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _numeric_values(row: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric, finite value of a log row except ``epoch``."""
    return {k: v for k, v in ((k, finite_number(v)) for k, v in row.items() if k != "epoch") if v is not None}


def epoch_metrics(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """``[(epoch, {column: value})]`` from ``log.csv`` (every numeric, finite column except ``epoch``)."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return []
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            epoch = finite_number(row.get("epoch"))
            if epoch is not None:
                out.append((int(epoch), _numeric_values(row)))
    return out


def _start_training_runs(trackers: Sequence[Tracker], run_dir: Path) -> list[TrackerRun]:
    """One open tracker run per tracker for a run folder, named and tagged from its ``run.json``, config logged."""
    info = _read_json(run_dir / "run.json")
    config = dict(info.get("config") or {})
    group = str(info.get("group") or config.get("group") or "")
    name = str(info.get("name") or run_dir.name)
    tags = {"kind": "train", **{k: str(config[k]) for k in ("arch", "loss", "seed") if k in config}}
    runs = []
    for tracker in trackers:
        run = tracker.start_run(name, group, tags)
        run.log_params(config)
        runs.append(run)
    return runs


def _finish_training_runs(runs: Sequence[TrackerRun], run_dir: Path, last_epoch: int) -> None:
    """Best epoch / accuracy (from the finished ``run.json``) at the last epoch, the run folder as artifact, close."""
    info = _read_json(run_dir / "run.json")
    best = {k: v for k, v in (("best_val_acc", finite_number(info.get("best_val_acc"))),
                              ("best_epoch", finite_number(info.get("best_epoch")))) if v is not None}
    for run in runs:
        try:
            if best:
                run.log_metrics(best, step=last_epoch)
            run.log_artifacts(run_dir, "run")
        finally:
            run.close()


def log_training_runs(trackers: Sequence[Tracker], run_dirs: Iterable[Path]) -> None:
    """Log each finished run folder whole: config as params, per-epoch metrics, best epoch/accuracy, the folder."""
    if not trackers:
        return
    for run_dir in map(Path, run_dirs):
        epochs = epoch_metrics(run_dir)
        runs = _start_training_runs(trackers, run_dir)
        try:
            for epoch, values in epochs:
                for run in runs:
                    run.log_metrics(values, step=epoch)
        except BaseException:
            for run in runs:
                run.close()
            raise
        _finish_training_runs(runs, run_dir, epochs[-1][0] if epochs else 0)


class TrainingLog:
    """Live tracker logging while runs train: each epoch's row reaches the trackers when the trainer writes it.

    Pass :meth:`epoch` as the trainer's ``on_epoch`` and :meth:`run_done` as ``on_run_done``
    (:func:`salience_audit.training.runs.train_group`). The first epoch seen of a run opens its
    tracker runs (config from ``run.json``, which the trainer writes before the first epoch) and,
    for a resumed run, sends the epochs ``log.csv`` already holds. :meth:`run_done` adds the
    best epoch and the run folder and closes them; a run that trained no epoch here (found
    finished) is logged whole from its folder instead. A tracker that fails while a run trains
    is dropped with one warning; training goes on and the run folder keeps everything.
    :meth:`close` closes what an interruption left open.
    """

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)
        self._open: dict[Path, list[TrackerRun]] = {}
        self._last_epoch: dict[Path, int] = {}

    def epoch(self, run_dir: Path, row: Mapping[str, Any]) -> None:
        """Send one epoch's row (``epoch`` = its step, every other numeric value a metric)."""
        if not self.trackers:
            return
        run_dir = Path(run_dir)
        epoch = int(row["epoch"])
        try:
            if run_dir not in self._open:
                self._open[run_dir] = _start_training_runs(self.trackers, run_dir)
                earlier = [(e, values) for e, values in epoch_metrics(run_dir) if e < epoch]
            else:
                earlier = []
            for step, values in [*earlier, (epoch, _numeric_values(row))]:
                for run in self._open[run_dir]:
                    run.log_metrics(values, step=step)
        except Exception as err:  # noqa: BLE001 - a tracker's own failure must not stop training
            warnings.warn(f"{run_dir}: experiment tracking stopped for this run ({type(err).__name__}: {err}); "
                          "the run folder keeps every epoch", stacklevel=2)
            for run in self._open.pop(run_dir, []):
                _close_quietly(run)
            self._open[run_dir] = []
        self._last_epoch[run_dir] = epoch

    def run_done(self, run_dir: Path) -> None:
        """The run folder is final: log its best epoch and the folder, close (or log it whole if not seen)."""
        run_dir = Path(run_dir)
        if run_dir in self._open:
            _finish_training_runs(self._open.pop(run_dir), run_dir, self._last_epoch.get(run_dir, 0))
        else:
            log_training_runs(self.trackers, [run_dir])

    def close(self) -> None:
        """Close the tracker runs of runs that did not finish (interrupted training)."""
        for runs in self._open.values():
            for run in runs:
                _close_quietly(run)
        self._open.clear()


def _close_quietly(run: TrackerRun) -> None:
    try:
        run.close()
    except Exception:  # noqa: BLE001, S110 - closing after a failure: the first error is what matters
        pass


def _metric_name(*parts: Any) -> str:
    return "/".join(str(p) for p in parts if p not in (None, ""))


def audit_run_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """run -> ``{"<measure>[.<variant>]/<dataset>": mean}`` from the summary's per-run records."""
    out: dict[str, dict[str, float]] = {}
    for rec in summary.get("per_run") or []:
        mean = finite_number(rec.get("mean"))
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
            number = None if isinstance(value, bool) else finite_number(value)
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
